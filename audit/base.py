"""The ``AuditStore`` extension point and the frozen ``AuditEntry`` value."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from sqlmodel import Session

from audit.chain import Canonical


@dataclass(frozen=True)
class AuditEntry:
    """One committed decision. ``hash`` chains it to the entry before (see ``audit.chain``).

    ``payload_text`` is the payload's canonical text, exactly what was hashed; ``payload`` parses it when asked.
    """

    seq: int
    id: str
    ts: str
    tenant: str
    kind: str
    payload_text: str
    prev_hash: str
    hash: str

    @cached_property
    def payload(self) -> Mapping[str, Any]:
        parsed: Mapping[str, Any] = json.loads(self.payload_text)
        return parsed


class AuditStore(Protocol):
    """Append-only, hash-chained decisions. ``append`` joins the caller's transaction; the caller commits."""

    def append(self, session: Session, *, tenant: str, kind: str, payload: Mapping[str, Any] | Canonical
               ) -> AuditEntry: ...

    def get(self, session: Session, entry_id: str, *, tenant: str | None = None) -> AuditEntry | None: ...

    def list(self, session: Session, *, tenant: str | None = None, limit: int = 50, after_seq: int = 0
             ) -> Sequence[AuditEntry]: ...

    def verify(self, session: Session) -> Any:
        """Check the whole log (``audit.verify.VerifyReport``)."""
        ...
