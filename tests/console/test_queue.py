"""The queue through the console: what a reviewer sees, tenancy, live updates, and decisions that are audited and
released exactly like the JSON review API's."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session

from audit.c2pa_manifest import read_manifest
from gateway.models import Review


def test_the_queue_shows_each_held_item_with_scores_reasons_and_request(console: Any) -> None:
    first = console.held(prompt="a lighthouse at dusk")
    second = console.held(prompt="a red bicycle")
    browser = console.browser()
    page = browser.page("/console")
    assert page.status_code == 200
    rid1, rid2 = first["review"]["id"], second["review"]["id"]
    assert page.text.index(f'id="item-{rid1}"') < page.text.index(f'id="item-{rid2}"')  # oldest first
    assert '<span id="count" class="count">2</span>' in page.text
    assert "policy.force_review" in page.text  # the release policy's reason code, and its message
    assert "a lighthouse at dusk" in page.text and "a red bicycle" in page.text
    assert "demo-tiny" in page.text
    card = first["assets"][0]
    for scorer in ("perceptual", "nsfw", "brisque"):
        assert f"<th>{scorer}</th>" in page.text

    image = browser.client.get(f"/console/assets/{card['id']}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.headers["x-mediagate-status"] == "held"
    assert image.content.startswith(b"\x89PNG")

    item = browser.page(f"/console/reviews/{rid1}")
    assert item.status_code == 200 and first["id"] in item.text and "a lighthouse at dusk" in item.text


def test_images_need_a_session_not_a_bearer_key(console: Any) -> None:
    asset_id = console.held()["assets"][0]["id"]
    browser = console.browser(signed_in=False)
    resp = browser.client.get(f"/console/assets/{asset_id}", headers=console.gateway.key("careful", "reviewer"))
    assert resp.status_code == 401 and resp.json()["reason"] == "signin"


def test_a_reviewer_of_another_tenant_sees_nothing_of_it(console: Any) -> None:
    held = console.held("careful", prompt="secret launch banner for careful")
    review_id, asset_id = held["review"]["id"], held["assets"][0]["id"]
    outsider = console.browser("other")

    page = outsider.page(f"/console/reviews/{review_id}")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "no such review for your tenant" in page.text
    for secret in ("secret launch banner", held["id"], asset_id):
        assert secret not in page.text
    assert review_id not in outsider.page("/console").text
    assert review_id not in str(outsider.client.get("/console/api/queue").json())

    assert outsider.client.get(f"/console/assets/{asset_id}").status_code == 404
    decided = outsider.approve(review_id)
    assert decided.status_code == 404 and decided.json()["detail"].startswith("no such review for your tenant")
    assert outsider.approve_form(review_id).status_code == 404
    assert console.pending("careful") == [review_id] and "review.approved" not in console.audit_kinds()


def test_approval_releases_the_asset_with_the_same_provenance_and_audit_as_the_api(console: Any) -> None:
    held = console.held()
    review_id, asset = held["review"]["id"], held["assets"][0]
    app = console.gateway.key("careful", "app")
    assert console.gateway.client.get(f"/v1/assets/{asset['id']}", headers=app).status_code == 403  # held
    browser = console.browser()

    resp = browser.approve_form(review_id, reason="brand team checked the colours")
    assert resp.status_code == 303 and resp.headers["location"] == f"/console/reviews/{review_id}"
    with Session(console.gateway.runtime.db) as session:
        review = session.get(Review, review_id)
    assert review is not None and review.status == "approved" and review.audit_entry_id is not None
    shown = browser.page(resp.headers["location"])
    assert "This review was approved" in shown.text and review.audit_entry_id in shown.text
    assert "brand team checked the colours" in shown.text and 'class="decide"' not in shown.text

    released = console.gateway.client.get(f"/v1/assets/{asset['id']}", headers=app)
    assert released.status_code == 200 and released.headers["x-mediagate-status"] == "released"
    report = read_manifest(released.content, "image/png", console.gateway.runtime.settings.keys.ca_cert.read_bytes())
    assert report.trusted and report.claims is not None
    assert report.claims.audit_entry_id == review.audit_entry_id
    assert report.claims.watermark_id == asset["watermark_id"]

    entry = console.gateway.client.get(f"/v1/audit/entries/{review.audit_entry_id}", headers=app).json()
    assert entry["kind"] == "review.approved"
    assert entry["payload"]["note"] == "brand team checked the colours"
    assert entry["payload"]["reviewer"]["tenant"] == "careful" and entry["payload"]["reviewer"]["role"] == "reviewer"
    assert entry["payload"]["assets"][0]["asset_id"] == asset["id"]
    assert console.pending() == [] and review_id not in browser.page("/console").text


def test_rejection_keeps_the_asset_from_the_app(console: Any) -> None:
    held = console.held()
    browser = console.browser()
    resp = browser.approve(held["review"]["id"], reason="off brand", action="reject")
    assert resp.status_code == 200 and resp.json()["status"] == "rejected"
    app = console.gateway.key("careful", "app")
    assert console.gateway.client.get(f"/v1/assets/{held['assets'][0]['id']}", headers=app).status_code == 403
    assert console.audit_kinds().count("review.rejected") == 1


def test_double_approval_is_idempotent_with_one_audit_entry(console: Any) -> None:
    review_id = console.held()["review"]["id"]
    browser, colleague = console.browser(), console.browser()
    first = browser.approve(review_id)
    assert first.status_code == 200, first.text
    entry_id = first.json()["audit_entry"]

    again = colleague.approve(review_id)
    assert again.status_code == 409 and again.json()["audit_entry"] == entry_id
    assert again.json()["detail"] == f"this review was already approved (audit entry {entry_id}); nothing was changed"
    form = browser.approve_form(review_id, action="reject")
    assert form.status_code == 409 and f"already approved (audit entry {entry_id})" in form.text
    assert console.audit_kinds().count("review.approved") == 1 and "review.rejected" not in console.audit_kinds()


@pytest.mark.parametrize("via", ["form", "api"])
@pytest.mark.parametrize("reason", ["", "   ", "x" * 2001])
def test_a_reason_is_required(console: Any, via: str, reason: str) -> None:
    review_id = console.held()["review"]["id"]
    browser = console.browser()
    resp = browser.approve_form(review_id, reason=reason) if via == "form" else browser.approve(review_id, reason)
    assert resp.status_code == 422
    expected = "at most 2000 are allowed" if reason.strip() else "a reason is required to approve or reject"
    assert expected in resp.text and "nothing was changed" in resp.text
    assert console.pending() == [review_id] and "review.approved" not in console.audit_kinds()


def test_the_live_endpoint_sends_new_items_and_drops_decided_ones(console: Any) -> None:
    first = console.held()["review"]["id"]
    browser = console.browser()
    state = browser.client.get("/console/api/queue", params={"known": first}).json()
    assert state == {"ids": [first], "count": 1, "items": []}  # nothing new to render

    second = console.held(prompt="a paper boat")["review"]["id"]
    state = browser.client.get("/console/api/queue", params={"known": first}).json()
    assert state["ids"] == [first, second] and [i["id"] for i in state["items"]] == [second]
    html = state["items"][0]["html"]
    assert f'id="item-{second}"' in html and "a paper boat" in html and browser.csrf in html

    assert browser.approve(first).status_code == 200
    state = browser.client.get("/console/api/queue", params={"known": f"{first},{second}"}).json()
    assert state["ids"] == [second] and state["items"] == []


def test_prompt_text_is_escaped(console: Any) -> None:
    held = console.held(prompt='a poster saying <script>alert("x")</script>')
    browser = console.browser()
    page = browser.page("/console")
    assert '<script>alert("x")</script>' not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
    fragment = browser.client.get("/console/api/queue").json()["items"][0]["html"]
    assert held["review"]["id"] in fragment and "<script>" not in fragment
