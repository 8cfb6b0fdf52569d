"""Async generations: 202 and a durable job, progress as Server-Sent Events, cancellation, recovery after a crash."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from sqlmodel import Session, select

from gateway.flow import FlowRequest
from gateway.jobs import JobRunner
from gateway.models import Job

PROMPT = {"prompt": "a red bicycle leaning on a wall", "seed": 11, "size": "128x128"}


def audit_entries(gw: Any) -> list[dict[str, Any]]:
    rt = gw.runtime
    with Session(rt.db) as s:
        return [dict(e.payload, kind=e.kind) for e in rt.audit.list(s, limit=1000)]


def sse(text: str) -> list[tuple[int, str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return out


def test_respond_async_gives_202_then_the_job_completes_with_an_audited_decision(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=1)
    app = gw.key()
    resp = gw.client.post("/v1/generations", json=PROMPT, headers={**app, "Prefer": "respond-async"})
    assert resp.status_code == 202, resp.text
    assert resp.headers["preference-applied"] == "respond-async"
    job = resp.json()
    assert job["status"] == "queued" and resp.headers["location"].endswith(f"/v1/jobs/{job['id']}")
    deadline = time.monotonic() + 60
    while (state := gw.client.get(f"/v1/jobs/{job['id']}", headers=app).json())["status"] not in (
            "completed", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state["status"] == "completed" and state["decision"] == "release" and state["attempts"] == 1
    generation = gw.client.get(state["links"]["generation"], headers=app).json()
    assert generation["decision"] == "release" and generation["assets"]
    decided = [e for e in audit_entries(gw) if e["kind"] == "generation.decided"]
    assert [e["job"] for e in decided] == [{"id": job["id"], "attempt": 1}]
    assert decided[0]["generation_id"] == state["generation_id"]

    events = sse(gw.client.get(state["links"]["events"], headers=app).text)
    kinds = [k for _, k, _ in events]
    assert kinds[:2] == ["queued", "started"] and kinds[-1] == "completed"
    steps = [d for _, k, d in events if k == "step"]
    assert steps[0] == {"step": 0, "of": 2} and steps[-1] == {"step": 2, "of": 2}
    assert [d["name"] for _, k, d in events if k == "stage"][:3] == ["features", "pre_policy", "generate"]
    resumed = sse(gw.client.get(state["links"]["events"], headers={**app, "Last-Event-ID": str(events[2][0])}).text)
    assert resumed == events[3:]  # a reconnecting client gets only what it missed


def test_async_in_the_body_and_bad_input_is_still_refused_before_any_job(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    app = gw.key()
    accepted = gw.client.post("/v1/generations", json={**PROMPT, "async": True}, headers=app)
    assert accepted.status_code == 202
    refused = gw.client.post("/v1/generations", json={**PROMPT, "steps": 999, "async": True}, headers=app)
    assert refused.status_code == 422 and refused.json()["field"] == "steps"
    with Session(gw.runtime.db) as s:
        assert len(s.exec(select(Job)).all()) == 1
    other = gw.key("acme")
    assert gw.client.get(f"/v1/jobs/{accepted.json()['id']}", headers=other).status_code == 404


def test_cancel_a_queued_job(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    app = gw.key()
    job = gw.client.post("/v1/generations", json={**PROMPT, "async": True}, headers=app).json()
    cancelled = gw.client.post(f"/v1/jobs/{job['id']}/cancel", headers=app).json()
    assert cancelled["status"] == "cancelled"
    assert gw.runtime.jobs.run_once() is False  # nothing left to run
    assert [k for _, k, _ in sse(gw.client.get(f"/v1/jobs/{job['id']}/events", headers=app).text)] == [
        "queued", "cancelled"]
    assert [e for e in audit_entries(gw) if e["kind"].startswith("generation.")] == []


def test_cancel_a_running_job_stops_it_before_anything_is_audited(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    app = gw.key()
    job_id = gw.client.post("/v1/generations", json={**PROMPT, "async": True}, headers=app).json()["id"]
    runner: JobRunner = gw.runtime.jobs
    claimed = runner.claim()
    assert claimed is not None and claimed.id == job_id
    assert gw.client.post(f"/v1/jobs/{job_id}/cancel", headers=app).json()["cancel_requested"] is True
    runner._run(claimed)  # the first progress report sees the request and stops the flow
    state = gw.client.get(f"/v1/jobs/{job_id}", headers=app).json()
    assert state["status"] == "cancelled" and state["generation_id"] is None
    assert [e for e in audit_entries(gw) if e["kind"].startswith("generation.")] == []


def test_a_job_running_when_the_process_died_runs_again_and_completes_once(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    app = gw.key()
    job_id = gw.client.post("/v1/generations", json={**PROMPT, "async": True}, headers=app).json()["id"]
    runner: JobRunner = gw.runtime.jobs
    assert runner.claim() is not None  # ...and the process dies here: the job stays `running`
    restarted = JobRunner(gw.runtime.db, gw.runtime.flow)  # the next process on the same database
    assert restarted.recover() == 1
    assert restarted.run_once() is True
    state = gw.client.get(f"/v1/jobs/{job_id}", headers=app).json()
    assert state["status"] == "completed" and state["attempts"] == 2
    decided = [e for e in audit_entries(gw) if e["kind"] == "generation.decided"]
    assert [e["job"] for e in decided] == [{"id": job_id, "attempt": 2}]  # one decision, naming the attempt
    kinds = [k for _, k, _ in sse(gw.client.get(f"/v1/jobs/{job_id}/events", headers=app).text)]
    assert kinds.count("started") == 2 and "requeued" in kinds and kinds[-1] == "completed"


def test_a_stale_attempt_cannot_complete_the_job(make_gateway: Any) -> None:
    """Two attempts of the same job (a worker thought dead comes back): only the job's current attempt commits."""
    gw = make_gateway(job_workers=0)
    app = gw.key()
    job_id = gw.client.post("/v1/generations", json={**PROMPT, "async": True}, headers=app).json()["id"]
    runner: JobRunner = gw.runtime.jobs
    first = runner.claim()
    assert first is not None and first.id == job_id
    runner.recover()  # as a restart would: the job is queued again and claimed by attempt 2
    second = runner.claim()
    assert second is not None and second.attempts == 2
    runner._run(first)  # attempt 1 finishes late: its audit transaction is refused
    assert [e for e in audit_entries(gw) if e["kind"] == "generation.decided"] == []
    runner._run(second)
    decided = [e for e in audit_entries(gw) if e["kind"] == "generation.decided"]
    assert [e["job"]["attempt"] for e in decided] == [2]


def test_a_pre_policy_denial_completes_the_job_as_deny(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    app = gw.key()
    job_id = gw.client.post("/v1/generations", json={"prompt": "a castle covered in gore", "async": True},
                            headers=app).json()["id"]
    assert gw.runtime.jobs.run_once()
    state = gw.client.get(f"/v1/jobs/{job_id}", headers=app).json()
    assert state["status"] == "completed" and state["decision"] == "deny" and state["attempts"] == 1
    denied = [e for e in audit_entries(gw) if e["kind"] == "generation.denied"]
    assert [e["job"]["id"] for e in denied] == [job_id]


def test_the_request_survives_the_round_trip_through_the_job_row() -> None:
    req = FlowRequest(kind="prompt", model="demo-tiny", width=128, height=128, n=2, seed=3, prompt="x", steps=2)
    assert FlowRequest(**json.loads(json.dumps(req.as_dict()))) == req


def test_jobs_on_postgresql_with_the_gateway_role(make_gateway: Any, postgres: Any) -> None:
    """The gateway's own role (SELECT/INSERT only on the audit tables) runs, events and completes jobs."""
    owner_url, app_url = postgres.new_database(f"j_{secrets.token_hex(6)}")
    gw = make_gateway(job_workers=0, database_url=app_url, database_admin_url=owner_url)
    app = gw.key()
    job_id = gw.client.post("/v1/generations", json={**PROMPT, "async": True}, headers=app).json()["id"]
    assert gw.runtime.jobs.run_once()
    state = gw.client.get(f"/v1/jobs/{job_id}", headers=app).json()
    assert state["status"] == "completed" and state["decision"] == "release"
    kinds = [k for _, k, _ in sse(gw.client.get(f"/v1/jobs/{job_id}/events", headers=app).text)]
    assert kinds[0] == "queued" and "step" in kinds and kinds[-1] == "completed"
    decided = [e for e in audit_entries(gw) if e["kind"] == "generation.decided"]
    assert [e["job"] for e in decided] == [{"id": job_id, "attempt": 1}]


def test_preview_now_and_the_final_render_as_a_job_linked_to_it(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    app = gw.key()
    resp = gw.client.post("/v1/generations", json={**PROMPT, "size": "256x256", "preview": True}, headers=app)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["tier"] == "preview" and body["decision"] == "release" and body["final"]["status"] == "queued"
    assert resp.headers["location"].endswith(f"/v1/jobs/{body['final']['id']}")
    preview_asset = gw.client.get(body["assets"][0]["url"], headers=app)
    assert preview_asset.status_code == 200
    assert gw.runtime.jobs.run_once()
    final = gw.client.get(f"/v1/jobs/{body['final']['id']}", headers=app).json()
    assert final["status"] == "completed" and final["decision"] == "release"

    entries = {e["generation_id"]: e for e in audit_entries(gw) if e["kind"] == "generation.decided"}
    preview, last = entries[body["id"]], entries[final["generation_id"]]
    assert preview["request"]["model"] == "demo-tiny-preview" and preview["request"]["steps"] == 1
    assert (preview["request"]["width"], last["request"]["width"]) == (128, 256)  # preview: its default size
    assert last["request"]["model"] == "demo-tiny" and last["request"]["steps"] == 2
    assert last["request"]["preview"] == {"generation_id": body["id"], "audit_entry": body["audit_entry"]}
    assert preview["request"]["seed"] == last["request"]["seed"] == PROMPT["seed"]
    assert last["pre"]["id"] != preview["pre"]["id"]  # the final passed the governance flow on its own


def test_a_preview_denied_by_the_pre_policy_makes_no_job(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    resp = gw.client.post("/v1/generations", json={"prompt": "a castle covered in gore", "preview": True},
                          headers=gw.key())
    assert resp.status_code == 403
    with Session(gw.runtime.db) as s:
        assert s.exec(select(Job)).all() == []


def test_preview_is_for_prompt_requests(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    resp = gw.client.post("/v1/generations", json={"template": "spring-sale", "preview": True,
                                                   "fields": {"headline": "Hi", "cta": "Go"}}, headers=gw.key())
    assert resp.status_code == 422 and resp.json()["rule"] == "preview_prompt_only"
