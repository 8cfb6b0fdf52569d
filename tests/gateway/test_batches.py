"""``POST /v1/batches``: a campaign feed is validated (great-expectations) before anything runs, then fans out."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlmodel import Session, func, select

from audit.sql_store import AuditRow
from gateway.models import Batch, Job

CSV = "text/csv"
GOOD = (
    "sku,locale,template_id,headline,cta\n"
    "SKU-1,en-GB,product-square,Autumn boots,Shop now\n"
    "SKU-2,de-DE,product-square,Herbststiefel,Jetzt kaufen\n"
)


def submit(gw: Any, headers: dict[str, str], feed: str | bytes, content_type: str = CSV, **params: Any) -> Any:
    data = feed.encode() if isinstance(feed, str) else feed
    return gw.client.post("/v1/batches", content=data, params=params,
                          headers={**headers, "Content-Type": content_type})


def counts(gw: Any) -> tuple[int, int, int]:
    with Session(gw.runtime.db) as s:
        return (int(s.exec(select(func.count()).select_from(Batch)).one()),
                int(s.exec(select(func.count()).select_from(Job)).one()),
                int(s.exec(select(func.count()).select_from(AuditRow)).one()))


def wait_done(gw: Any, headers: dict[str, str], batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while (body := gw.client.get(f"/v1/batches/{batch_id}", headers=headers).json())["status"] != "completed":
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    return body


def test_a_valid_feed_fans_out_and_stores_the_score_card_report(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=2)
    app = gw.key()
    resp = submit(gw, app, GOOD)
    assert resp.status_code == 202, resp.text
    batch = resp.json()
    assert resp.headers["location"].endswith(f"/v1/batches/{batch['id']}")
    assert batch["rows"] == {"total": 2, "accepted": 2, "rejected": 0}
    assert [(i["row"], i["sku"]) for i in batch["items"]] == [(1, "SKU-1"), (2, "SKU-2")]
    assert batch["feed_report"]["ok"] is True
    done = wait_done(gw, app, batch["id"])
    assert {i["status"] for i in done["items"]} == {"completed"}
    assert {i["decision"] for i in done["items"]} <= {"release", "review"}
    report = done["cards_report"]
    assert report["success"] is True and report["images"] == 2, report
    for item in done["items"]:  # each row went through the whole governed flow, with its own locale and text
        generation = gw.client.get(f"/v1/generations/{item['generation_id']}", headers=app).json()
        assert generation["id"] == item["generation_id"]
    entry = gw.client.get(f"/v1/audit/entries/{done['audit_entry']}", headers=app).json()
    assert entry["kind"] == "batch.accepted"
    assert entry["payload"]["accepted"] == [{"row": 1, "sku": "SKU-1"}, {"row": 2, "sku": "SKU-2"}]
    assert gw.client.get(f"/v1/batches/{batch['id']}", headers=gw.key("acme")).status_code == 404


def test_an_invalid_feed_is_refused_with_row_and_column_errors_and_generates_nothing(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    app = gw.key()
    feed = GOOD + "bad sku!,xx_YY,product-square,Fine,Go\nSKU-4,en-GB,product-square,,Go\n"
    before = counts(gw)
    resp = submit(gw, app, feed)
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["type"].endswith("/invalid-feed") and problem["field"] == "feed"
    assert problem["rule"] == "feed_invalid" and "partial=true" in problem["detail"]
    located = {(e["row"], e["column"]) for e in problem["errors"]}
    assert (3, "sku") in located and (3, "locale") in located and (4, "headline") in located
    assert (1, "sku") not in located
    assert counts(gw) == before  # no batch, no job, no audit entry


def test_partial_runs_only_the_valid_rows(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    app = gw.key()
    feed = GOOD + "SKU-3,en-GB,product-square," + "x" * 200 + ",Go\n"
    resp = submit(gw, app, feed, partial="true")
    assert resp.status_code == 202, resp.text
    batch = resp.json()
    assert batch["rows"] == {"total": 3, "accepted": 2, "rejected": 1}
    assert [i["row"] for i in batch["items"]] == [1, 2]
    assert [(e["row"], e["column"]) for e in batch["feed_report"]["errors"]] == [(3, "headline")]


def test_json_feeds_and_nested_fields(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    rows = [{"sku": "A1", "locale": "fr-FR", "template_id": "product-square",
             "fields": {"headline": "Bottes", "cta": "Acheter"}}]
    resp = submit(gw, gw.key(), json.dumps(rows), "application/json")
    assert resp.status_code == 202, resp.text
    assert resp.json()["rows"]["accepted"] == 1


def test_broken_feeds_name_the_problem(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    app = gw.key()
    before = counts(gw)
    latin1 = "sku,locale,template_id,headline,cta\nS1,fr-FR,product-square,Bottes d'été,Go\n".encode("latin-1")
    resp = submit(gw, app, latin1)
    assert resp.status_code == 422 and resp.json()["rule"] == "encoding"
    assert "offset" in resp.json()["detail"]
    assert submit(gw, app, "").json()["rule"] == "empty"
    resp = submit(gw, app, "S1,en-GB,product-square,Boots,Go\n")  # no header row
    assert resp.status_code == 422 and resp.json()["field"].startswith("feed")
    assert submit(gw, app, "sku,sku\n1,2\n").status_code == 422
    assert submit(gw, app, GOOD, "application/xml").status_code == 415
    assert submit(gw, app, "{not json", "application/json").json()["rule"] == "json_syntax"
    resp = submit(gw, app, GOOD, brand="no-such-brand")
    assert resp.status_code == 422 and resp.json()["rule"] == "known_brand"
    assert counts(gw) == before


def test_roles(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    assert submit(gw, {}, GOOD).status_code == 401
    assert submit(gw, gw.key("demo", "reviewer"), GOOD).status_code == 403
