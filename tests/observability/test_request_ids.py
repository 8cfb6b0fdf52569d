"""Request ids: echoed on every response, written on the request's log lines and into its audit entries (async
jobs included), and the audit log still verifies with them."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session

from gateway.logs import JsonFormatter, RequestContextFilter
from gateway.models import Job
from gateway.request_id import valid_request_id

GENERATED = re.compile(r"[0-9a-f]{32}")
PROMPT = {"prompt": "a lighthouse at dusk", "size": "128x128", "seed": 5}


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    """The JSON lines ``mediagate.access`` writes while the test runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("mediagate.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def entry(gw: Any, entry_id: str, headers: dict[str, str]) -> dict[str, Any]:
    resp = gw.client.get(f"/v1/audit/entries/{entry_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_a_client_request_id_is_echoed_logged_and_audited(gateway: Any, access_lines: io.StringIO) -> None:
    app = gateway.key()
    rid = "client-7f3a:retry.2"
    resp = gateway.client.post("/v1/generations", headers={**app, "X-Request-ID": rid}, json=PROMPT)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-request-id"] == rid
    assert entry(gateway, resp.json()["audit_entry"], app)["payload"]["request_id"] == rid

    [line] = [x for x in lines(access_lines) if x["path"] == "/v1/generations"]
    assert line["request_id"] == rid and line["tenant"] == "demo"
    assert line["method"] == "POST" and line["status"] == 200 and line["duration_ms"] > 0
    assert line["logger"] == "mediagate.access" and line["level"] == "INFO"


def test_each_request_gets_its_own_id_and_entries_only_their_own(gateway: Any) -> None:
    app = gateway.key()
    first = gateway.client.post("/v1/generations", headers=app, json=PROMPT)
    second = gateway.client.post("/v1/generations", headers=app, json={**PROMPT, "seed": 6})
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(GENERATED.fullmatch(i) for i in ids) and ids[0] != ids[1]
    audited = [entry(gateway, r.json()["audit_entry"], app)["payload"]["request_id"] for r in (first, second)]
    assert audited == ids


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "a\u00e9b", "<script>", "line\tbreak"])
def test_a_bad_request_id_is_replaced_not_echoed(gateway: Any, bad: str) -> None:
    assert not valid_request_id(bad)
    resp = gateway.client.get("/healthz", headers={"X-Request-ID": bad.encode()})
    assert resp.status_code == 200
    assert GENERATED.fullmatch(resp.headers["x-request-id"])
    assert len(resp.headers.get_list("x-request-id")) == 1


def test_error_responses_carry_the_id_in_the_header_and_the_problem(gateway: Any) -> None:
    app = gateway.key()
    refused = gateway.client.post("/v1/generations", headers={**app, "X-Request-ID": "req-422"},
                                  json={**PROMPT, "steps": 999})
    assert refused.status_code == 422 and refused.json()["field"] == "steps"
    assert refused.headers.get_list("x-request-id") == ["req-422"] and refused.json()["request_id"] == "req-422"

    denied = gateway.client.post("/v1/generations", headers={**app, "X-Request-ID": "req-403"},
                                 json={"prompt": "a castle covered in gore"})
    assert denied.status_code == 403 and denied.json()["request_id"] == "req-403"
    assert entry(gateway, denied.json()["audit_entry"], app)["payload"]["request_id"] == "req-403"

    unauthenticated = gateway.client.get("/v1/reviews", headers={"X-Request-ID": "req-401"})
    assert unauthenticated.status_code == 401 and unauthenticated.headers["x-request-id"] == "req-401"


def test_an_unhandled_error_still_answers_with_the_id(gateway: Any, access_lines: io.StringIO) -> None:
    def boom() -> None:
        raise RuntimeError("a bug")

    gateway.client.app.add_api_route("/test-boom", boom)
    resp = gateway.client.get("/test-boom", headers={"X-Request-ID": "req-500"})
    assert resp.status_code == 500
    assert resp.headers["x-request-id"] == "req-500" and resp.json()["request_id"] == "req-500"
    [line] = [x for x in lines(access_lines) if x["path"] == "/test-boom"]
    assert line["status"] == 500 and line["request_id"] == "req-500"


def test_an_async_job_carries_the_request_id_into_its_audit_entry(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=1)
    app = gw.key()
    accepted = gw.client.post("/v1/generations", headers={**app, "X-Request-ID": "batch-run-42",
                                                          "Prefer": "respond-async"}, json=PROMPT)
    assert accepted.status_code == 202 and accepted.headers["x-request-id"] == "batch-run-42"
    job_id = accepted.json()["id"]
    deadline = time.monotonic() + 60
    while (state := gw.client.get(f"/v1/jobs/{job_id}", headers=app).json())["status"] != "completed":
        assert state["status"] in ("queued", "running") and time.monotonic() < deadline, state
        time.sleep(0.05)
    with Session(gw.runtime.db) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.request_id == "batch-run-42"
    generation = gw.client.get(f"/v1/generations/{state['generation_id']}", headers=app).json()
    audited = entry(gw, generation["audit_entry"], app)
    assert audited["kind"] == "generation.decided"
    assert audited["payload"]["request_id"] == "batch-run-42" and audited["payload"]["job"]["id"] == job_id


def test_a_review_decision_names_the_reviewers_request_and_the_log_verifies(make_gateway: Any,
                                                                           make_policy_dir: Any) -> None:
    gw = make_gateway(policy_dir=make_policy_dir(tenants={"careful": {"force_review": True}}))
    app, reviewer = gw.key("careful", "app"), gw.key("careful", "reviewer")
    held = gw.client.post("/v1/generations", headers={**app, "X-Request-ID": "gen-1"}, json=PROMPT).json()
    assert held["decision"] == "review"
    decided = gw.client.post(f"/v1/reviews/{held['review']['id']}/approve", json={"reason": "fine"},
                             headers={**reviewer, "X-Request-ID": "approve-1"})
    assert decided.status_code == 200, decided.text
    assert entry(gw, decided.json()["audit_entry"], app)["payload"]["request_id"] == "approve-1"
    assert entry(gw, held["audit_entry"], app)["payload"]["request_id"] == "gen-1"
    with Session(gw.runtime.db) as session:
        report = gw.runtime.audit.verify(session)
    assert report.ok, report


def test_a_scored_upload_names_its_request(gateway: Any) -> None:
    from PIL import Image

    app = gateway.key()
    buffer = io.BytesIO()
    Image.new("RGB", (96, 96), (40, 120, 200)).save(buffer, format="PNG")
    resp = gateway.client.post("/v1/score", headers={**app, "X-Request-ID": "score-9"},
                               files=[("image", ("a.png", buffer.getvalue()))])
    assert resp.status_code == 200, resp.text
    audited = entry(gateway, resp.json()["audit_entry"], app)
    assert audited["kind"] == "score.decided" and audited["payload"]["request_id"] == "score-9"
