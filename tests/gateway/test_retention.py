"""Retention: asset bytes expire per the tenant's policy, in an audited transaction; audit entries never do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from gateway.cli import main
from gateway.models import Asset

BANNER = {"template": "product-square", "fields": {"headline": "Boots", "cta": "Buy"}}


@pytest.fixture
def gateway(make_gateway: Any, make_policy_dir: Any) -> Any:
    """Tenant "short" keeps asset bytes 30 days (as a trust team would set it in data); "demo" keeps them."""
    return make_gateway(policy_dir=make_policy_dir(tenants={"short": {"retention_days": 30}}), retention_interval_s=0)


def test_expired_bytes_go_after_their_audit_entry_and_the_log_stays(gateway: Any) -> None:
    short, demo = gateway.key("short", "app"), gateway.key("demo", "app")  # short keeps 30 days, demo forever
    short_body = gateway.client.post("/v1/generations", headers=short, json=BANNER).json()
    demo_body = gateway.client.post("/v1/generations", headers=demo, json=BANNER).json()
    job = gateway.runtime.retention
    assert job.run_once() == []  # nothing is old enough yet

    later = datetime.now(UTC) + timedelta(days=31)
    [planned] = job.run_once(now=later, dry_run=True)
    assert planned.tenant == "short" and planned.audit_entry is None
    [done] = job.run_once(now=later)
    assert done.asset_ids == tuple(a["id"] for a in short_body["assets"]) and done.bytes_deleted == 2
    entry = gateway.client.get(f"/v1/audit/entries/{done.audit_entry}", headers=gateway.key("short", "auditor"))
    payload = entry.json()["payload"]
    assert entry.json()["kind"] == "assets.expired" and payload["retention_days"] == 30
    assert payload["assets"][0]["sha256"] == short_body["assets"][0]["pixels_sha256"]

    gone = gateway.client.get(short_body["assets"][0]["url"], headers=short)
    assert gone.status_code == 410 and gone.json()["type"].endswith("/gone")
    assert gateway.client.get(demo_body["assets"][0]["url"], headers=demo).status_code == 200
    with pytest.raises(OSError):
        gateway.runtime.assets.get(short_body["assets"][0]["pixels_sha256"])
    with Session(gateway.runtime.db) as s:
        assert gateway.runtime.audit.verify(s).ok
        assert s.exec(select(Asset).where(Asset.tenant == "short")).first().status == "expired"  # type: ignore[union-attr]
    assert job.run_once(now=later) == []  # idempotent


def test_shared_bytes_survive_while_a_live_asset_uses_them(gateway: Any) -> None:
    """The store is content-addressed: the same pixels released to two tenants are one file."""
    short, demo = gateway.key("short", "app"), gateway.key("demo", "app")
    a = gateway.client.post("/v1/generations", headers=short, json=BANNER).json()["assets"][0]
    with Session(gateway.runtime.db) as s:  # a demo asset that shares short's pixel file
        row = s.exec(select(Asset).where(Asset.id == a["id"])).one()
        twin = Asset(**{**row.model_dump(), "id": "ast_twin", "tenant": "demo", "watermark_id": None,
                             "signed_sha256": None})
        s.add(twin)
        s.commit()
    [done] = gateway.runtime.retention.run_once(now=datetime.now(UTC) + timedelta(days=31))
    assert done.bytes_deleted == 1  # the signed file went, the shared pixels stayed
    assert gateway.runtime.assets.get(a["pixels_sha256"])
    assert demo  # the demo key exists; its tenant keeps everything


def test_cli_expire(gateway: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MEDIAGATE_HOME", str(gateway.home))
    gateway.client.post("/v1/generations", headers=gateway.key("short", "app"), json=BANNER)
    assert main(["assets", "expire", "--dry-run"]) == 0
    assert "nothing to expire" in capsys.readouterr().out


def test_audit_entries_are_never_expired(gateway: Any, tmp_path: Path) -> None:
    body = gateway.client.post("/v1/generations", headers=gateway.key("short", "app"), json=BANNER).json()
    gateway.runtime.retention.run_once(now=datetime.now(UTC) + timedelta(days=1000))
    entry = gateway.client.get(f"/v1/audit/entries/{body['audit_entry']}", headers=gateway.key("short", "auditor"))
    assert entry.status_code == 200 and entry.json()["payload"]["decision"] == "release"
