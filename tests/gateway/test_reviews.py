"""The review queue: held assets stay out of reach until a reviewer of the same tenant approves them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from audit.c2pa_manifest import read_manifest


@pytest.fixture
def review_gateway(make_gateway: Any, make_policy_dir: Any) -> Any:
    """A gateway whose bundle forces review for tenant ``careful`` (edited as a trust team would, in data)."""
    return make_gateway(policy_dir=make_policy_dir(tenants={"careful": {"force_review": True}}))


def held_generation(gw: Any, app: dict[str, str]) -> dict[str, Any]:
    resp = gw.client.post("/v1/generations", headers=app, json={"prompt": "a lighthouse", "size": "128x128"})
    assert resp.status_code == 200 and resp.json()["decision"] == "review"
    return resp.json()


def test_approval_releases_the_asset_and_is_audited(review_gateway: Any) -> None:
    gw = review_gateway
    app, reviewer = gw.key("careful", "app"), gw.key("careful", "reviewer")
    body = held_generation(gw, app)
    asset_id = body["assets"][0]["id"]
    assert gw.client.get(f"/v1/assets/{asset_id}", headers=app).status_code == 403
    assert gw.client.get(f"/v1/assets/{asset_id}", headers=reviewer).status_code == 200  # reviewers can look

    queue = gw.client.get("/v1/reviews", headers=reviewer).json()["data"]
    assert [r["id"] for r in queue] == [body["review"]["id"]]
    assert queue[0]["reasons"][0]["code"] == "policy.force_review"

    decided = gw.client.post(f"/v1/reviews/{body['review']['id']}/approve", headers=reviewer,
                             json={"reason": "checked by hand"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"
    released = gw.client.get(f"/v1/assets/{asset_id}", headers=app)
    assert released.status_code == 200
    # Released by the approval: the file now carries a manifest naming the approval's audit entry.
    report = read_manifest(released.content, "image/png", gw.runtime.settings.keys.ca_cert.read_bytes())
    assert report.trusted and report.claims is not None
    assert report.claims.audit_entry_id == decided.json()["audit_entry"]
    assert report.claims.audit_entry_hash == decided.json()["audit_entry_hash"]
    assert report.claims.watermark_id == body["assets"][0]["watermark_id"]
    assert gw.client.get("/v1/reviews", headers=reviewer).json()["data"] == []

    entry = gw.client.get(f"/v1/audit/entries/{decided.json()['audit_entry']}", headers=app).json()
    assert entry["kind"] == "review.approved"
    assert entry["payload"]["note"] == "checked by hand"
    assert entry["payload"]["assets"][0]["asset_id"] == asset_id


def test_rejection_keeps_the_asset_unreleased(review_gateway: Any) -> None:
    gw = review_gateway
    app, reviewer = gw.key("careful", "app"), gw.key("careful", "reviewer")
    body = held_generation(gw, app)
    resp = gw.client.post(f"/v1/reviews/{body['review']['id']}/reject", headers=reviewer, json={"reason": "off brand"})
    assert resp.status_code == 200 and resp.json()["status"] == "rejected"
    assert gw.client.get(f"/v1/assets/{body['assets'][0]['id']}", headers=app).status_code == 403


def test_double_decision_is_409_and_writes_one_entry(review_gateway: Any) -> None:
    gw = review_gateway
    app, reviewer = gw.key("careful", "app"), gw.key("careful", "reviewer")
    review_id = held_generation(gw, app)["review"]["id"]

    def approve(_: int) -> int:
        url = f"/v1/reviews/{review_id}/approve"
        return int(gw.client.post(url, headers=reviewer, json={"reason": "ok"}).status_code)

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(approve, range(4)))
    assert statuses == [200, 409, 409, 409]
    kinds = [e["kind"] for e in gw.client.get("/v1/audit/entries", headers=app).json()["data"]]
    assert kinds.count("review.approved") == 1


@pytest.mark.parametrize(
    ("who", "path_suffix", "body", "status"),
    [
        ("other-reviewer", "/approve", {"reason": "x"}, 404),
        ("app", "/approve", {"reason": "x"}, 403),
        ("reviewer", "/approve", {}, 422),
        ("reviewer", "/approve", {"reason": ""}, 422),
        ("reviewer", "/bless", {"reason": "x"}, 422),
    ],
)
def test_review_bad_requests_change_nothing(
    review_gateway: Any, who: str, path_suffix: str, body: dict, status: int
) -> None:
    gw = review_gateway
    app = gw.key("careful", "app")
    headers = {
        "other-reviewer": gw.key("elsewhere", "reviewer"), "app": app, "reviewer": gw.key("careful", "reviewer")
    }[who]
    review_id = held_generation(gw, app)["review"]["id"]
    resp = gw.client.post(f"/v1/reviews/{review_id}{path_suffix}", headers=headers, json=body)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    pending = gw.client.get("/v1/reviews", headers=gw.key("careful", "reviewer")).json()["data"]
    assert [r["id"] for r in pending] == [review_id]
