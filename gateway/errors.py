"""One error hierarchy, rendered to RFC 9457 problem+json by a single handler (see ``gateway.problems``).

Every failure a client can see is a :class:`GatewayError`. Subclasses fix the HTTP status, the problem ``type`` URI
and the title; instances carry the detail and extension members (``field``, ``rule``, ``codes``, ``audit_entry``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

PROBLEM_BASE = "https://mediagate.dev/problems/"


class GatewayError(Exception):
    """Root of every error the gateway reports to a client."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = {k: v for k, v in extensions.items() if v is not None}

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type_uri, "title": self.title, "status": self.status, "detail": self.detail
        }
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


class InvalidInput(GatewayError):
    """The request is well-formed JSON but breaks a rule of the API (names ``field`` and ``rule``)."""

    status = 422
    slug = "invalid-input"
    title = "Invalid request"

    def __init__(self, field: str, rule: str, detail: str, **extensions: Any) -> None:
        super().__init__(detail, field=field, rule=rule, **extensions)
        self.field = field
        self.rule = rule


class MalformedRequest(GatewayError):
    status = 400
    slug = "malformed-request"
    title = "Malformed request"


class PayloadTooLarge(GatewayError):
    status = 413
    slug = "payload-too-large"
    title = "Request body too large"


class UnsupportedMediaType(GatewayError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class Unauthorized(GatewayError):
    status = 401
    slug = "unauthorized"
    title = "Missing or invalid API key"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="mediagate"'})


class Forbidden(GatewayError):
    status = 403
    slug = "forbidden"
    title = "Role not permitted"


class PolicyDenied(GatewayError):
    """The pre-policy or the release policy said no; ``codes`` are the Rego rules' stable codes."""

    status = 403
    slug = "policy-denied"
    title = "Denied by policy"


class HeldForReview(GatewayError):
    """Raised only where an API has no way to say "held" in a success body (the OpenAI-compatible route)."""

    status = 403
    slug = "held-for-review"
    title = "Held for human review"


class NotFound(GatewayError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Gone(GatewayError):
    status = 410
    slug = "gone"
    title = "Gone"


class Conflict(GatewayError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class QuotaExceeded(GatewayError):
    """A quota or rate limit of ``data.mediagate.quota`` has no room; ``Retry-After`` says when to try again. The
    problem names the ``limit``, its ``limit_value``, what is ``used`` and the ``window``; nothing was charged."""

    status = 429
    slug = "quota-exceeded"
    title = "Quota exceeded"


class DependencyUnavailable(GatewayError):
    """A component the flow cannot do without failed; the gateway fails closed and releases nothing."""

    status = 503
    slug = "unavailable"
    title = "Dependency unavailable, nothing was released"
