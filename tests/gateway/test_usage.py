"""Usage accounting (``gateway.usage``) and ``GET /v1/usage``: one usage row per audited generation, sums that match
the stored assets, cost from the configured prices, each tenant its own and auditors everything."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, col, func, select

from audit.sql_store import AuditRow
from gateway.models import Asset, Generation, UsageRecord

TEMPLATE = {"template": "spring-sale", "fields": {"headline": "Spring sale", "subline": "Up to 30% off",
                                                  "cta": "Shop now"}}
PROMPT = {"prompt": "a red bicycle leaning on a wall", "size": "128x128", "seed": 3}
PRICES = {"price_gpu_second": 3.0, "price_cpu_second": 2.0, "price_image": 0.5, "price_storage_gb_month": 1000.0,
          "price_storage_months": 2.0}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    owner_url, app_url = request.getfixturevalue("postgres").new_database(f"u_{secrets.token_hex(6)}")
    return {"database_url": app_url, "database_admin_url": owner_url}


def usage(gw: Any, headers: dict[str, str], **params: str) -> Any:
    return gw.client.get("/v1/usage", headers=headers, params=params)


def test_usage_sums_match_the_generated_assets_and_cost_follows_the_prices(make_gateway: Any,
                                                                          database: dict[str, str]) -> None:
    gw = make_gateway(**PRICES, **database)
    app = gw.key("u1")
    for body in (TEMPLATE, TEMPLATE, {**PROMPT, "n": 2}):
        assert gw.client.post("/v1/generations", json=body, headers=app).status_code == 200
    denied = gw.client.post("/v1/generations", json={**PROMPT, "prompt": "gore everywhere"}, headers=app)
    assert denied.status_code == 403  # no generation ran: no usage

    resp = usage(gw, app)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["tenant"] == "u1" and body["prices"]["currency"] == "USD" and body["prices"]["cpu_second"] == 2.0
    rows = {(r["model"], r["template"]): r for r in body["data"]}
    assert set(rows) == {("template", "spring-sale"), ("demo-tiny", None)}
    with Session(gw.runtime.db) as s:
        for (model, _template), row in rows.items():
            assets = s.exec(select(Asset).join(Generation, col(Asset.generation_id) == Generation.id).where(
                Generation.tenant == "u1", Generation.model == model, Generation.decision != "deny")).all()
            assert row["images"] == len(assets)
            assert row["storage_bytes"] == sum(a.size_bytes for a in assets)
            generations = {a.generation_id for a in assets}
            assert row["generations"] == len(generations)
            assert row["cpu_seconds"] > 0 and row["gpu_seconds"] == 0  # this machine renders on its CPU
            cost = row["cost"]
            assert cost["cpu"] == pytest.approx(row["cpu_seconds"] * 2.0, abs=1e-5)
            assert cost["images"] == pytest.approx(row["images"] * 0.5)
            assert cost["storage"] == pytest.approx(row["storage_bytes"] / 1e9 * 1000 * 2, abs=1e-5)
            assert cost["total"] == pytest.approx(cost["cpu"] + cost["gpu"] + cost["images"] + cost["storage"],
                                                  abs=1e-5)
            assert row["cost_per_asset"] == pytest.approx(cost["total"] / row["images"], abs=1e-5)
    assert (rows[("template", "spring-sale")]["images"], rows[("demo-tiny", None)]["images"]) == (2, 2)
    totals = body["totals"]
    assert totals["images"] == 4 and totals["generations"] == 3
    assert totals["storage_bytes"] == sum(r["storage_bytes"] for r in rows.values())


def test_every_generation_entry_has_its_usage_row_and_no_other_has_one(make_gateway: Any) -> None:
    gw = make_gateway()
    app = gw.key("u1")
    for body in (TEMPLATE, {**PROMPT, "prompt": "gore everywhere"}, PROMPT):
        gw.client.post("/v1/generations", json=body, headers=app)
    with Session(gw.runtime.db) as s:
        rows = s.exec(select(UsageRecord)).all()
        decided = s.exec(select(Generation).where(Generation.decision != "deny")).all()
        kinds = {r.id: r.kind for r in s.exec(select(AuditRow)).all()}
    assert {r.generation_id for r in rows} == {g.id for g in decided} and len(rows) == 2
    assert {kinds[r.audit_entry_id] for r in rows} == {"generation.decided"}
    assert {r.audit_entry_id for r in rows} == {g.audit_entry_id for g in decided}


def test_a_failed_audit_commit_leaves_no_usage(make_gateway: Any, write_locked: Any) -> None:
    gw = make_gateway(db_busy_timeout_ms=200, quotas=False)  # (with quotas the edge's charge would fail first)
    app = gw.key("u1")
    with write_locked(gw):  # another process holds the write lock past the gateway's busy timeout
        resp = gw.client.post("/v1/generations", json=PROMPT, headers=app)
    assert resp.status_code == 503, resp.text
    assert "audit log" in resp.json()["detail"]
    with Session(gw.runtime.db) as s:
        assert s.exec(select(func.count()).select_from(UsageRecord)).one() == 0
        assert s.exec(select(func.count()).select_from(Generation)).one() == 0


def test_tenants_see_their_own_usage_and_auditors_see_all(make_gateway: Any) -> None:
    gw = make_gateway()
    one, two, auditor = gw.key("u1"), gw.key("u2"), gw.key("audit-co", "auditor")
    for headers in (one, two, two):
        assert gw.client.post("/v1/generations", json=TEMPLATE, headers=headers).status_code == 200
    assert {r["tenant"] for r in usage(gw, one).json()["data"]} == {"u1"}
    assert usage(gw, one, tenant="u1").status_code == 200
    refused = usage(gw, one, tenant="u2")
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    everyone = usage(gw, auditor).json()
    assert everyone["tenant"] is None
    assert {r["tenant"]: r["images"] for r in everyone["data"]} == {"u1": 1, "u2": 2}
    assert [r["tenant"] for r in usage(gw, auditor, tenant="u2").json()["data"]] == ["u2"]
    reviewer = gw.key("u2", "reviewer")
    assert {r["tenant"] for r in usage(gw, reviewer).json()["data"]} == {"u2"}
    assert gw.client.get("/v1/usage").status_code == 401


def test_the_range_selects_what_was_made_in_it(make_gateway: Any) -> None:
    gw = make_gateway()
    app = gw.key("u1")
    assert gw.client.post("/v1/generations", json=TEMPLATE, headers=app).status_code == 200
    now = datetime.now(UTC)
    around = usage(gw, app, **{"from": (now - timedelta(hours=1)).isoformat(), "to": (now + timedelta(hours=1))
                               .isoformat()}).json()
    assert around["totals"]["images"] == 1
    later = usage(gw, app, **{"from": (now + timedelta(hours=1)).isoformat(), "to": (now + timedelta(hours=2))
                              .isoformat()}).json()
    assert later["data"] == [] and later["totals"]["images"] == 0 and later["totals"]["cost_per_asset"] is None
    dated = usage(gw, app, **{"from": "2020-01-01", "to": "2020-02-01"})  # dates alone are UTC midnights
    assert dated.status_code == 200 and dated.json()["from"] == "2020-01-01T00:00:00+00:00"


@pytest.mark.parametrize(("params", "field", "rule"), [
    ({"from": "yesterday"}, "from", "iso8601"),
    ({"to": "2026-13-01T00:00:00Z"}, "to", "iso8601"),
    ({"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "from", "from_not_after_to"),
    ({"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to", "max_range"),
    ({"tenant": "not a tenant!"}, "tenant", "tenant_format"),
    ({"from": "x" * 65}, "from", "max_length"),
])
def test_bad_parameters_are_422_naming_the_field(gateway: Any, params: dict[str, str], field: str, rule: str
                                                 ) -> None:
    resp = usage(gateway, gateway.key("u1", "auditor"), **params)
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert (body["field"], body["rule"]) == (field, rule)
    assert resp.headers["content-type"] == "application/problem+json"
