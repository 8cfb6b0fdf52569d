"""Fail closed: when the audit log, the policy engine or a scorer fails, nothing is released."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from sqlmodel import Session, func, select

from gateway.models import Asset, Generation
from gateway.settings import REPO_POLICIES


def test_audit_write_failure_is_503_and_releases_nothing(make_gateway: Any, write_locked: Any) -> None:
    gw = make_gateway(db_busy_timeout_ms=200, quotas=False)  # quotas would refuse first, at the edge (tested there)
    app = gw.key()
    # Another process holds the database's write lock for longer than the gateway's busy timeout: a real failure.
    with write_locked(gw):
        resp = gw.client.post("/v1/generations", headers=app, json={"prompt": "a cat", "size": "128x128", "seed": 1})
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert "nothing was released" in resp.json()["detail"]
    with Session(gw.runtime.db) as s:
        assert s.exec(select(func.count()).select_from(Asset)).one() == 0
        assert s.exec(select(func.count()).select_from(Generation)).one() == 0
    # Once the lock is gone the same request goes through and the chain is intact.
    ok = gw.client.post("/v1/generations", headers=app, json={"prompt": "a cat", "size": "128x128", "seed": 1})
    assert ok.status_code == 200
    with Session(gw.runtime.db) as s:
        assert gw.runtime.audit.verify(s).ok


class ExplodingScorer:
    """A scorer whose model is broken: it must make the card incomplete, never crash the request."""

    name = "exploding"
    version = "1"
    fields: dict[str, Any] = {"x": "float"}

    def score(self, images: Sequence[Image.Image], context: Any) -> list[dict[str, float]]:
        raise RuntimeError("model weights unreadable")


def test_failed_scorer_means_review_not_release(make_gateway: Any, shared_scorers: Any) -> None:
    gw = make_gateway(scorers=[*shared_scorers, ExplodingScorer()])
    app = gw.key()
    resp = gw.client.post("/v1/generations", headers=app, json={"prompt": "a cat", "size": "128x128"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["decision"] == "review"
    assert "score.incomplete" in [r["code"] for r in body["reasons"]]
    assert body["assets"][0]["url"] is None
    held = gw.client.get(f"/v1/assets/{body['assets'][0]['id']}", headers=app)
    assert held.status_code == 403
    assert held.json()["type"].endswith("/held-for-review")


def patched_bundle(tmp_path: Path, edit: Any) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, target)
    edit(target)
    return target


def test_undefined_release_decision_is_503(make_gateway: Any, tmp_path: Path) -> None:
    def break_release(root: Path) -> None:
        # Undefined only for tenant "fragile", which the bundle's own tests never use: the bundle passes the
        # activation gate, and the hole shows up on live traffic.
        rego = root / "mediagate/release/release.rego"
        text = rego.read_text().replace("decision := {", "decision := {\"guard\": guard,", 1)
        rego.write_text(text + '\nguard := true if input.principal.tenant != "fragile"\n')

    gw = make_gateway(policy_dir=patched_bundle(tmp_path, break_release))
    ok = gw.client.post("/v1/generations", headers=gw.key(), json={"prompt": "a cat", "size": "128x128"})
    assert ok.status_code == 200
    resp = gw.client.post("/v1/generations", headers=gw.key("fragile"), json={"prompt": "a cat", "size": "128x128"})
    assert resp.status_code == 503
    assert "release policy" in resp.json()["detail"]
    with Session(gw.runtime.db) as s:
        assert s.exec(select(func.count()).select_from(Asset).where(Asset.tenant == "fragile")).one() == 0


def test_force_review_from_policy_data(make_gateway: Any, tmp_path: Path) -> None:
    def force(root: Path) -> None:
        path = root / "mediagate/config/data.json"
        data = json.loads(path.read_text())
        data["tenants"]["careful"] = {"force_review": True}
        path.write_text(json.dumps(data))

    gw = make_gateway(policy_dir=patched_bundle(tmp_path, force))
    resp = gw.client.post("/v1/generations", headers=gw.key("careful"), json={"prompt": "a cat", "size": "128x128"})
    assert resp.json()["decision"] == "review"
    assert [r["code"] for r in resp.json()["reasons"]] == ["policy.force_review"]
    assert "review.tenant_forced" in resp.json()["reasons"][0]["msg"]
