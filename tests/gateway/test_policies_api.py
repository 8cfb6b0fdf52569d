"""Policy administration over HTTP: gated activation, refusals, rollback, restarts and shadow mode.

Everything runs the real bundle through the real gate (regorus tests) and the real audit log.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from audit.sql_store import AuditRow
from gateway.policy.bundle import BundleError, load_bundle
from gateway.settings import REPO_POLICIES

GZIP = {"Content-Type": "application/gzip"}


def edited_bundle(tmp_path: Path, edit: Callable[[Path], None], name: str = "edited") -> bytes:
    """The repo bundle with ``edit`` applied, as the tarball a trust team would upload."""
    root = tmp_path / name
    shutil.copytree(REPO_POLICIES, root)
    edit(root)
    return load_bundle(root).archive()


def ban(term: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / "mediagate/config/data.json"
        data = json.loads(path.read_text())
        data["defaults"]["banned_terms"].append(term)
        path.write_text(json.dumps(data))

    return edit


def break_a_test(root: Path) -> None:
    rego = root / "mediagate/release/release.rego"
    rego.write_text(rego.read_text().replace("p >= thresholds.nsfw_reject\n", "p > 2\n"))


def generate(gw: Any, headers: dict[str, str], prompt: str) -> Any:
    return gw.client.post("/v1/generations", headers=headers, json={"prompt": prompt, "size": "128x128", "seed": 3})


def audit_kinds(gw: Any) -> list[str]:
    with Session(gw.runtime.db) as s:
        return [r.kind for r in s.exec(select(AuditRow).order_by(AuditRow.seq)).all()]  # type: ignore[arg-type]


def test_listing_shows_the_active_bundle_and_its_audited_activation(gateway: Any) -> None:
    admin = gateway.key("trust", "policy-admin")
    body = gateway.client.get("/v1/policies", headers=admin).json()
    bundle = load_bundle(REPO_POLICIES)
    assert body["active"]["revision"] == bundle.label
    assert body["active"]["engine"] == "embedded" and body["managed_by"] == "gateway"
    assert set(body["active"]["concepts"]) == set(bundle.data["mediagate"]["config"]["concepts"])
    [first] = body["history"]
    assert first["event"] == "activated" and first["source"] == "directory" and first["rollback_possible"]
    assert first["detail"]["tests"]["failed"] == 0 and first["detail"]["tests"]["passed"] >= 20
    assert audit_kinds(gateway) == ["policy.activated"]
    assert gateway.client.get("/v1/policies", headers=gateway.key("demo", "app")).status_code == 403
    assert gateway.client.get("/v1/policies", headers=gateway.key("demo", "auditor")).status_code == 200


def test_upload_activates_a_passing_bundle(gateway: Any, tmp_path: Path) -> None:
    admin, app = gateway.key("trust", "policy-admin"), gateway.key("demo", "app")
    assert generate(gateway, app, "a red zeppelin").json()["decision"] == "release"
    blob = edited_bundle(tmp_path, ban("zeppelin"))
    resp = gateway.client.put("/v1/policies", headers={**admin, **GZIP}, content=blob)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "active" and resp.json()["tests"]["failed"] == 0
    denied = generate(gateway, app, "a red zeppelin")
    assert denied.status_code == 403 and denied.json()["codes"] == ["prompt.banned_term"]
    assert denied.json()["policy_revision"] == resp.json()["revision"]
    assert audit_kinds(gateway)[-3:] == ["generation.decided", "policy.activated", "generation.denied"]
    history = gateway.client.get("/v1/policies", headers=admin).json()["history"]
    assert [(h["event"], h["source"]) for h in history] == [("activated", "upload"), ("activated", "directory")]
    assert history[0]["detail"]["previous"] == history[1]["revision"]


def test_a_bundle_failing_its_tests_is_refused_and_nothing_changes(gateway: Any, tmp_path: Path) -> None:
    admin = gateway.key("trust", "policy-admin")
    before = gateway.runtime.policy.revision
    resp = gateway.client.put("/v1/policies", headers={**admin, **GZIP}, content=edited_bundle(tmp_path, break_a_test))
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["type"].endswith("/policy-refused")
    failures = problem["tests"]["failures"]
    assert "data.mediagate.release_test.test_outcome_table" in [f["test"] for f in failures]
    assert gateway.runtime.policy.revision == before
    entry = gateway.client.get(f"/v1/audit/entries/{problem['audit_entry']}", headers=gateway.key("trust", "auditor"))
    assert entry.json()["kind"] == "policy.refused"
    assert entry.json()["payload"]["tests"]["failed"] >= 1


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda r: (r / "mediagate/pre/extra.rego").write_text("package mediagate.pre\n\nx if {\n  input.a ==\n}\n"),
         "mediagate/pre/extra.rego:5:1: expecting expression"),
        (lambda r: (r / "mediagate/pre/extra.rego").write_text("package mediagate.pre\n\nx if {\n  y > 1\n}\n"),
         "mediagate/pre/extra.rego:4:3: use of undefined variable `y` is unsafe"),
        (lambda r: (r / "mediagate/pre/extra.rego").write_text("package mediagate.pre\n\nx := count(1)\n"),
         "mediagate/pre/extra.rego:3:"),
        (lambda r: (r / "mediagate/config/data.json").write_text('{"defaults": '),
         "mediagate/config/data.json:1:"),
        (lambda r: (r / "other").mkdir() or (r / "other/x.rego").write_text("package other\nx := 1\n"),
         "other/x.rego: package other is outside the bundle's roots"),
        (lambda r: [(r / "mediagate/release" / f).unlink() for f in ("release.rego", "release_test.rego")],
         "the bundle must define data.mediagate.release.decision"),
        (lambda r: [t.unlink() for t in r.rglob("*_test.rego")], "no test_* rules"),
    ],
)
def test_bad_bundles_are_refused_naming_file_and_line(
    gateway: Any, tmp_path: Path, edit: Callable[[Path], Any], fragment: str
) -> None:
    admin = gateway.key("trust", "policy-admin")
    before = gateway.runtime.policy.revision
    resp = gateway.client.put("/v1/policies", headers={**admin, **GZIP}, content=_archive(tmp_path, edit))
    assert resp.status_code == 422, resp.text
    assert any(fragment in p for p in resp.json()["problems"]), resp.json()["problems"]
    assert gateway.runtime.policy.revision == before


def _archive(tmp_path: Path, edit: Callable[[Path], Any]) -> bytes:
    """Like ``edited_bundle`` but tolerant of edits that make the directory itself unloadable."""
    import io
    import tarfile

    root = tmp_path / "raw"
    shutil.copytree(REPO_POLICIES, root)
    edit(root)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(root).as_posix())
    return raw.getvalue()


def test_path_escape_is_refused(gateway: Any) -> None:
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("../../etc/cron.d/evil.rego")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"oops"))
    resp = gateway.client.put("/v1/policies", headers={**gateway.key("t", "policy-admin"), **GZIP},
                              content=raw.getvalue())
    assert resp.status_code == 422
    assert resp.json()["problems"] == ["../../etc/cron.d/evil.rego: path escapes the bundle directory"]


@pytest.mark.parametrize(
    ("headers", "content", "status", "rule"),
    [
        ({"Content-Type": "application/json"}, b"{}", 415, "bundle_media_type"),
        (GZIP, b"", 400, "non_empty"),
    ],
)
def test_upload_framing_errors(gateway: Any, headers: dict[str, str], content: bytes, status: int, rule: str) -> None:
    resp = gateway.client.put("/v1/policies", headers={**gateway.key("t", "policy-admin"), **headers},
                              content=content)
    assert resp.status_code == status
    assert resp.json()["rule"] == rule


def test_oversized_upload_is_413(make_gateway: Any) -> None:
    gw = make_gateway(policy_max_bundle_bytes=2048)
    resp = gw.client.put("/v1/policies", headers={**gw.key("t", "policy-admin"), **GZIP}, content=b"x" * 4096)
    assert resp.status_code == 413
    assert resp.json()["limit"] == 2048


def test_only_policy_admins_change_policy(gateway: Any, tmp_path: Path) -> None:
    blob = edited_bundle(tmp_path, ban("zeppelin"))
    for role in ("app", "reviewer", "auditor"):
        assert gateway.client.put("/v1/policies", headers={**gateway.key("t", role), **GZIP},
                                  content=blob).status_code == 403


def test_dry_run_tests_without_activating(gateway: Any, tmp_path: Path) -> None:
    admin = gateway.key("trust", "policy-admin")
    before, kinds = gateway.runtime.policy.revision, audit_kinds(gateway)
    resp = gateway.client.put("/v1/policies?dry_run=true", headers={**admin, **GZIP},
                              content=edited_bundle(tmp_path, ban("zeppelin")))
    assert resp.status_code == 200 and resp.json()["status"] == "tested"
    assert gateway.runtime.policy.revision == before and audit_kinds(gateway) == kinds


def test_rollback_reactivates_an_earlier_revision(gateway: Any, tmp_path: Path) -> None:
    admin, app = gateway.key("trust", "policy-admin"), gateway.key("demo", "app")
    original = gateway.runtime.policy.revision
    gateway.client.put("/v1/policies", headers={**admin, **GZIP}, content=edited_bundle(tmp_path, ban("zeppelin")))
    assert generate(gateway, app, "a red zeppelin").status_code == 403
    resp = gateway.client.post("/v1/policies/rollback", headers=admin, json={"revision": original})
    assert resp.status_code == 200, resp.text
    assert gateway.runtime.policy.revision == original
    assert generate(gateway, app, "a red zeppelin").status_code == 200
    digest_prefix = load_bundle(REPO_POLICIES).digest[:10]
    assert gateway.client.post("/v1/policies/rollback", headers=admin, json={"revision": digest_prefix}).status_code \
        == 200  # already active: accepted, nothing recorded
    missing = gateway.client.post("/v1/policies/rollback", headers=admin, json={"revision": "nope+0000"})
    assert missing.status_code == 404
    assert gateway.client.post("/v1/policies/rollback", headers=admin, json={}).status_code == 422
    sources = [h["source"] for h in gateway.client.get("/v1/policies", headers=admin).json()["history"]]
    assert sources == ["rollback", "upload", "directory"]


@pytest.fixture
def live(make_gateway: Any, tmp_path: Path, shared_registry: Any, shared_scorers: Any, shared_matcher: Any) -> Any:
    """A gateway serving a bundle directory of its own, and ``restart()``: a second runtime on the same home."""
    from gateway.runtime import build_runtime

    policy_dir = tmp_path / "live"
    shutil.copytree(REPO_POLICIES, policy_dir)
    gw = make_gateway(policy_dir=policy_dir)

    def restart() -> Any:
        runtime = build_runtime(gw.runtime.settings, registry=shared_registry, scorers=shared_scorers,
                                matcher=shared_matcher)
        runtime.close()
        return runtime

    gw.policy_dir, gw.restart = policy_dir, restart
    return gw


def test_restart_restores_the_upload_unless_the_directory_changed(live: Any, tmp_path: Path) -> None:
    upload = live.client.put("/v1/policies", headers={**live.key("t", "policy-admin"), **GZIP},
                             content=edited_bundle(tmp_path, ban("zeppelin"))).json()["revision"]
    assert live.restart().policy.revision == upload  # the directory is unchanged: the upload stays
    ban("lighthouse")(live.policy_dir)  # edited while "down"
    assert live.restart().policy.revision == load_bundle(live.policy_dir).label


def test_start_up_falls_back_to_the_last_good_bundle(live: Any) -> None:
    good = live.runtime.policy.revision
    break_a_test(live.policy_dir)
    runtime = live.restart()
    assert runtime.policy.revision == good
    events = [(h["event"], h["source"]) for h in runtime.policy.history()]
    assert events[:2] == [("activated", "restore"), ("refused", "directory")]


def test_start_up_without_any_good_bundle_fails_with_the_reasons(make_gateway: Any, tmp_path: Path) -> None:
    policy_dir = tmp_path / "broken"
    shutil.copytree(REPO_POLICIES, policy_dir)
    break_a_test(policy_dir)
    with pytest.raises(BundleError, match="test_outcome_table"):
        make_gateway(policy_dir=policy_dir)


def test_every_decision_records_its_id_and_revision(gateway: Any) -> None:
    app = gateway.key("demo", "app")
    body = generate(gateway, app, "a quiet lake").json()
    assert body["policy"]["pre_decision_id"].startswith("dec_")
    assert body["policy"]["release_decision_id"].startswith("dec_")
    assert body["policy"]["pre_decision_id"] != body["policy"]["release_decision_id"]
    payload = gateway.client.get(f"/v1/audit/entries/{body['audit_entry']}", headers=app).json()["payload"]
    assert payload["pre"]["id"] == body["policy"]["pre_decision_id"]
    assert payload["release"]["id"] == body["policy"]["release_decision_id"]
    assert payload["release"]["revision"] == gateway.runtime.policy.revision
    denied = generate(gateway, app, "gore").json()
    assert denied["decision_id"].startswith("dec_")
    entry = gateway.client.get(f"/v1/audit/entries/{denied['audit_entry']}", headers=app).json()
    assert entry["payload"]["pre"]["id"] == denied["decision_id"]


def test_shadow_records_disagreements_without_affecting_traffic(gateway: Any, tmp_path: Path) -> None:
    admin, app = gateway.key("trust", "policy-admin"), gateway.key("demo", "app")
    assert gateway.client.get("/v1/policies/shadow", headers=admin).status_code == 404
    started = gateway.client.put("/v1/policies/shadow", headers={**admin, **GZIP},
                                 content=edited_bundle(tmp_path, ban("zeppelin")))
    assert started.status_code == 200, started.text
    live = gateway.runtime.policy.revision
    kept = generate(gateway, app, "a red zeppelin")
    assert kept.status_code == 200 and kept.json()["decision"] == "release"  # the shadow changes nothing
    generate(gateway, app, "a quiet lake")  # both agree: counted, not stored
    report = gateway.client.get("/v1/policies/shadow", headers=gateway.key("trust", "auditor")).json()
    assert report["shadow_revision"] == started.json()["shadow_revision"] != live
    assert report["evaluated_since_loaded"] == {"pre": 2, "release": 2}
    [row] = report["disagreements"]
    assert row["generation_id"] == kept.json()["id"]
    assert row["decision_id"] == kept.json()["policy"]["pre_decision_id"]
    assert row["active"] == {"outcome": "allow", "codes": []}
    assert row["shadow"] == {"outcome": "deny", "codes": ["prompt.banned_term"]}
    assert report["transitions"] == [{"stage": "pre", "active": "allow", "shadow": "deny", "count": 1}]
    metrics = gateway.client.get("/metrics").text
    assert 'mediagate_policy_shadow_decisions_total{agreement="disagree",stage="pre"} 1.0' in metrics
    stopped = gateway.client.delete("/v1/policies/shadow", headers=admin)
    assert stopped.status_code == 200
    assert gateway.client.get("/v1/policies/shadow", headers=admin).status_code == 404
    assert audit_kinds(gateway).count("policy.shadow_started") == audit_kinds(gateway).count("policy.shadow_stopped")


def test_a_failing_shadow_bundle_is_refused(gateway: Any, tmp_path: Path) -> None:
    resp = gateway.client.put("/v1/policies/shadow", headers={**gateway.key("t", "policy-admin"), **GZIP},
                              content=edited_bundle(tmp_path, break_a_test))
    assert resp.status_code == 422
    assert gateway.runtime.policy.shadow.bundle is None
