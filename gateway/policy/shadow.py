"""Shadow mode: a candidate bundle decides beside the active one on live traffic, without affecting anything.

Every live decision is re-evaluated on the shadow bundle with the same input. When the outcome or the set of
rule codes differs, a ``shadow_disagreements`` row records both sides and the request's ids, and a metric counts
it; a trust team reads ``GET /v1/policies/shadow`` to see what a rule change would do before activating it. The
shadow never raises into the request: its failures are recorded as the outcome ``error``.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gateway.metrics import Metrics
from gateway.models import ShadowDisagreement, utcnow
from gateway.policy.base import ENTRYPOINTS, PolicyDecision, PolicyEngine, parse_decision
from gateway.policy.bundle import Bundle

log = logging.getLogger(__name__)


@dataclass
class _Running:
    bundle: Bundle
    engine: PolicyEngine
    since: datetime
    evaluated: Counter[str]
    disagreed: Counter[str]


class Shadow:
    def __init__(self, *, db: Engine, metrics: Metrics) -> None:
        self.db = db
        self.metrics = metrics
        self._running: _Running | None = None
        self._lock = threading.Lock()  # guards the counters

    @property
    def bundle(self) -> Bundle | None:
        running = self._running
        return running.bundle if running else None

    def set(self, bundle: Bundle, engine: PolicyEngine) -> None:
        previous, self._running = self._running, _Running(bundle, engine, utcnow(), Counter(), Counter())
        if previous is not None:
            previous.engine.close()

    def clear(self) -> Bundle | None:
        previous, self._running = self._running, None
        if previous is None:
            return None
        previous.engine.close()
        return previous.bundle

    def compare(
        self, stage: str, input_doc: Mapping[str, Any], active: PolicyDecision, *, ref: str, tenant: str
    ) -> None:
        running = self._running
        if running is None:
            return
        try:
            result, reasons, _ = parse_decision(stage, running.engine.evaluate(ENTRYPOINTS[stage], input_doc))
            codes = sorted({r.code for r in reasons})
        except Exception as exc:  # noqa: BLE001 - the shadow must never affect a live request; recorded below
            log.warning("shadow %s failed on %s: %s", running.bundle.label, ref, exc)
            result, codes = "error", [f"error: {type(exc).__name__}: {exc}"[:300]]
        agree = result == active.result and codes == sorted(set(active.codes))
        with self._lock:
            running.evaluated[stage] += 1
            if not agree:
                running.disagreed[stage] += 1
        self.metrics.shadow_decisions.labels(stage, "agree" if agree else "disagree").inc()
        if agree:
            return
        row = ShadowDisagreement(
            id="shd_" + secrets.token_hex(10), shadow_label=running.bundle.label, active_label=active.revision,
            stage=stage, tenant=tenant, generation_id=ref, decision_id=active.id, active_outcome=active.result,
            shadow_outcome=result, active_codes_json=json.dumps(sorted(set(active.codes))),
            shadow_codes_json=json.dumps(codes),
        )
        try:
            with Session(self.db) as session:
                session.add(row)
                session.commit()
        except Exception:  # noqa: BLE001 - advisory data: losing a row must not fail a live request
            log.exception("shadow disagreement on %s could not be stored", ref)

    def report(self, limit: int = 100) -> dict[str, Any] | None:
        running = self._running
        if running is None:
            return None
        label = running.bundle.label
        with Session(self.db) as session:
            rows = session.exec(
                select(ShadowDisagreement).where(ShadowDisagreement.shadow_label == label)
                .order_by(col(ShadowDisagreement.created_at).desc()).limit(limit)
            ).all()
            by_transition = session.exec(
                select(ShadowDisagreement.stage, ShadowDisagreement.active_outcome, ShadowDisagreement.shadow_outcome,
                       func.count())
                .where(ShadowDisagreement.shadow_label == label)
                .group_by(ShadowDisagreement.stage, ShadowDisagreement.active_outcome,
                          ShadowDisagreement.shadow_outcome)
            ).all()
        with self._lock:
            evaluated, disagreed = dict(running.evaluated), dict(running.disagreed)
        return {
            "shadow_revision": label,
            "since": running.since.isoformat(),
            "evaluated_since_loaded": evaluated,
            "disagreed_since_loaded": disagreed,
            "transitions": [
                {"stage": s, "active": a, "shadow": sh, "count": n} for s, a, sh, n in by_transition
            ],
            "disagreements": [
                {
                    "id": r.id, "stage": r.stage, "tenant": r.tenant, "generation_id": r.generation_id,
                    "decision_id": r.decision_id, "active_revision": r.active_label,
                    "active": {"outcome": r.active_outcome, "codes": json.loads(r.active_codes_json)},
                    "shadow": {"outcome": r.shadow_outcome, "codes": json.loads(r.shadow_codes_json)},
                    "at": r.created_at.isoformat(),
                }
                for r in rows
            ],
        }

    def close(self) -> None:
        self.clear()
