"""Writes that carry an audit entry, through the group committer; any storage failure fails closed (503)."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from typing import TypeVar

from sqlmodel import Session

from audit.group_commit import GroupCommitter
from gateway.errors import DependencyUnavailable, GatewayError

log = logging.getLogger(__name__)

T = TypeVar("T")


def commit(committer: GroupCommitter, write: Callable[[Session], T], *, what: str = "nothing was released") -> T:
    """Run ``write`` in the next group commit. No commit, no result: the caller gets 503 and ``what`` happened.

    ``write`` runs in a copy of the caller's context, in the committer's thread: the audit store sees the id of
    the request being served (``gateway.audit_store``)."""
    context = contextvars.copy_context()
    try:
        return committer.run(lambda session: context.run(write, session))
    except GatewayError:
        raise  # the write itself refused (e.g. a review already decided): its own 4xx
    except Exception as exc:  # noqa: BLE001 - any storage failure must fail closed
        log.exception("audited write failed")
        raise DependencyUnavailable(f"the audit log could not be written; {what}") from exc
