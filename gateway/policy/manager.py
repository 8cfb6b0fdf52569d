"""The active policy bundle and how it changes: gated activation, history, rollback, and decisions on it.

A candidate bundle (the directory changed, ``PUT /v1/policies``, a rollback) becomes active only when it parses,
defines the entrypoints the gateway evaluates and passes every one of its own tests; otherwise it is refused and
the active bundle stays. Both outcomes are audited in the same transaction as their ``policy_events`` row, which
keeps the exact bundle so that any activated revision can be rolled back to.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from audit.base import AuditEntry, AuditStore
from audit.group_commit import GroupCommitter
from gateway.auth import Principal
from gateway.commit import commit
from gateway.errors import DependencyUnavailable, GatewayError, NotFound
from gateway.metrics import Metrics
from gateway.models import PolicyEvent
from gateway.policy.base import (
    ENTRYPOINTS,
    EngineClosed,
    PolicyDecision,
    PolicyEngine,
    PolicyEngineError,
    parse_decision,
)
from gateway.policy.bundle import Bundle, BundleError, load_bundle, load_bundle_archive
from gateway.policy.gate import GateResult, gate
from gateway.policy.shadow import Shadow

log = logging.getLogger(__name__)

CATALOGUE = "data.mediagate.pre.concept_catalogue"
SYSTEM = "_system"  # tenant of audit entries for changes no API key made (directory edits, start-up)


class PolicyRefused(GatewayError):
    """A candidate bundle did not pass the gate; ``problems`` and ``failures`` say why. Nothing changed."""

    status = 422
    slug = "policy-refused"
    title = "Policy bundle refused"


@dataclass(frozen=True)
class Active:
    bundle: Bundle
    engine: PolicyEngine
    catalogue: Mapping[str, tuple[str, ...]]  # banned-concept examples the prompt features are computed for
    event_id: str
    source: str


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class PolicyManager:
    """Owns the active engine (and the shadow). Thread safe: activations are serialised, reads are lock-free."""

    def __init__(
        self, *, db: Engine, committer: GroupCommitter, audit: AuditStore, metrics: Metrics,
        engine_factory: Callable[[Bundle], PolicyEngine], shadow_engine_factory: Callable[[Bundle], PolicyEngine],
        max_bundle_bytes: int,
    ) -> None:
        self.db = db
        self.committer = committer
        self.audit = audit
        self.metrics = metrics
        self.engine_factory = engine_factory
        self.shadow_engine_factory = shadow_engine_factory
        self.max_bundle_bytes = max_bundle_bytes
        self.shadow = Shadow(db=db, metrics=metrics)
        self._active: Active | None = None
        self._lock = threading.RLock()

    # -- reading -----------------------------------------------------------------------------------------------

    @property
    def active(self) -> Active:
        if self._active is None:
            raise DependencyUnavailable("no policy bundle is active")
        return self._active

    @property
    def revision(self) -> str:
        return self.active.bundle.label

    def evaluate(self, path: str, input_doc: Mapping[str, Any]) -> Any:
        """Evaluate a rule of the active bundle. A bundle swapped out mid-call is retried once on its successor."""
        active = self.active
        try:
            return active.engine.evaluate(path, input_doc)
        except EngineClosed:
            return self.active.engine.evaluate(path, input_doc)

    def decide(self, stage: str, input_doc: Mapping[str, Any], *, ref: str, tenant: str) -> PolicyDecision:
        """The active bundle's decision at ``stage`` (``pre``/``release``), with a fresh decision id.

        Fails closed: an engine error, an undefined entrypoint or a value of the wrong shape is no decision, and
        the caller gets ``DependencyUnavailable`` (503), never a default. The shadow bundle, if any, sees the
        same input afterwards and cannot change the outcome.
        """
        active = self.active
        try:
            try:
                raw = active.engine.evaluate(ENTRYPOINTS[stage], input_doc)
            except EngineClosed:
                active = self.active
                raw = active.engine.evaluate(ENTRYPOINTS[stage], input_doc)
            result, reasons, obligations = parse_decision(stage, raw)
        except (PolicyEngineError, KeyError, TypeError, ValueError) as exc:
            self.metrics.policy_decisions.labels(stage, "error", "engine_error").inc()
            raise DependencyUnavailable(f"the {stage} policy gave no usable decision: {exc}") from exc
        for code in [r.code for r in reasons] or [""]:
            self.metrics.policy_decisions.labels(stage, result, code).inc()
        decision = PolicyDecision(
            stage, result, reasons, obligations, active.bundle.label, active.engine.name, new_id("dec"),
        )
        self.shadow.compare(stage, input_doc, decision, ref=ref, tenant=tenant)
        return decision

    def check(self) -> None:
        self.active.engine.check()

    # -- changing ----------------------------------------------------------------------------------------------

    def _record(
        self, *, event: str, bundle: Bundle | None, source: str, principal: Principal | None, detail: dict[str, Any],
        archive: bool,
    ) -> tuple[PolicyEvent, AuditEntry]:
        tenant = principal.tenant if principal else SYSTEM
        payload = {
            "event": event, "source": source, "revision": bundle.label if bundle else None,
            "digest": bundle.digest if bundle else None, "actor": principal.as_dict() if principal else "system",
            **detail,
        }

        def write(session: Session) -> tuple[PolicyEvent, AuditEntry]:
            entry = self.audit.append(session, tenant=tenant, kind=f"policy.{event}", payload=payload)
            row = PolicyEvent(
                id=new_id("pev"), event=event, label=bundle.label if bundle else None,
                digest=bundle.digest if bundle else None, manifest_revision=bundle.revision if bundle else None,
                source=source, tenant=tenant, actor=principal.key_id if principal else "system",
                detail_json=json.dumps(detail), archive=bundle.archive() if bundle and archive else None,
                audit_entry_id=entry.id,
            )
            session.add(row)
            session.flush()
            return row.model_copy(), entry

        # An unaudited activation must not happen: no commit, 503, nothing changed.
        return commit(self.committer, write, what=f"the policy {event} did not happen")

    def propose(
        self, load: Callable[[], Bundle], *, source: str, principal: Principal | None = None, dry_run: bool = False,
    ) -> tuple[Active | None, GateResult, AuditEntry | None]:
        """Gate a candidate and activate it if it passes. Returns (new active or None, gate result, audit entry).

        A bundle identical to the active one is a no-op (no event). ``dry_run`` gates without activating or
        recording anything.
        """
        with self._lock:
            result = gate(load)
            if dry_run:
                return None, result, None
            current = self._active
            if result.ok and current is not None and result.bundle is not None \
                    and result.bundle.digest == current.bundle.digest:
                return current, result, None
            if not result.ok:
                return None, result, self._refuse(result, source, principal)
            assert result.bundle is not None
            return self._activate(result, source=source, principal=principal)

    def _activate(
        self, result: GateResult, *, source: str, principal: Principal | None
    ) -> tuple[Active | None, GateResult, AuditEntry | None]:
        bundle = result.bundle
        assert bundle is not None
        previous = self._active
        try:
            engine = self.engine_factory(bundle)
        except (PolicyEngineError, BundleError) as exc:
            self._reinstate(previous)
            failed = GateResult(bundle, (f"the engine could not load the bundle: {exc}",), result.tests)
            return None, failed, self._refuse(failed, source, principal)
        try:
            catalogue = _catalogue(engine)
        except PolicyEngineError as exc:
            engine.close()
            self._reinstate(previous)
            failed = GateResult(bundle, (f"{CATALOGUE} failed: {exc}",), result.tests)
            return None, failed, self._refuse(failed, source, principal)
        detail = {**result.detail(), "previous": previous.bundle.label if previous else None}
        try:
            row, entry = self._record(event="activated", bundle=bundle, source=source, principal=principal,
                                      detail=detail, archive=True)
        except GatewayError:
            engine.close()
            self._reinstate(previous)
            raise
        self._active = Active(bundle, engine, catalogue, row.id, source)
        self.metrics.policy_activations.labels(source, "activated").inc()
        log.info("policy %s active (%s); was %s", bundle.label, source, previous.bundle.label if previous else None)
        if previous is not None:
            previous.engine.close()  # calls still on it are retried on the new engine (see evaluate)
        return self._active, result, entry

    @staticmethod
    def _reinstate(previous: Active | None) -> None:
        """An engine that shares state with its predecessor (an OPA server in push mode: creating the new engine
        already uploaded the candidate) must put the active bundle back when the activation does not happen."""
        push = getattr(previous.engine, "push", None) if previous else None
        if push is not None:
            push()

    def _refuse(self, result: GateResult, source: str, principal: Principal | None) -> AuditEntry:
        self.metrics.policy_activations.labels(source, "refused").inc()
        log.warning("policy bundle refused (%s): %s", source, result.detail())
        _, entry = self._record(event="refused", bundle=result.bundle, source=source, principal=principal,
                                detail=result.detail(), archive=False)
        return entry

    def activate_upload(self, blob: bytes, principal: Principal, *, dry_run: bool = False) -> dict[str, Any]:
        """``PUT /v1/policies``: gate an uploaded bundle; raise ``PolicyRefused`` (422) when it fails."""
        active, result, entry = self.propose(
            lambda: load_bundle_archive(blob, max_bytes=self.max_bundle_bytes), source="upload",
            principal=principal, dry_run=dry_run,
        )
        if not result.ok:
            raise PolicyRefused(
                "the bundle was refused; the active bundle is unchanged",
                audit_entry=entry.id if entry else None, revision=result.bundle.label if result.bundle else None,
                **result.detail(),
            )
        assert result.bundle is not None
        return {
            "revision": result.bundle.label, "status": "tested" if dry_run else "active",
            "tests": result.tests.summary() if result.tests else None, "audit_entry": entry.id if entry else None,
        }

    def rollback(self, revision: str, principal: Principal) -> dict[str, Any]:
        """Re-activate an earlier activated revision (label or digest prefix), through the same gate."""
        row = self._find_activation(revision)
        archive = row.archive
        assert archive is not None
        active, result, entry = self.propose(
            lambda: load_bundle_archive(archive, max_bytes=self.max_bundle_bytes, origin=f"rollback:{row.label}"),
            source="rollback", principal=principal,
        )
        if not result.ok:
            raise PolicyRefused(f"revision {row.label} no longer passes the gate", audit_entry=entry.id if entry
                                else None, **result.detail())
        return {"revision": self.revision, "status": "active", "audit_entry": entry.id if entry else None}

    def _find_activation(self, revision: str) -> PolicyEvent:
        if not revision or len(revision) > 200:
            raise NotFound("name a revision label or a digest prefix of at least 8 hex digits")
        with Session(self.db) as session:
            rows = session.exec(
                select(PolicyEvent).where(col(PolicyEvent.archive).is_not(None), PolicyEvent.event == "activated")
                .order_by(col(PolicyEvent.created_at).desc())
            ).all()
        for row in rows:
            assert row.digest is not None
            if row.label == revision or (len(revision) >= 8 and row.digest.startswith(revision)):
                return row
        raise NotFound(f"no activated policy revision {revision!r}; see GET /v1/policies for the history")

    # -- start-up ----------------------------------------------------------------------------------------------

    def start(self, directory: Any) -> None:
        """Activate the bundle to serve with, choosing between the directory and the last upload or rollback.

        The last activation is restored when it was an upload or rollback and the directory still holds what it
        held when it was last activated from; a directory edited while the gateway was down wins. A candidate that
        fails the gate falls back to the last activated bundle; with none, start-up fails with the reasons.
        """
        with Session(self.db) as session:
            events = session.exec(
                select(PolicyEvent).where(PolicyEvent.event == "activated")
                .order_by(col(PolicyEvent.created_at).desc())
            ).all()
        last = events[0] if events else None
        last_dir = next((e for e in events if e.source == "directory"), None)
        try:
            on_disk: Bundle | None = load_bundle(directory)
        except BundleError:
            on_disk = None
        restore = (
            last is not None and last.source != "directory" and last.archive is not None and last_dir is not None
            and on_disk is not None and on_disk.digest == last_dir.digest
        )
        if restore and last is not None and last.archive is not None:
            blob = last.archive
            self.propose(lambda: load_bundle_archive(blob, origin=f"restore:{last.label}"), source="restore")
        else:
            self.propose(lambda: load_bundle(directory), source="directory")
        if self._active is None and last is not None and last.archive is not None:
            blob = last.archive
            log.error("the policy directory %s was refused; restoring %s", directory, last.label)
            self.propose(lambda: load_bundle_archive(blob, origin=f"restore:{last.label}"), source="restore")
        if self._active is None:
            result = gate(lambda: load_bundle(directory))
            raise BundleError(f"no policy bundle can be activated from {directory}: {json.dumps(result.detail())}")
        self.restore_shadow()

    # -- shadow ------------------------------------------------------------------------------------------------

    def start_shadow(self, blob: bytes, principal: Principal) -> dict[str, Any]:
        """Run an uploaded candidate beside the active bundle. It must pass the same gate as an activation."""
        with self._lock:
            result = gate(lambda: load_bundle_archive(blob, max_bytes=self.max_bundle_bytes, origin="shadow"))
            if not result.ok:
                entry = self._refuse(result, "shadow", principal)
                raise PolicyRefused("the shadow bundle was refused; nothing changed", audit_entry=entry.id,
                                    **result.detail())
            assert result.bundle is not None
            engine = self.shadow_engine_factory(result.bundle)
            try:
                _, entry = self._record(event="shadow_started", bundle=result.bundle, source="upload",
                                        principal=principal, detail=result.detail(), archive=True)
            except GatewayError:
                engine.close()
                raise
            self.shadow.set(result.bundle, engine)
            return {"shadow_revision": result.bundle.label, "active_revision": self.revision,
                    "audit_entry": entry.id}

    def stop_shadow(self, principal: Principal) -> dict[str, Any]:
        with self._lock:
            bundle = self.shadow.bundle
            if bundle is None:
                raise NotFound("no shadow bundle is running")
            _, entry = self._record(event="shadow_stopped", bundle=bundle, source="upload", principal=principal,
                                    detail={}, archive=False)
            self.shadow.clear()
            return {"shadow_revision": bundle.label, "status": "stopped", "audit_entry": entry.id}

    def restore_shadow(self) -> None:
        """Bring back the shadow that was running when the process stopped, without a new audit event."""
        with Session(self.db) as session:
            last = session.exec(
                select(PolicyEvent).where(col(PolicyEvent.event).in_(["shadow_started", "shadow_stopped"]))
                .order_by(col(PolicyEvent.created_at).desc()).limit(1)
            ).first()
        if last is None or last.event != "shadow_started" or last.archive is None:
            return
        try:
            bundle = load_bundle_archive(last.archive, origin=f"shadow:{last.label}")
            self.shadow.set(bundle, self.shadow_engine_factory(bundle))
            log.info("shadow bundle %s restored", bundle.label)
        except (BundleError, PolicyEngineError):
            log.exception("the shadow bundle %s could not be restored; shadow mode is off", last.label)

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        with Session(self.db) as session:
            rows = session.exec(
                select(PolicyEvent).order_by(col(PolicyEvent.created_at).desc()).limit(limit)
            ).all()
        return [event_view(r) for r in rows]

    def close(self) -> None:
        self.shadow.close()
        if self._active is not None:
            self._active.engine.close()


def event_view(row: PolicyEvent) -> dict[str, Any]:
    return {
        "id": row.id, "event": row.event, "revision": row.label, "digest": row.digest, "source": row.source,
        "tenant": row.tenant, "actor": row.actor, "detail": json.loads(row.detail_json),
        "rollback_possible": row.archive is not None and row.event == "activated",
        "audit_entry": row.audit_entry_id, "created_at": row.created_at.isoformat(),
    }


def _catalogue(engine: PolicyEngine) -> dict[str, tuple[str, ...]]:
    """The bundle's banned-concept examples. A bundle without a catalogue bans no concept (an empty one)."""
    try:
        raw = engine.evaluate(CATALOGUE, {})
    except PolicyEngineError as exc:
        if "undefined" in str(exc) or "not a valid rule path" in str(exc):
            return {}
        raise
    if not isinstance(raw, Mapping) or not all(isinstance(v, list) for v in raw.values()):
        raise PolicyEngineError(f"{CATALOGUE} must map concept ids to lists of example phrases")
    return {str(k): tuple(str(x) for x in v) for k, v in raw.items()}

