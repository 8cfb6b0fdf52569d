"""The embedded regorus engine on the real bundle: decisions, fail-closed errors, thread safety, bundle loading."""

from __future__ import annotations

import gc
import json
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway.policy.base import EngineClosed, PolicyEngineError
from gateway.policy.bundle import BundleError, load_bundle
from gateway.policy.embedded import EmbeddedRegoEngine
from gateway.policy.testing import run_bundle_tests
from gateway.settings import REPO_POLICIES


@pytest.fixture(scope="module")
def engine() -> Iterator[EmbeddedRegoEngine]:
    engine = EmbeddedRegoEngine(load_bundle(REPO_POLICIES))
    yield engine
    engine.close()


CONCEPTS = load_bundle(REPO_POLICIES).data["mediagate"]["config"]["concepts"]


def pre_input(text: str, tenant: str = "demo", **request: Any) -> dict[str, Any]:
    """A pre-policy input as the flow builds it; features say the text is far from every banned concept."""
    req = {"kind": "prompt", "prompt": text, "negative_prompt": None, "model": "demo-tiny", "n": 1, "width": 128,
           "height": 128, "template": None, "fields": {}, "locale": None, "text": text, **request}
    features = {"normalized": text.lower(), "folded": text.lower(), "changed": False, "mixed_script": False,
                "concepts": dict.fromkeys(CONCEPTS, 0.0)}
    return {"principal": {"tenant": tenant, "role": "app", "key_id": "k"}, "request": req, "features": features,
            "context": {"time": "2026-11-25T12:00:00Z", "usage": {}}}


def test_bundle_loads_manifest_data_and_splits_tests() -> None:
    bundle = load_bundle(REPO_POLICIES)
    manifest = json.loads((REPO_POLICIES / ".manifest").read_text())
    assert bundle.revision == manifest["revision"]
    assert bundle.roots == ("mediagate",)
    assert {p for p, _ in bundle.policies} == {
        "mediagate/lib/lib.rego", "mediagate/pre/pre.rego", "mediagate/release/release.rego",
        "mediagate/retention/retention.rego", "mediagate/quota/quota.rego",
    }
    assert all(p.endswith("_test.rego") for p, _ in bundle.tests)
    assert "banned_terms" in bundle.data["mediagate"]["config"]["defaults"]
    assert bundle.label == f"{manifest['revision']}+{bundle.digest[:12]}"


def test_bundle_digest_changes_with_any_file(tmp_path: Path) -> None:
    root = tmp_path / "p"
    shutil.copytree(REPO_POLICIES, root)
    before = load_bundle(root).label
    data = root / "mediagate/config/data.json"
    data.write_text(data.read_text().replace('"max_n": 4', '"max_n": 3'))
    assert load_bundle(root).label != before


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda root: (root / "mediagate/config/data.json").write_text("{oops"), "data.json:1:2"),
        (lambda root: (root / ".manifest").write_text("["), ".manifest:1:2"),
        (lambda root: (root / "mediagate/pre/pre.rego").write_text("package mediagate.pre\nx if {"), "pre.rego:"),
    ],
)
def test_broken_bundles_are_refused_with_the_file_named(tmp_path: Path, edit: Any, message: str) -> None:
    root = tmp_path / "p"
    shutil.copytree(REPO_POLICIES, root)
    edit(root)
    with pytest.raises((BundleError, PolicyEngineError), match=message):
        EmbeddedRegoEngine(load_bundle(root)).close()


def test_missing_bundle_dir(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "none")


def test_decisions(engine: EmbeddedRegoEngine) -> None:
    allowed = engine.evaluate("data.mediagate.pre.decision", pre_input("a quiet lake"))
    assert allowed["allow"] is True and allowed["deny"] == []
    denied = engine.evaluate("data.mediagate.pre.decision", pre_input("gore", n=9))
    assert denied["allow"] is False
    assert {d["code"] for d in denied["deny"]} == {"prompt.banned_term", "request.n_exceeds_max"}


def test_input_that_is_not_json_is_refused_and_the_engine_lives_on(engine: EmbeddedRegoEngine) -> None:
    """A lone surrogate in a string crashed the process inside regorus's own object conversion; the engine now
    hands regorus JSON text, and input that is not JSON is an engine error (the flow fails closed)."""
    with pytest.raises(PolicyEngineError, match="not valid JSON"):
        engine.evaluate("data.mediagate.pre.decision", pre_input("a cat \ud800 on a mat"))
    assert engine.evaluate("data.mediagate.pre.decision", pre_input("a quiet lake"))["allow"] is True


def test_undefined_is_an_error_not_a_decision(engine: EmbeddedRegoEngine) -> None:
    with pytest.raises(PolicyEngineError, match="not a valid rule path"):
        engine.evaluate("data.mediagate.pre.no_such_rule", pre_input("x"))
    with pytest.raises(PolicyEngineError, match="undefined"):
        engine.evaluate("data.mediagate.pre.decision", {"principal": {}})  # no request: decision is undefined


def test_concurrent_evaluation_from_many_threads(engine: EmbeddedRegoEngine) -> None:
    """regorus engines panic across threads; callers hand work to owner threads, so 8 threads agree with serial."""
    prompts = [f"{'gore' if i % 3 == 0 else 'lake'} number {i}" for i in range(400)]

    def decide(text: str) -> bool:
        return bool(engine.evaluate("data.mediagate.pre.decision", pre_input(text))["allow"])

    serial = [decide(p) for p in prompts]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(decide, prompts))
    assert parallel == serial
    assert serial.count(False) == len(range(0, 400, 3))


def test_every_rego_test_passes_and_a_broken_rule_fails_one(tmp_path: Path) -> None:
    results = run_bundle_tests(load_bundle(REPO_POLICIES)).results
    assert len(results) >= 10
    assert [r.name for r in results if not r.passed] == []
    root = tmp_path / "p"
    shutil.copytree(REPO_POLICIES, root)
    data = json.loads((root / "mediagate/config/data.json").read_text())
    data["defaults"]["banned_terms"] = []
    (root / "mediagate/config/data.json").write_text(json.dumps(data))
    broken = run_bundle_tests(load_bundle(root)).results
    assert {r.name for r in broken if not r.passed} >= {"test_deny_table"}


def test_close_drops_every_engine_on_its_own_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A regorus engine dropped on a foreign thread leaks with an 'unsendable' error; closing must never do that."""
    gc.collect()  # earlier tests' garbage (a client's unclosed socket, say) is not this test's to judge
    unraisable: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(str(u.exc_value)))

    def use_and_close() -> None:
        engine = EmbeddedRegoEngine(load_bundle(REPO_POLICIES), workers=3)
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(
                lambda i: engine.evaluate("data.mediagate.pre.decision", pre_input(f"lake {i}")), range(60)
            ))
        assert all(r["allow"] for r in results)
        engine.check()
        engine.close()
        engine.close()  # idempotent

    use_and_close()  # the adapter is freed here, on this thread
    gc.collect()
    assert unraisable == []


def test_closed_engine_refuses_calls_and_is_not_ready() -> None:
    engine = EmbeddedRegoEngine(load_bundle(REPO_POLICIES), workers=1)
    engine.close()
    with pytest.raises(EngineClosed, match="closed"):
        engine.evaluate("data.mediagate.pre.decision", pre_input("lake"))
    with pytest.raises(PolicyEngineError, match="not running"):
        engine.check()


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="`workers` must be at least 1 but is 0"):
        EmbeddedRegoEngine(load_bundle(REPO_POLICIES), workers=0)
