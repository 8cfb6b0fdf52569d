"""The ``mediagate`` CLI, run in-process through ``main`` with a real MEDIAGATE_HOME."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.auth import hash_key
from gateway.cli import main
from gateway.settings import REPO_POLICIES


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDIAGATE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_keys_create_prints_key_last_and_stores_only_its_hash(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--tenant", "demo", "--role", "reviewer"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("mg_")
    db = sqlite3.connect(home / "mediagate.db")
    rows = db.execute("SELECT tenant, role, key_hash FROM api_keys").fetchall()
    assert rows == [("demo", "reviewer", hash_key(key))]
    dump = "\n".join(db.iterdump())
    assert key not in dump


def test_keys_create_rejects_unknown_role(home: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["keys", "create", "--tenant", "demo", "--role", "root"])
    assert info.value.code == 2


def test_keys_create_rejects_bad_tenant(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--tenant", "bad tenant!", "--role", "app"]) == 2
    assert "tenant 'bad tenant!' must be" in capsys.readouterr().err


def _generate_some(make_gateway: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    gw = make_gateway()
    monkeypatch.setenv("MEDIAGATE_HOME", str(gw.home))
    app = gw.key()
    for prompt in ("a cat", "gore", "a dog"):
        gw.client.post("/v1/generations", headers=app, json={"prompt": prompt, "size": "128x128"})
    return gw


def test_audit_verify_intact_log(make_gateway: Any, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    _generate_some(make_gateway, monkeypatch)
    assert main(["audit", "verify"]) == 0
    assert "4 entries verified" in capsys.readouterr().out  # the start-up policy activation, then 3 decisions


def test_audit_verify_names_the_tampered_entry(make_gateway: Any, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    gw = _generate_some(make_gateway, monkeypatch)
    db = sqlite3.connect(gw.home / "mediagate.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit_entries SET kind = 'x' WHERE seq = 3")
    # An attacker with file access drops the guard and edits the denial into an allow.
    triggers = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
    for name in triggers:
        db.execute(f"DROP TRIGGER {name}")
    payload = db.execute("SELECT payload FROM audit_entries WHERE seq = 3").fetchone()[0]
    assert '"decision":"deny"' in payload  # seq 1 is the policy activation, 2 "a cat", 3 the "gore" denial
    db.execute("UPDATE audit_entries SET payload = ? WHERE seq = 3", (payload.replace('"deny"', '"allow"'),))
    db.commit()
    db.close()
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert "seq=3" in err


def test_policy_test_passes_on_the_shipped_bundle(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "test", "--coverage", str(REPO_POLICIES)]) == 0
    out = capsys.readouterr().out
    assert "data.mediagate.pre_test.test_deny_table: PASS (" in out
    assert re.search(r"^PASS: (\d+)/\1$", out, re.MULTILINE)
    assert re.search(r"mediagate/pre/pre\.rego: \d+\.\d%", out)


def test_policy_test_fails_when_a_rule_regresses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, root)
    rego = root / "mediagate/release/release.rego"
    rego.write_text(rego.read_text().replace("p >= thresholds.nsfw_reject\n", "p > 2\n"))
    assert main(["policy", "test", str(root)]) == 1
    out = capsys.readouterr().out
    assert "data.mediagate.release_test.test_outcome_table: FAIL (" in out
    assert re.search(r"^FAIL: \d+/\d+$", out, re.MULTILINE)


def test_policy_test_prints_coverage_that_drops_when_tests_go(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, root)
    (root / "mediagate/release/release_test.rego").write_text(
        "package mediagate.release_test\n\nimport data.mediagate.release\n\n"
        "test_only_one_thing if release.outcome == \"review\" with input as "
        "{\"principal\": {\"tenant\": \"demo\"}, \"request\": {}, \"obligations\": {}, \"images\": []}\n"
    )
    assert main(["policy", "test", "--coverage", str(root)]) == 0
    out = capsys.readouterr().out
    share = float(re.search(r"mediagate/release/release\.rego: ([\d.]+)%", out).group(1))  # type: ignore[union-attr]
    assert share < 80.0


def test_policy_test_with_no_tests_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, root)
    for test in root.rglob("*_test.rego"):
        test.unlink()
    assert main(["policy", "test", str(root)]) == 1
    assert "no test_* rules" in capsys.readouterr().err


def test_policy_check_reports_file_line_col(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, root)
    (root / "mediagate/pre/extra.rego").write_text("package mediagate.pre\n\nbroken if {\n")
    assert main(["policy", "check", str(root)]) == 1
    assert "mediagate/pre/extra.rego:" in capsys.readouterr().err
    assert main(["policy", "check", str(REPO_POLICIES)]) == 0


def test_models_init_demo_builds_loadable_models(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from generators.diffusers_txt2img import DiffusersTxt2Img
    from quality.caption_model import load_caption_model
    from quality.clip_model import ClipModel

    monkeypatch.setenv("MEDIAGATE_HOME", str(tmp_path / "home"))
    target = tmp_path / "demo"
    assert main(["models", "init-demo", "--dir", str(target)]) == 0
    clip, blip = tmp_path / "home" / "models" / "clip-tiny", tmp_path / "home" / "models" / "blip-tiny"
    assert capsys.readouterr().out.split() == [str(target), str(clip), str(blip)]
    assert (target / "model_index.json").exists()
    assert DiffusersTxt2Img("demo-tiny", target).revision.startswith("sha256:")
    revision = ClipModel(clip).revision
    assert load_caption_model(blip).revision.startswith("sha256:")
    (clip / "open_clip_model.safetensors").write_bytes(b"real weights would be here")
    assert main(["models", "init-demo", "--dir", str(target)]) == 0  # an existing directory is never overwritten
    assert (clip / "open_clip_model.safetensors").read_bytes() == b"real weights would be here" and revision


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("serve", "worker", "keys", "assets", "models", "audit", "policy", "adversarial"):
        assert command in out
