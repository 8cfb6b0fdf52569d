"""Group commit: many writers' transactions committed as one, without giving up per-writer atomicity.

Every write that appends to the audit log goes through ``GroupCommitter.run(write)``: ``write(session)`` adds its
rows (the audit entry and what it vouches for) and returns a value. One committer thread takes every write that is
waiting, runs them in one transaction and commits once. A write that raises is rolled back alone and gets its
exception: the batch is then run again with a SAVEPOINT around each write (paid for only when needed). Only after
the commit does any caller get its result, so a crash between batches loses nothing that was acknowledged (SQLite
runs with ``synchronous=FULL``; PostgreSQL fsyncs on commit).
Appends in a batch are sequential, so the chain order is the commit order.

Writers are threads (``run``) or asyncio tasks (``await run_async``). A thread blocks until its batch commits, and
waking it costs an OS thread switch and a turn of the interpreter lock per write: with a hundred writers that, not
the database, bounds the rate (about 18k appends/s on a 2-core VM). A task's write is resolved by one callback per
event loop per batch, so a batch of a hundred costs one wake-up (about 30k/s on the same machine).

On SQLite the batch opens with ``BEGIN IMMEDIATE``: the write lock is taken before the first read, so no other
connection can commit between the batch reading the last entry and appending after it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

log = logging.getLogger(__name__)

T = TypeVar("T")


class CommitFailed(RuntimeError):
    """The batch's transaction did not commit: nothing in it was written."""


class _Job(Generic[T]):
    """One writer's request. The writer blocks on a bare lock that the committer releases: the cheapest hand-over
    Python has (a ``concurrent.futures.Future`` costs a condition variable and its bookkeeping per write)."""

    __slots__ = ("write", "_done", "value", "error")

    def __init__(self, write: Callable[[Session], T]) -> None:
        self.write = write
        self._done = threading.Lock()
        self._done.acquire()
        self.value: T | None = None
        self.error: BaseException | None = None

    def finish(self, value: T | None, error: BaseException | None) -> None:
        self.value, self.error = value, error
        self._done.release()

    def wait(self, timeout_s: float) -> bool:
        return self._done.acquire(timeout=timeout_s)


class _AsyncJob(Generic[T]):
    """An asyncio task's write: resolved on its event loop, a whole batch's at a time (``_wake``). A timer, not
    ``asyncio.wait_for`` (which costs a task and several futures per write), gives up after the timeout."""

    __slots__ = ("write", "future", "loop", "timer")

    def __init__(self, write: Callable[[Session], T], loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.write = write
        self.loop = loop
        self.future: asyncio.Future[T] = loop.create_future()
        self.timer = loop.call_later(timeout_s, _expire, self.future, timeout_s)


def _expire(future: asyncio.Future[Any], timeout_s: float) -> None:
    if not future.done():
        future.set_exception(CommitFailed(f"no commit within {timeout_s} s"))


def _resolve(outcomes: list[tuple[_AsyncJob[Any], Any, BaseException | None]]) -> None:
    """On the writers' event loop: hand each task its value or exception (one call per batch)."""
    for job, value, error in outcomes:
        job.timer.cancel()
        if job.future.done():  # timed out, or its task was cancelled: nobody to tell
            continue
        if error is None:
            job.future.set_result(value)
        else:
            job.future.set_exception(error)


def _wake(outcomes: list[tuple[Any, Any, BaseException | None]]) -> None:
    """Finish every writer of a batch: threads one by one, asyncio tasks with one callback per event loop."""
    loops: dict[asyncio.AbstractEventLoop, list[tuple[_AsyncJob[Any], Any, BaseException | None]]] = {}
    for job, value, error in outcomes:
        if isinstance(job, _AsyncJob):
            loops.setdefault(job.loop, []).append((job, value, error))
        else:
            job.finish(value, error)
    for loop, jobs in loops.items():
        try:
            loop.call_soon_threadsafe(_resolve, jobs)
        except RuntimeError:  # the loop was closed meanwhile: its tasks are gone, nobody waits for an answer
            log.warning("an event loop closed before %d audited writes of it were acknowledged", len(jobs))


_AnyJob = _Job[Any] | _AsyncJob[Any]


class GroupCommitter:
    def __init__(
        self, engine: Engine, *, max_batch: int = 256, max_wait_ms: float = 0.0, regroup_ms: float = 2.0,
        timeout_s: float = 60.0, observe: Callable[[int, float], None] | None = None,
    ) -> None:
        """``max_wait_ms`` > 0 waits that long for more writers after the first; 0 takes only those already
        queued (batches then grow by themselves under load, while the previous batch commits). ``regroup_ms``
        waits, after a batch of several writers, until as many are back or that time has passed (a lone writer
        never waits): under load the writers just released return within about a millisecond, and one batch of
        them is cheaper than several (measured: 15.8k -> 18k entries/s, 128 writers on SQLite). 0 turns it off."""
        self.engine = engine
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.regroup_s = regroup_ms / 1000
        self._poll_s = 0.0002
        self.timeout_s = timeout_s
        self.observe = observe  # (batch size, commit seconds), e.g. for metrics
        self._queue: queue.SimpleQueue[_AnyJob | None] = queue.SimpleQueue()
        self._closed = False
        self._lifecycle = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="audit-group-commit", daemon=True)
        self._thread.start()

    def run(self, write: Callable[[Session], T]) -> T:
        """Run ``write`` in the next batch; return its value once the batch has committed."""
        job: _Job[T] = _Job(write)
        with self._lifecycle:
            if self._closed:
                raise CommitFailed("the group committer is closed")
            self._queue.put(job)
        if not job.wait(self.timeout_s):
            raise CommitFailed(f"no commit within {self.timeout_s} s")
        if job.error is not None:
            raise job.error
        return job.value  # type: ignore[return-value]  # set with no error: the writer's own value

    async def run_async(self, write: Callable[[Session], T]) -> T:
        """``run`` for asyncio callers: the task awaits its batch's commit without holding a thread.

        Cancelling the awaiting task does not withdraw the write: once queued it commits (or fails) with its batch.
        """
        job: _AsyncJob[T] = _AsyncJob(write, asyncio.get_running_loop(), self.timeout_s)
        with self._lifecycle:
            if self._closed:
                job.timer.cancel()
                raise CommitFailed("the group committer is closed")
            self._queue.put(job)
        return await job.future

    def _loop(self) -> None:
        returning = 0  # the size of the last batch: its writers are likely to come back together
        while (first := self._queue.get()) is not None:
            batch, stop = self._gather(first, returning)
            self._commit(batch)
            returning = len(batch)
            if stop:
                break

    def _gather(self, first: _AnyJob, returning: int) -> tuple[list[_AnyJob], bool]:
        """The batch that starts with ``first``; True if the committer was closed meanwhile.

        Takes what is queued; waits up to ``max_wait_ms`` for more; and, while fewer writers are back than the last
        batch had, up to ``regroup_ms`` for them, polling rather than blocking on the queue (which would wake this
        thread once per arriving writer, each time taking the interpreter from the writers still on their way).
        """
        batch: list[_AnyJob] = [first]
        now = time.monotonic()
        deadline = now + self.max_wait_s
        regroup = now + self.regroup_s if returning > 1 else now
        while len(batch) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                now = time.monotonic()
                if len(batch) < returning and now < regroup:
                    time.sleep(min(self._poll_s, regroup - now))
                    continue
                if now >= deadline:
                    break
                try:
                    job = self._queue.get(timeout=deadline - now)
                except queue.Empty:
                    break
            if job is None:
                return batch, True
            batch.append(job)
        return batch, False

    def _commit(self, batch: list[_AnyJob]) -> None:
        """Optimistically run the batch without savepoints (each costs two statements); if any writer raises,
        roll everything back and run the batch again with one savepoint per writer, so that writer fails alone.
        Writers must therefore be safe to run twice (nothing they did in the first run was committed)."""
        start = time.perf_counter()
        outcomes: list[tuple[_AnyJob, Any, BaseException | None]] | None = None
        try:
            outcomes = self._transaction(batch, isolate=False)
            if outcomes is None:
                outcomes = self._transaction(batch, isolate=True)
        except Exception as exc:  # noqa: BLE001 - nothing committed: every writer in the batch fails
            log.exception("audit batch of %d writes did not commit", len(batch))
            failed = CommitFailed(f"the transaction did not commit: {type(exc).__name__}: {exc}")
            failed.__cause__ = exc
            _wake([(job, None, failed) for job in batch])
            return
        assert outcomes is not None
        if self.observe is not None:
            self.observe(len(batch), time.perf_counter() - start)
        _wake(outcomes)

    def _transaction(self, batch: list[_AnyJob], *, isolate: bool
                     ) -> list[tuple[_AnyJob, Any, BaseException | None]] | None:
        """One transaction over the batch. Without ``isolate``, a raising writer aborts it: returns None."""
        outcomes: list[tuple[_AnyJob, Any, BaseException | None]] = []
        with Session(self.engine) as session:
            if self.engine.dialect.name == "sqlite":
                session.execute(text("BEGIN IMMEDIATE"))
            for job in batch:
                if not isolate:
                    try:
                        outcomes.append((job, job.write(session), None))
                    except Exception:  # noqa: BLE001 - retried below with savepoints, where it fails alone
                        session.rollback()
                        return None
                    continue
                try:
                    with session.begin_nested():
                        outcomes.append((job, job.write(session), None))
                except Exception as exc:  # noqa: BLE001 - this writer alone fails; handed back to it
                    outcomes.append((job, None, exc))
            session.commit()
        return outcomes

    def close(self) -> None:
        """Commit what is queued, then stop. Idempotent."""
        with self._lifecycle:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout=self.timeout_s)
