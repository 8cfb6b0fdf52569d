"""``mediagate adversarial run``: exit codes, thresholds and the three reports, on a real (small) run."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from adversarial.runner import PROFILES, THRESHOLDS, load_thresholds
from adversarial.suites import sample_images
from gateway.cli import main

SMALL = ["--suites", "image", "--targets", "quality", "--attacks", "fgsm-2,pgd-2"]


def run(tmp_path: Path, *extra: str, thresholds: str | None = None) -> int:
    args = ["adversarial", "run", "--profile", "ci", "--report", str(tmp_path / "report"), *extra]
    if thresholds is not None:
        path = tmp_path / "thresholds.toml"
        path.write_text(thresholds)
        args += ["--thresholds", str(path)]
    return main(args)


@pytest.mark.parametrize(("extra", "thresholds", "message"), [
    (["--profile", "nightly"], None, "unknown profile 'nightly' (known: ci, full)"),
    (["--thresholds", "/nonexistent/thresholds.toml"], None, "/nonexistent/thresholds.toml' does not exist"),
    ([], "[image\nbroken", "is not valid TOML"),
    ([], "[nightly.image]\nx = 1\n", "unknown profiles ['nightly']"),
    ([], "[full.image]\nx = 1\n", "has no [ci] table: no bounds for profile 'ci'"),
    ([], "[ci.images]\nx = 1\n", "unknown tables ['images'] in [ci]"),
    ([], "[ci.image.nsfw]\npgd-8 = \"low\"\n", "`ci.image.nsfw.pgd-8` must be a number >= 0"),
    (["--targets", "nsfw,faces"], "[ci]", "unknown targets ['faces']"),
    (["--attacks", "pgd-16"], "[ci]", "unknown attacks ['pgd-16'] for profile 'ci'"),
    (["--suites", "image,vibes"], "[ci]", "unknown suites ['vibes']"),
    (["--targets", "nsfw-onnx"], "[ci]", "target 'nsfw-onnx' is not differentiable"),
    (["--targets", "nsfw-onnx", "--attacks", "pgd-8,square-8"], "[ci]",
     "target 'nsfw-onnx' is not differentiable (onnxruntime has no gradient), so the white-box attacks ['pgd-8']"),
])
def test_misconfigured_runs_exit_2_naming_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      extra: list[str], thresholds: str | None, message: str) -> None:
    if extra[:1] == ["--profile"]:  # the profile itself is what is wrong
        code = main(["adversarial", "run", *extra, "--report", str(tmp_path / "r")])
    else:
        code = run(tmp_path, *extra, thresholds=thresholds)
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "report").exists() and not (tmp_path / "r").exists()  # nothing measured, nothing written


def test_a_violated_threshold_exits_1_and_the_reports_say_which(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Half the sample images are blurred below the quality gate; a 2/255 perturbation adds enough "sharpness" to
    pass them (the Laplacian reads noise as detail), so a zero flip-rate bound is violated."""
    assert run(tmp_path, *SMALL, thresholds="[ci.image.quality]\npgd-2 = 0.0\n") == 1
    out = capsys.readouterr().out
    assert "FAIL image     quality    pgd-2" in out and "1 violated" in out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["passed"] is False and report["violations"] == ["image.quality.pgd-2"]
    checks = {c["budget"]: c for c in report["checks"]}
    assert checks["pgd-2"]["value"] > 0 and checks["pgd-2"]["limit"] == 0.0
    assert checks["fgsm-2"]["limit"] is None and checks["fgsm-2"]["passed"] is True  # reported, not bounded
    suites = ET.parse(tmp_path / "report" / "junit.xml").getroot()
    cases = suites.findall("./testsuite/testcase")
    assert len(cases) == len(report["checks"]) == 2
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["pgd-2"] and suites.get("failures") == "1"
    page = (tmp_path / "report" / "report.html").read_text()
    assert "threshold(s) violated" in page and "data:image/png;base64," in page  # a flipped example is shown
    (example,) = [e for e in report["examples"] if e["attack"] == "pgd-2"]
    assert example["clean_score"] < 0.15 <= example["adversarial_score"]  # below min_quality, then above it
    assert f"{example['clean_score']:.3f} -&gt; {example['adversarial_score']:.3f}" in page


def test_within_thresholds_exits_0(tmp_path: Path) -> None:
    assert run(tmp_path, *SMALL, thresholds="[ci.image.quality]\npgd-2 = 1.0\nfgsm-2 = 1.0\n") == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["passed"] is True and all(c["limit"] == 1.0 for c in report["checks"])


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_shipped_thresholds_bound_every_suite_of_every_profile(profile: str) -> None:
    thresholds = load_thresholds(THRESHOLDS, profile)
    assert set(thresholds) == {"image", "defense", "detector", "text", "poisoning"}
    for target in PROFILES[profile].targets:
        expected = {s.name for s in PROFILES[profile].attacks if target != "nsfw-onnx" or not s.white_box}
        assert set(thresholds["image"][target]) == expected
    assert thresholds["poisoning"]["max_failures"] == 0


def test_sample_images_are_deterministic_and_half_blurred() -> None:
    first, again = sample_images(4, 64), sample_images(4, 64)
    assert [im.tobytes() for im in first] == [im.tobytes() for im in again]
    assert all(im.size == (64, 64) and im.mode == "RGB" for im in first)


def test_the_bundle_a_deployed_gateway_enforces_is_fetched_and_attacked(
        gateway: Any, serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = serve(gateway)
    assert run(tmp_path, "--suites", "text", "--gateway", url) == 2  # no key
    assert "MEDIAGATE_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("MEDIAGATE_API_KEY", gateway.key("demo", "app")["Authorization"].split()[1])
    assert run(tmp_path, "--suites", "text", "--gateway", url) == 2  # an app key may not read the bundle
    assert "403" in capsys.readouterr().err
    monkeypatch.setenv("MEDIAGATE_API_KEY", gateway.key("demo", "auditor")["Authorization"].split()[1])
    assert run(tmp_path, "--suites", "text", "--gateway", url) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    (evasion,) = [c for c in report["checks"] if c["metric"] == "evasion_rate"]
    assert evasion["details"]["policy_revision"] == gateway.runtime.policy.revision


def test_the_bundle_route(gateway: Any) -> None:
    from gateway.policy.bundle import load_bundle_archive

    assert gateway.client.get("/v1/policies/bundle", headers=gateway.key("demo", "app")).status_code == 403
    resp = gateway.client.get("/v1/policies/bundle", headers=gateway.key("demo", "policy-admin"))
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/gzip"
    active = gateway.runtime.policy.active.bundle
    assert resp.headers["etag"] == f'"{active.digest}"'
    assert load_bundle_archive(resp.content).digest == active.digest
