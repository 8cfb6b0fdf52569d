"""Console sign-in: server-side sessions in the database, an HttpOnly cookie, and a synchronizer CSRF token.

The cookie carries 256 random bits; the ``console_sessions`` table keeps only their SHA-256 (as for API keys), so a
database reader cannot sign in with it. Sessions live in the database, so they work across worker processes and
restarts, and they end at their expiry, at sign-out, or as soon as the reviewer key they were made from is revoked.
CSRF follows the OWASP synchronizer-token pattern: a random token per session, sent back as a hidden form field
or an ``X-CSRF-Token`` header and compared in constant time; a cross-site ``Origin`` is refused as well.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response
from sqlalchemy import delete
from sqlmodel import Session, col, select

from gateway.auth import Principal, authenticate, hash_key
from gateway.deps import RuntimeDep
from gateway.errors import Forbidden, Unauthorized
from gateway.models import ApiKey, ConsoleSession, utcnow
from gateway.runtime import Runtime

COOKIE = "mediagate_console"
COOKIE_PATH = "/console"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


class SignInRequired(Unauthorized):
    """No live console session: HTML pages redirect to the sign-in form (``reason`` picks its message), the JSON
    endpoints answer 401 with the detail."""

    slug = "console-sign-in"
    title = "Sign in to the console"

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.headers = {}  # not a Bearer challenge: the console signs in with a form
        self.extensions["reason"] = reason
        self.reason = reason


class CsrfRejected(Forbidden):
    slug = "csrf"
    title = "CSRF check failed"


@dataclass(frozen=True)
class Reviewer:
    """A signed-in console user: the principal of the key the session was made from, and the session's CSRF token."""

    principal: Principal
    csrf_token: str
    expires_at: datetime


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def sign_in(rt: Runtime, key: str) -> tuple[str, Reviewer]:
    """Check a reviewer key and open a session for it: (cookie token, reviewer). Nothing is stored on failure."""
    principal = authenticate(rt.db, f"Bearer {key.strip()}") if key.strip() else None
    if principal is None:
        raise Unauthorized("enter a reviewer API key")
    if principal.role != "reviewer":
        raise Forbidden(f"this key has the role {principal.role!r}; the console needs a reviewer key")
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(seconds=rt.settings.console_session_ttl_s)
    with Session(rt.db) as session:
        session.execute(delete(ConsoleSession).where(col(ConsoleSession.expires_at) < utcnow()))  # housekeeping
        session.add(ConsoleSession(token_hash=hash_key(token), key_id=principal.key_id, tenant=principal.tenant,
                                   csrf_token=csrf, expires_at=expires))
        session.commit()
    return token, Reviewer(principal, csrf, expires)


def sign_out(rt: Runtime, token: str | None) -> None:
    if token:
        with Session(rt.db) as session:
            session.execute(delete(ConsoleSession).where(col(ConsoleSession.token_hash) == hash_key(token)))
            session.commit()


def resolve(rt: Runtime, token: str | None) -> Reviewer:
    """The reviewer behind a session cookie, or :class:`SignInRequired` saying why there is none."""
    if not token:
        raise SignInRequired("sign in with a reviewer API key", "signin")
    with Session(rt.db) as session:
        # Expiry is compared by the database, in the column's own terms (no naive/aware or server-timezone guessing).
        live = (col(ConsoleSession.expires_at) > utcnow()).label("live")
        found = session.exec(
            select(ConsoleSession, ApiKey, live).join(ApiKey, col(ApiKey.id) == ConsoleSession.key_id)
            .where(ConsoleSession.token_hash == hash_key(token))
        ).first()
        if found is None:
            raise SignInRequired("your session has ended (signed out or expired), sign in again", "ended")
        row, key, alive = found
        why = None
        if not alive:
            why = SignInRequired("your session expired, sign in again", "expired")
        elif key.revoked_at is not None or key.role != "reviewer":
            why = SignInRequired("the key this session was made from was revoked, sign in with another", "revoked")
        if why is not None:
            session.delete(row)
            session.commit()
            raise why
        return Reviewer(Principal(tenant=key.tenant, role=key.role, key_id=key.id), row.csrf_token,
                        _aware(row.expires_at))


def set_cookie(rt: Runtime, response: Response, token: str) -> None:
    secure = rt.settings.console_cookie_secure
    response.set_cookie(
        COOKIE, token, max_age=int(rt.settings.console_session_ttl_s), path=COOKIE_PATH, httponly=True,
        samesite="strict", secure=rt.settings.environment == "production" if secure is None else secure,
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def current_reviewer(request: Request, rt: RuntimeDep) -> Reviewer:
    return resolve(rt, request.cookies.get(COOKIE))


ReviewerDep = Annotated[Reviewer, Depends(current_reviewer)]


def check_origin(request: Request) -> None:
    """Refuse a state-changing request whose ``Origin`` (browsers send one on every POST) is another site's."""
    origin = request.headers.get("origin")
    # Host, not scheme: behind a TLS-terminating proxy the app sees http while the browser says https.
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise CsrfRejected(f"cross-site request refused: it came from {origin!r}; nothing was changed")


def check_csrf(request: Request, reviewer: Reviewer, sent: str | None) -> None:
    """The synchronizer-token check every console POST makes before it changes anything."""
    check_origin(request)
    if not sent:
        raise CsrfRejected("the CSRF token is missing; reload the page and try again (nothing was changed)")
    if not hmac.compare_digest(sent.encode(), reviewer.csrf_token.encode()):
        raise CsrfRejected("the CSRF token is wrong or from another session; reload the page and try again "
                           "(nothing was changed)")
