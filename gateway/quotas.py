"""Per-tenant quotas and rate limits, enforced at the edge before any work (docs/quotas.md).

The limits are policy data: ``data.mediagate.quota.limits`` for the caller's tenant, key and role, evaluated once
per bundle digest and cached, so a new bundle applies from its activation on. The counters are database rows
(``quota_counters``) in fixed windows (the UTC minute, the UTC day). All the counters of a request are charged by
one atomic statement, ``INSERT ... ON CONFLICT DO UPDATE SET used = used + n WHERE used + n <= limit RETURNING``,
in one fixed order; when any has no room the transaction rolls back, so a refusal charges nothing and several gateway
processes on one database never admit more than the limit between them.

Unfinished async jobs are counted in the ``jobs`` table itself (the source of truth, after a crash too), under a
per-tenant lock row taken in the very transaction that queues the new jobs. GPU-seconds are charged after the fact
by ``gateway.usage``, in each generation's audit transaction; here a tenant whose day total has reached its limit
gets no new generation work.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import TextClause, bindparam, delete, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col

from gateway.auth import Principal
from gateway.errors import DependencyUnavailable, QuotaExceeded
from gateway.models import Job, QuotaCounter, utcnow
from gateway.policy.base import EngineClosed, PolicyEngineError
from gateway.policy.manager import Active, PolicyManager

log = logging.getLogger(__name__)

LIMITS_RULE = "data.mediagate.quota.limits"
PACKAGE = "mediagate.quota"
UNFINISHED = ("queued", "running")
JOBS_RETRY_AFTER_S = 5  # no window ends for concurrent jobs: how long a client should wait before asking again
PRUNE_EVERY_S = 300.0
PRUNE_GRACE_S = 3600  # counters are kept this long after their window ended (clocks of workers may differ)

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """The limits of one (tenant, key, role); ``None`` is unlimited. The names are the Rego rule's keys."""

    requests_per_minute_per_key: float | None = None
    requests_per_minute_per_tenant: float | None = None
    images_per_day_per_key: float | None = None
    images_per_day_per_tenant: float | None = None
    concurrent_jobs_per_tenant: float | None = None
    gpu_seconds_per_day_per_tenant: float | None = None

    @classmethod
    def parse(cls, raw: Any) -> Limits:
        """The rule's value, checked: an object naming every limit, each a finite number >= 0 or null."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"{LIMITS_RULE} is {type(raw).__name__}, not an object")
        values: dict[str, float | None] = {}
        for f in fields(cls):
            if f.name not in raw:
                raise ValueError(f"{LIMITS_RULE} does not name `{f.name}`")
            value = raw[f.name]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value) or value < 0):
                raise ValueError(f"{LIMITS_RULE}.{f.name} must be a number >= 0 or null, not {value!r}")
            values[f.name] = value
        return cls(**values)


@dataclass(frozen=True)
class Window:
    """A fixed window: the UTC minute or the UTC day (epoch seconds; the epoch's days start at UTC midnight)."""

    name: str
    start: int
    end: int

    @classmethod
    def of(cls, name: str, now: float) -> Window:
        length = {"minute": 60, "day": 86_400}[name]
        start = int(now // length) * length
        return cls(name, start, start + length)

    def retry_after(self, now: float) -> int:
        """Whole seconds until the window ends, at least 1 (RFC 9110 ``Retry-After``)."""
        return max(1, math.ceil(self.end - now))


class Requested(Protocol):
    """What the edge needs of a request to count its images (``gateway.flow.FlowRequest``)."""

    @property
    def n(self) -> int: ...

    @property
    def locales(self) -> Sequence[Any]: ...


def images_of(req: Requested) -> int:
    """The images a request asks for: one banner per locale of a locale batch, else ``n``."""
    return len(req.locales) or req.n


@dataclass(frozen=True)
class Charge:
    """One counter's part of an admission: add ``amount`` unless that takes it past ``ceiling`` (None: always)."""

    limit: str
    subject: str
    window: Window | None  # None: a counter without a window (never pruned)
    amount: float
    ceiling: float | None = None


_COLUMNS = ("limit_name", "subject", "window_start", "used", "ceiling", "expires_at", "updated_at")


@functools.cache
def _upsert(rows: int) -> TextClause:
    """``rows`` counters charged by one statement, the same in SQLite (>= 3.35) and PostgreSQL: built once per row
    count as text, because SQLAlchemy compiles a multi-row INSERT anew on every execution (measured: most of an
    admission's time)."""
    table = QuotaCounter.__table__  # type: ignore[attr-defined]
    values = ", ".join("(" + ", ".join(f":{c}_{i}" for c in _COLUMNS) + ")" for i in range(rows))
    sql = text(
        f"INSERT INTO quota_counters ({', '.join(_COLUMNS)}) VALUES {values} "
        "ON CONFLICT (limit_name, subject, window_start) DO UPDATE SET used = quota_counters.used + excluded.used, "
        "ceiling = excluded.ceiling, updated_at = excluded.updated_at "
        "WHERE excluded.ceiling IS NULL OR quota_counters.used + excluded.used <= excluded.ceiling "
        "RETURNING limit_name, subject"
    )
    return sql.bindparams(*(bindparam(f"{c}_{i}", type_=table.c[c].type) for i in range(rows) for c in _COLUMNS))


def apply_charges(session: Session, charges: Sequence[Charge]) -> set[tuple[str, str]]:
    """Add every charge to its counter (created if new) in one statement, in one fixed order (so concurrent
    transactions lock rows alike); return the ``(limit, subject)`` of those applied. A charge that would pass its
    ceiling changes nothing and is missing from the result: the caller refuses and rolls back. The statement is
    atomic per row in SQLite and PostgreSQL alike, so concurrent admissions can never both take the last slot."""
    if not charges:
        return set()
    now = utcnow()
    params: dict[str, Any] = {}
    for i, c in enumerate(sorted(charges, key=lambda c: (c.limit, c.subject))):
        values = (c.limit, c.subject, c.window.start if c.window else 0, c.amount, c.ceiling,
                  c.window.end if c.window else 0, now)
        params.update({f"{column}_{i}": value for column, value in zip(_COLUMNS, values, strict=True)})
    rows = session.execute(_upsert(len(charges)), params).all()
    return {(str(r[0]), str(r[1])) for r in rows}


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else round(x, 3)


class Quotas:
    """The edge's check-and-charge. ``enabled=False`` (``MEDIAGATE_QUOTAS=false``) admits everything."""

    def __init__(self, *, db: Engine, policy: PolicyManager, enabled: bool = True, cache_size: int = 10_000,
                 clock: Callable[[], float] = time.time) -> None:
        if db.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"quota counters need SQLite or PostgreSQL, not {db.dialect.name}")
        self.db = db
        self.policy = policy
        self.enabled = enabled
        self.cache_size = cache_size
        self.clock = clock
        self._lock = threading.Lock()
        self._digest: str | None = None  # the bundle the cache below was filled from
        self._has_package = True
        self._cache: dict[tuple[str, str, str], Limits] = {}
        self._next_prune = 0.0

    # -- limits ------------------------------------------------------------------------------------------------

    def limits(self, principal: Principal) -> Limits:
        """The principal's limits under the active bundle. A bundle without a ``mediagate.quota`` package sets
        none; an engine error or a value of the wrong shape is no answer, and no work is admitted (503)."""
        active = self.policy.active
        digest = active.bundle.digest
        key = (principal.tenant, principal.key_id, principal.role)
        if digest == self._digest:
            found = self._cache.get(key)
            if found is not None:
                return found
        else:
            with self._lock:
                if digest != self._digest:
                    self._cache = {}
                    self._has_package = PACKAGE in active.bundle.packages().values()
                    self._digest = digest
                    if not self._has_package:
                        log.warning("policy %s has no %s package: no quotas apply", active.bundle.label, PACKAGE)
        limits = self._evaluate(active, principal) if self._has_package else Limits()
        with self._lock:
            if self._digest == digest:
                if len(self._cache) >= self.cache_size:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = limits
        return limits

    def _evaluate(self, active: Active, principal: Principal) -> Limits:
        try:
            try:
                raw = active.engine.evaluate(LIMITS_RULE, principal.as_dict())
            except EngineClosed:  # swapped out mid-call: the successor answers
                raw = self.policy.evaluate(LIMITS_RULE, principal.as_dict())
            return Limits.parse(raw)
        except (PolicyEngineError, ValueError) as exc:
            # Fail closed: limits nobody can read admit nothing.
            raise DependencyUnavailable(f"the quota policy gave no usable limits: {exc}") from exc

    # -- admission ---------------------------------------------------------------------------------------------

    def admit(self, principal: Principal, *, requests: int = 1, images: int = 0, jobs: int = 0) -> None:
        """Check and charge one request in its own transaction; raise ``QuotaExceeded`` (429) and charge nothing
        when any limit has no room. ``images`` > 0 marks generation work, which a spent GPU budget also refuses."""
        if not self.enabled:
            return
        self.run_admitted(principal, lambda _: None, requests=requests, images=images, jobs=jobs)

    def run_admitted(self, principal: Principal, write: Callable[[Session], T], *, requests: int = 1,
                     images: int = 0, jobs: int = 0) -> T:
        """Charge, then ``write(session)`` (e.g. queue the jobs the charge was for), then commit both together."""
        if self.enabled:
            self.limits(principal)  # evaluated (or found in the cache) before the transaction begins
        try:
            with Session(self.db, expire_on_commit=False) as session:
                self.charge(session, principal, requests=requests, images=images, jobs=jobs)
                value = write(session)
                session.commit()
        except SQLAlchemyError as exc:  # fail closed: counters that cannot be charged admit nothing
            log.exception("quota admission failed")
            raise DependencyUnavailable("the quota counters could not be charged; nothing was released") from exc
        self._prune_now_and_then()
        return value

    def charge(self, session: Session, principal: Principal, *, requests: int = 1, images: int = 0,
               jobs: int = 0) -> None:
        """Check and charge in the caller's transaction (a batch charges with its audit entry). On
        ``QuotaExceeded`` the caller must roll back, which undoes whatever this call charged before refusing."""
        if not self.enabled:
            return
        limits = self.limits(principal)
        now = self.clock()
        minute, day = Window.of("minute", now), Window.of("day", now)
        planned = [
            ("requests_per_minute_per_key", principal.key_id, minute, requests),
            ("requests_per_minute_per_tenant", principal.tenant, minute, requests),
            ("images_per_day_per_key", principal.key_id, day, images),
            ("images_per_day_per_tenant", principal.tenant, day, images),
        ]
        charges = [Charge(name, subject, window, amount, getattr(limits, name))
                   for name, subject, window, amount in planned if getattr(limits, name) is not None and amount > 0]
        gpu_limit = limits.gpu_seconds_per_day_per_tenant
        if images > 0 and gpu_limit is not None:  # charged after each generation (gateway.usage); checked here
            used = self._used(session, "gpu_seconds_per_day_per_tenant", principal.tenant, day)
            if used >= gpu_limit:
                raise self._refusal("gpu_seconds_per_day_per_tenant", gpu_limit, used, 0, window=day, now=now)
        for c in charges:
            assert c.ceiling is not None and c.window is not None
            if c.amount > c.ceiling:  # a new counter would be created past its ceiling: refuse before writing
                raise self._refusal(c.limit, c.ceiling, self._used(session, c.limit, c.subject, c.window), c.amount,
                                    window=c.window, now=now)
        applied = apply_charges(session, charges)
        for c in sorted(charges, key=lambda c: (c.limit, c.subject)):
            if (c.limit, c.subject) not in applied:
                assert c.ceiling is not None and c.window is not None
                raise self._refusal(c.limit, c.ceiling, self._used(session, c.limit, c.subject, c.window), c.amount,
                                    window=c.window, now=now)
        job_limit = limits.concurrent_jobs_per_tenant
        if jobs > 0 and job_limit is not None:
            # The tenant's lock row: concurrent admissions of its jobs wait here, so each counts the others' jobs.
            apply_charges(session, [Charge("concurrent_jobs_per_tenant", principal.tenant, None, 0)])
            unfinished = session.execute(select(func.count()).select_from(Job).where(
                col(Job.tenant) == principal.tenant, col(Job.status).in_(UNFINISHED))).scalar_one()
            if unfinished + jobs > job_limit:
                raise self._refusal("concurrent_jobs_per_tenant", job_limit, unfinished, jobs, window=None, now=now)

    @staticmethod
    def _used(session: Session, name: str, subject: str, window: Window) -> float:
        used = session.execute(select(QuotaCounter.used).where(  # type: ignore[call-overload]
            col(QuotaCounter.limit_name) == name, col(QuotaCounter.subject) == subject,
            col(QuotaCounter.window_start) == window.start)).scalar_one_or_none()
        return float(used or 0.0)

    @staticmethod
    def _refusal(name: str, ceiling: float, used: float, requested: float, *, window: Window | None,
                 now: float) -> QuotaExceeded:
        scope = "key" if name.endswith("_per_key") else "tenant"
        what = name.split("_per_")[0].replace("_", " ")
        if window is None:
            retry_after = JOBS_RETRY_AFTER_S
            detail = (f"`{name}`: {_number(ceiling)} unfinished async jobs per tenant; {_number(used)} are queued or "
                      f"running and this request adds {_number(requested)}")
        else:
            retry_after = window.retry_after(now)
            per = "UTC minute" if window.name == "minute" else "UTC day"
            detail = (f"`{name}`: {_number(ceiling)} {what} per {scope} and {per}; {_number(used)} used"
                      + (f", this request needs {_number(requested)}" if requested else "")
                      + f"; the window ends in {retry_after} s")
        return QuotaExceeded(
            detail, headers={"Retry-After": str(retry_after)}, limit=name, limit_value=_number(ceiling),
            used=_number(used), requested=_number(requested), scope=scope,
            window=window.name if window else "concurrent", retry_after=retry_after,
            resets_at=datetime.fromtimestamp(window.end, UTC).isoformat() if window else None,
        )

    # -- housekeeping ------------------------------------------------------------------------------------------

    def prune(self, now: float | None = None) -> int:
        """Delete counters whose window ended more than an hour ago; the number deleted."""
        cutoff = int((self.clock() if now is None else now) - PRUNE_GRACE_S)
        with Session(self.db) as session:
            result = session.execute(delete(QuotaCounter).where(
                col(QuotaCounter.expires_at) > 0, col(QuotaCounter.expires_at) < cutoff))
            session.commit()
        return int(result.rowcount)  # type: ignore[attr-defined]

    def _prune_now_and_then(self) -> None:
        now = self.clock()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_S
        try:
            self.prune(now)
        except Exception:  # noqa: BLE001 - old counters only cost space; the admission already committed
            log.exception("pruning quota counters failed")
