"""The gateway's audit store: every entry a request (or the async job it queued) writes names that request's id.

The id goes into the payload as ``request_id``, so it is covered by the entry's hash like the rest of the decision,
and an auditor can join an entry to the gateway's log lines and to the client's own records. Entries written by
no request (the retention job, hot reload of the policy directory) have none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from audit.base import AuditEntry
from audit.chain import Canonical
from audit.sql_store import SqlAuditStore
from gateway.request_id import current_request_id

FIELD = "request_id"


@dataclass(frozen=True)
class StampedCanonical(Canonical):
    """A canonical payload that already carries the current request id (or was made outside any request)."""


def with_request_id(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """``payload`` plus the current request's id; unchanged outside a request or if it names one already."""
    request_id = current_request_id()
    if request_id is None or FIELD in payload:
        return payload
    return {**payload, FIELD: request_id}


def encode(payload: Mapping[str, Any]) -> StampedCanonical:
    """Stamp and encode a payload ahead of the append (in the request's thread, not under the append lock)."""
    return StampedCanonical(Canonical.of(with_request_id(payload)).text)


class RequestAuditStore(SqlAuditStore):
    """``SqlAuditStore`` that stamps each payload with the id of the request being served.

    The one place the gateway's entries get their request id. A payload encoded by :func:`encode` is stamped
    already; any other pre-encoded ``Canonical`` is decoded and stamped again (correct, only slower).
    """

    def append(self, session: Session, *, tenant: str, kind: str, payload: Mapping[str, Any] | Canonical
               ) -> AuditEntry:
        if isinstance(payload, Canonical):
            if not isinstance(payload, StampedCanonical) and current_request_id() is not None:
                payload = encode(json.loads(payload.text))
        else:
            payload = with_request_id(payload)
        return super().append(session, tenant=tenant, kind=kind, payload=payload)
