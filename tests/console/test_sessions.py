"""Console sign-in and sessions: only reviewer keys get in; the cookie is hardened; expiry, revocation, sign-out and
CSRF failures each say what happened and change nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from gateway.auth import hash_key
from gateway.models import ApiKey, ConsoleSession, utcnow


def sessions(console: Any) -> list[ConsoleSession]:
    with Session(console.gateway.runtime.db) as session:
        return list(session.exec(select(ConsoleSession)))


def test_sign_in_opens_a_server_side_session_with_a_hardened_cookie(console: Any) -> None:
    browser = console.browser(signed_in=False)
    first = browser.page("/console")
    assert first.status_code == 303 and first.headers["location"] == "/console/login?m=signin"

    resp = browser.client.post("/console/login", data={"key": browser.key}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/console"
    cookie = resp.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes and "secure" not in attributes
    assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()

    token = browser.client.cookies["mediagate_console"]
    [row] = sessions(console)
    assert row.token_hash == hash_key(token) and token not in (row.token_hash, row.csrf_token)
    assert row.tenant == "careful"

    queue = browser.page("/console")
    assert queue.status_code == 200
    assert "tenant <b>careful</b>" in queue.text and browser.csrf == row.csrf_token
    assert "frame-ancestors 'none'" in queue.headers["content-security-policy"]
    assert queue.headers["cache-control"] == "no-store"
    assert browser.client.get("/console/static/console.js").status_code == 200
    again = browser.page("/console/login")  # signed in already: straight to the queue
    assert again.status_code == 303 and again.headers["location"] == "/console"


@pytest.mark.parametrize(("setting", "secure"), [(None, False), (True, True), (False, False)])
def test_cookie_is_secure_when_configured(make_gateway: Any, setting: bool | None, secure: bool) -> None:
    gw = make_gateway(console_cookie_secure=setting)
    key = gw.key("careful", "reviewer")["Authorization"].removeprefix("Bearer ")
    resp = gw.client.post("/console/login", data={"key": key}, follow_redirects=False)
    assert resp.status_code == 303
    assert ("; secure" in resp.headers["set-cookie"].lower()) is secure


@pytest.mark.parametrize(
    ("key", "status", "message"),
    [
        ("app", 403, "this key has the role &#39;app&#39;; the console needs a reviewer key"),
        ("auditor", 403, "the console needs a reviewer key"),
        ("mg_0000_not-a-key", 401, "the API key is unknown or revoked"),
        ("", 401, "enter a reviewer API key"),
        ("revoked", 401, "the API key is unknown or revoked"),
    ],
)
def test_sign_in_refuses_other_keys_and_opens_no_session(console: Any, key: str, status: int, message: str) -> None:
    browser = console.browser(signed_in=False)
    if key in ("app", "auditor"):
        key = console.browser("careful", key, signed_in=False).key
    elif key == "revoked":
        key = browser.key
        with Session(console.gateway.runtime.db) as session:
            row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).one()
            row.revoked_at = utcnow()
            session.add(row)
            session.commit()
    resp = browser.client.post("/console/login", data={"key": key}, follow_redirects=False)
    assert resp.status_code == status
    assert message in resp.text and 'id="login-error"' in resp.text
    assert "set-cookie" not in resp.headers and sessions(console) == []


def test_an_expired_session_redirects_to_sign_in_and_changes_nothing(console: Any) -> None:
    review_id = console.held()["review"]["id"]
    browser = console.browser()
    expire(console)

    # A form post with a valid CSRF token, but after expiry: back to sign-in, the review untouched.
    resp = browser.approve_form(review_id)
    assert resp.status_code == 303 and resp.headers["location"] == "/console/login?m=expired"
    assert console.pending() == [review_id] and "review.approved" not in console.audit_kinds()
    assert sessions(console) == []  # the dead session is removed as soon as it is seen

    login = browser.client.get(resp.headers["location"])
    assert "Your session expired, sign in again." in login.text


def expire(console: Any) -> None:
    with Session(console.gateway.runtime.db) as session:
        for row in session.exec(select(ConsoleSession)).all():
            row.expires_at = utcnow() - timedelta(seconds=1)
            session.add(row)
        session.commit()


def test_an_expired_session_is_401_on_the_json_endpoints(console: Any) -> None:
    review_id = console.held()["review"]["id"]
    browser = console.browser()
    expire(console)
    resp = browser.approve(review_id)
    assert resp.status_code == 401 and resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["detail"] == "your session expired, sign in again" and resp.json()["reason"] == "expired"
    assert console.pending() == [review_id] and "review.approved" not in console.audit_kinds()


def test_the_session_lasts_the_configured_ttl(make_gateway: Any) -> None:
    gw = make_gateway(console_session_ttl_s=600)
    key = gw.key("careful", "reviewer")["Authorization"].removeprefix("Bearer ")
    resp = gw.client.post("/console/login", data={"key": key}, follow_redirects=False)
    assert "max-age=600" in resp.headers["set-cookie"].lower()
    with Session(gw.runtime.db) as session:
        [row] = session.exec(select(ConsoleSession)).all()
    assert timedelta(seconds=599) <= row.expires_at - row.created_at <= timedelta(seconds=601)


def test_revoking_the_key_ends_its_sessions(console: Any) -> None:
    browser = console.browser()
    with Session(console.gateway.runtime.db) as session:
        row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(browser.key))).one()
        row.revoked_at = utcnow()
        session.add(row)
        session.commit()
    resp = browser.page("/console")
    assert resp.status_code == 303 and resp.headers["location"] == "/console/login?m=revoked"
    assert sessions(console) == []


def test_sign_out_deletes_the_session(console: Any) -> None:
    browser = console.browser()
    old_cookie = browser.client.cookies["mediagate_console"]
    resp = browser.client.post("/console/logout", data={"csrf_token": browser.csrf}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/console/login?m=signedout"
    assert sessions(console) == []
    browser.client.cookies.set("mediagate_console", old_cookie, path="/console")  # replaying the old cookie
    again = browser.page("/console")
    assert again.status_code == 303 and again.headers["location"] == "/console/login?m=ended"


def test_sessions_survive_a_new_app_on_the_same_database(console: Any) -> None:
    """Sessions are rows, not process memory: another worker (here a second app on the same runtime) accepts them."""
    from fastapi.testclient import TestClient

    from gateway.app import create_app

    browser = console.browser()
    app = create_app(runtime=console.gateway.runtime)
    app.state.runtime = console.gateway.runtime  # what its lifespan would set; the runtime is already started
    other = TestClient(app, raise_server_exceptions=False)
    console.browsers.append(other)
    other.cookies.set("mediagate_console", browser.client.cookies["mediagate_console"], path="/console")
    resp = other.get("/console", follow_redirects=False)
    assert resp.status_code == 200 and "tenant <b>careful</b>" in resp.text


@pytest.mark.parametrize("via", ["form", "api"])
@pytest.mark.parametrize("token", ["missing", "wrong", "other-session", "cross-site"])
def test_csrf_failures_are_403_and_change_nothing(console: Any, via: str, token: str) -> None:
    review_id = console.held()["review"]["id"]
    browser = console.browser()
    headers: dict[str, str] = {}
    sent = {"missing": "", "wrong": "x" * 43, "other-session": console.browser().csrf,
            "cross-site": browser.csrf}[token]
    if token == "cross-site":
        headers["Origin"] = "https://evil.example"
    if via == "form":
        data = {"reason": "looks fine", **({"csrf_token": sent} if sent else {})}
        resp = browser.client.post(f"/console/reviews/{review_id}/approve", data=data, headers=headers)
        assert resp.headers["content-type"].startswith("text/html")
    else:
        if sent:
            headers["X-CSRF-Token"] = sent
        resp = browser.client.post(f"/console/api/reviews/{review_id}/approve", json={"reason": "looks fine"},
                                   headers=headers)
        assert resp.headers["content-type"] == "application/problem+json"
    assert resp.status_code == 403
    expected = {"missing": "CSRF token is missing", "wrong": "CSRF token is wrong",
                "other-session": "CSRF token is wrong", "cross-site": "cross-site request refused"}[token]
    assert expected in resp.text and "nothing was changed" in resp.text
    assert console.pending() == [review_id] and "review.approved" not in console.audit_kinds()


def test_sessions_on_postgresql_in_another_timezone(make_gateway: Any, postgres: Any) -> None:
    """Expiry is decided by the database: right even when the server's timezone is not UTC (Tokyo, UTC+9: a naive
    timestamp read back and taken for UTC would keep an expired session alive for nine more hours)."""
    import psycopg

    owner_url, app_url = postgres.new_database("console_sessions_tz")
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute("ALTER DATABASE console_sessions_tz SET timezone TO 'Asia/Tokyo'")
    gw = make_gateway(database_url=app_url, database_admin_url=owner_url)
    key = gw.key("careful", "reviewer")["Authorization"].removeprefix("Bearer ")
    assert gw.client.post("/console/login", data={"key": key}, follow_redirects=False).status_code == 303
    assert gw.client.get("/console", follow_redirects=False).status_code == 200
    with Session(gw.runtime.db) as session:
        row = session.exec(select(ConsoleSession)).one()
        row.expires_at = utcnow() - timedelta(seconds=60)
        session.add(row)
        session.commit()
    resp = gw.client.get("/console", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/console/login?m=expired"
