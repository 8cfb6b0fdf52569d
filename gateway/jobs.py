"""Asynchronous generations: durable jobs run by worker threads, with progress events and cancellation.

A job row (``gateway.models.Job``) is written when the request is accepted (202). Workers claim queued jobs one at a
time with a single conditional UPDATE, run the governed flow with a progress sink (events in ``job_events``), and the
flow completes the job in the same transaction as its audit entry. So:

- a job is never lost: it is in the database from the 202 on; one found ``running`` at start-up belonged to a process
  that died, and is queued again (its attempt count says so) until ``max_attempts``;
- a job never completes twice: completion is conditional on the attempt that claimed it, inside the audit
  transaction; an attempt that died before that commit left nothing behind, and the audit entry of the attempt
  that did complete names the job and the attempt;
- cancellation: a queued job is cancelled at once; a running one stops at its next progress report (a diffusion step
  or the start of a flow stage) before anything is audited; once the audit commit has begun it completes.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gateway.auth import Principal
from gateway.errors import DependencyUnavailable, GatewayError, PolicyDenied
from gateway.flow import Flow, FlowRequest, JobLink
from gateway.models import Job, JobEvent, utcnow
from gateway.request_id import bound, current_request_id
from generators.base import progress

log = logging.getLogger(__name__)

TERMINAL = ("completed", "failed", "cancelled")


class JobCancelled(GatewayError):
    status = 409
    slug = "job-cancelled"
    title = "Job cancelled"


class StaleAttempt(RuntimeError):
    """The job is no longer this attempt's to complete (cancelled, or claimed again): its commit must not happen."""


class JobRunner:
    def __init__(self, db: Engine, flow: Flow, *, workers: int = 2, max_attempts: int = 3, poll_s: float = 0.2,
                 on_finished: Callable[[str], None] | None = None) -> None:
        self.db = db
        self.flow = flow
        self.metrics = flow.metrics
        self.workers = workers
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self.on_finished = on_finished
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- accepting, reading, cancelling ----------------------------------------------------------------------------

    def submit(self, principal: Principal, req: FlowRequest) -> Job:
        with Session(self.db) as session:
            job = self.add(session, principal, req)
            session.commit()
            session.refresh(job)
        self.wake()
        return job

    def add(self, session: Session, principal: Principal, req: FlowRequest) -> Job:
        """Queue a job in the caller's transaction (a batch queues its rows with its own audit entry); call
        :meth:`wake` after the commit."""
        job = Job(id="job_" + secrets.token_hex(10), tenant=principal.tenant, key_id=principal.key_id,
                  role=principal.role, request_json=json.dumps(req.as_dict()), max_attempts=self.max_attempts,
                  request_id=current_request_id())
        session.add(job)
        session.add(JobEvent(job_id=job.id, type="queued", data_json=json.dumps({"model": req.model})))
        return job

    def wake(self) -> None:
        self._wake.set()

    def get(self, job_id: str, tenant: str) -> Job | None:
        with Session(self.db) as session:
            return session.exec(select(Job).where(Job.id == job_id, Job.tenant == tenant)).first()

    def events(self, job_id: str, after: int = 0, limit: int = 200) -> list[JobEvent]:
        with Session(self.db) as session:
            return list(session.exec(
                select(JobEvent).where(JobEvent.job_id == job_id, col(JobEvent.id) > after)
                .order_by(col(JobEvent.id)).limit(limit)
            ).all())

    def cancel(self, job_id: str, tenant: str) -> Job | None:
        """Cancel a queued job now; ask a running one to stop. Terminal jobs are left as they are."""
        with Session(self.db) as session:
            cancelled = session.execute(text(
                "UPDATE jobs SET status = 'cancelled', finished_at = :now WHERE id = :id AND tenant = :tenant "
                "AND status = 'queued'"), {"id": job_id, "tenant": tenant, "now": utcnow()})
            if cancelled.rowcount:  # type: ignore[attr-defined]
                session.add(JobEvent(job_id=job_id, type="cancelled", data_json='{"while": "queued"}'))
                self.metrics.jobs_finished.labels("cancelled").inc()
            else:
                session.execute(text("UPDATE jobs SET cancel_requested = :yes WHERE id = :id AND tenant = :tenant "
                                     "AND status = 'running'"), {"id": job_id, "tenant": tenant, "yes": True})
            session.commit()
        return self.get(job_id, tenant)

    # -- running ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        self._stop.clear()
        for i in range(self.workers):
            thread = threading.Thread(target=self._loop, name=f"mediagate-job-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self._threads.clear()

    def recover(self) -> int:
        """Jobs left ``running`` by a process that died: queued again, or failed after ``max_attempts``."""
        with Session(self.db) as session:
            stuck = session.exec(select(Job).where(Job.status == "running")).all()
            for job in stuck:
                if job.attempts >= job.max_attempts:
                    job.status, job.finished_at = "failed", utcnow()
                    job.error_json = json.dumps({"detail": f"interrupted {job.attempts} times; not retried"})
                    session.add(JobEvent(job_id=job.id, type="failed", data_json=job.error_json))
                    self.metrics.jobs_finished.labels("failed").inc()
                else:
                    job.status, job.cancel_requested = "queued", False
                    self.metrics.job_retries.labels("interrupted").inc()
                    session.add(JobEvent(job_id=job.id, type="requeued", data_json=json.dumps(
                        {"reason": "the process running it stopped", "attempts": job.attempts})))
                session.add(job)
            session.commit()
        if stuck:
            log.warning("requeued or failed %d jobs interrupted by a restart", len(stuck))
        return len(stuck)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_once()
            except Exception:  # noqa: BLE001 - a worker must survive anything one job does
                log.exception("job worker error")
                ran = False
            if not ran:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def claim(self) -> Job | None:
        """Take the oldest queued job: one conditional UPDATE, so two workers (or processes) never take the same."""
        with Session(self.db) as session:
            row = session.execute(text(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = :now "
                "WHERE id = (SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, id LIMIT 1) "
                "AND status = 'queued' RETURNING id, attempts"), {"now": utcnow()}).first()
            if row is None:
                session.rollback()
                return None
            session.add(JobEvent(job_id=row[0], type="started", data_json=json.dumps({"attempt": row[1]})))
            session.commit()
            self.metrics.job_attempts.inc()
            return session.get(Job, row[0])

    def run_once(self) -> bool:
        """Claim and run one job in this thread; False if none was queued."""
        job = self.claim()
        if job is None:
            return False
        self._run(job)
        if self.on_finished is not None:
            self.on_finished(job.id)
        return True

    def _run(self, job: Job) -> None:
        principal = Principal(job.tenant, job.role, job.key_id)
        req = FlowRequest(**json.loads(job.request_json))
        link = JobLink(job.id, job.attempts, self._completer(job.id, job.attempts))
        token = progress.set(self._sink(job.id))
        with bound(job.request_id, job.tenant):  # its log lines and audit entry name the request that queued it
            try:
                self.flow.run(principal, req, job=link)
                self.metrics.jobs_finished.labels("completed").inc()
            except PolicyDenied:  # audited, and the job completed with decision "deny" in the same transaction
                self.metrics.jobs_finished.labels("completed").inc()
            except JobCancelled:
                self._finish(job.id, job.attempts, "cancelled", {"while": "running"})
            except DependencyUnavailable as exc:  # a dependency failed: nothing was audited; another attempt may do
                if job.attempts < job.max_attempts:
                    self._requeue(job.id, job.attempts, exc.detail)
                else:
                    self._finish(job.id, job.attempts, "failed", exc.to_problem())
            except GatewayError as exc:  # the request itself cannot be rendered (e.g. text that does not fit)
                self._finish(job.id, job.attempts, "failed", exc.to_problem())
            except Exception as exc:  # noqa: BLE001 - an unexpected error fails the job, never the worker
                log.exception("job %s failed", job.id)
                self._finish(job.id, job.attempts, "failed", {"detail": f"{type(exc).__name__}: {exc}"})
            finally:
                progress.reset(token)

    def _sink(self, job_id: str) -> Callable[[str, dict[str, Any]], None]:
        def sink(kind: str, data: dict[str, Any]) -> None:
            with Session(self.db) as session:
                job = session.get(Job, job_id)
                if job is not None and job.cancel_requested:
                    raise JobCancelled(f"job {job_id} was cancelled")
                session.add(JobEvent(job_id=job_id, type=kind, data_json=json.dumps(data)))
                session.commit()
        return sink

    def _completer(self, job_id: str, attempt: int) -> Callable[[Session, str, str], None]:
        def complete(session: Session, generation_id: str, decision: str) -> None:
            done = session.execute(text(
                "UPDATE jobs SET status = 'completed', generation_id = :gen, decision = :decision, finished_at = :now "
                "WHERE id = :id AND status = 'running' AND attempts = :attempt AND cancel_requested = :no"),
                {"gen": generation_id, "decision": decision, "now": utcnow(), "id": job_id, "attempt": attempt,
                 "no": False})
            if not done.rowcount:  # type: ignore[attr-defined]
                raise JobCancelled(f"job {job_id} attempt {attempt} no longer runs (cancelled or claimed again)")
            session.add(JobEvent(job_id=job_id, type="completed", data_json=json.dumps(
                {"generation_id": generation_id, "decision": decision})))
        return complete

    def _finish(self, job_id: str, attempt: int, status: str, detail: dict[str, Any]) -> None:
        with Session(self.db) as session:
            finished = session.execute(text(
                "UPDATE jobs SET status = :status, error_json = :error, finished_at = :now "
                "WHERE id = :id AND status = 'running' AND attempts = :attempt"),
                {"status": status, "error": json.dumps(detail), "now": utcnow(), "id": job_id, "attempt": attempt})
            session.add(JobEvent(job_id=job_id, type=status, data_json=json.dumps(detail)))
            session.commit()
        if finished.rowcount:  # type: ignore[attr-defined]
            self.metrics.jobs_finished.labels(status).inc()

    def _requeue(self, job_id: str, attempt: int, reason: str) -> None:
        with Session(self.db) as session:
            requeued = session.execute(text("UPDATE jobs SET status = 'queued' WHERE id = :id AND status = 'running' "
                                            "AND attempts = :attempt"), {"id": job_id, "attempt": attempt})
            session.add(JobEvent(job_id=job_id, type="requeued", data_json=json.dumps(
                {"reason": reason, "attempts": attempt})))
            session.commit()
        if requeued.rowcount:  # type: ignore[attr-defined]
            self.metrics.job_retries.labels("dependency").inc()
        self._wake.set()
