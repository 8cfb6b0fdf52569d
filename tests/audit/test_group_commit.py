"""Group commit: batches keep the chain whole, a failing writer fails alone, and nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from audit.group_commit import CommitFailed, GroupCommitter
from audit.sql_store import SqlAuditStore
from gateway.db import create_schema, make_engine


def test_concurrent_writers_are_batched_without_breaking_the_chain(make_store: Callable[..., Any]) -> None:
    engine, store, _ = make_store()
    sizes: list[int] = []
    committer = GroupCommitter(engine, observe=lambda n, _s: sizes.append(n))
    ids: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for i in range(40):
            entry = committer.run(lambda s, n=n, i=i: store.append(s, tenant=f"t{n}", kind="test",
                                                                 payload={"n": n, "i": i}))
            with lock:
                ids.append(entry.id)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    committer.close()
    assert len(ids) == len(set(ids)) == 320
    assert sum(sizes) == 320 and max(sizes) > 1  # some commits carried several writers
    with Session(engine) as s:
        report = store.verify(s)
        assert report.ok and report.checked == 320
        assert {e.id for e in store.list(s, limit=1000)} == set(ids)


def test_a_failing_writer_fails_alone(make_store: Callable[..., Any]) -> None:
    engine, store, _ = make_store()
    committer = GroupCommitter(engine, max_wait_ms=50)  # wait so that all three land in one batch
    results: dict[str, Any] = {}

    def run(name: str, fail: bool) -> None:
        def write(s: Session) -> Any:
            entry = store.append(s, tenant="t", kind="test", payload={"name": name})
            if fail:
                raise ValueError("this writer's own problem")
            return entry

        try:
            results[name] = committer.run(write)
        except ValueError as exc:
            results[name] = exc

    threads = [threading.Thread(target=run, args=(n, n == "b")) for n in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    committer.close()
    assert isinstance(results["b"], ValueError)
    with Session(engine) as s:
        names = [e.payload["name"] for e in store.list(s)]
        assert sorted(names) == ["a", "c"] and store.verify(s).ok


def test_a_batch_that_cannot_commit_fails_every_writer(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "locked.db"
    engine = make_engine(f"sqlite:///{path}", busy_timeout_ms=200)
    create_schema(engine)
    store = SqlAuditStore()
    committer = GroupCommitter(engine)
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(CommitFailed, match="did not commit"):
            committer.run(lambda s: store.append(s, tenant="t", kind="test", payload={}))
    finally:
        blocker.rollback()
        blocker.close()
    assert committer.run(lambda s: store.append(s, tenant="t", kind="test", payload={})).seq == 1
    committer.close()
    with pytest.raises(CommitFailed, match="closed"):
        committer.run(lambda s: None)


CRASHER = textwrap.dedent(r"""
    import sys, threading
    from audit.group_commit import GroupCommitter
    from audit.sql_store import SqlAuditStore
    from gateway.db import create_schema, make_engine

    engine = make_engine(sys.argv[1])
    create_schema(engine)
    store, committer, out = SqlAuditStore(), GroupCommitter(engine), threading.Lock()

    def writer(n):
        i = 0
        while True:
            entry = committer.run(lambda s: store.append(s, tenant="t", kind="test", payload={"n": n, "i": i}))
            with out:  # one whole line per acknowledged entry
                sys.stdout.write(entry.id + "\n")
                sys.stdout.flush()
            i += 1

    for n in range(4):
        threading.Thread(target=writer, args=(n,), daemon=True).start()
    threading.Event().wait()
""")


def test_a_crash_loses_nothing_that_was_acknowledged(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, url], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2], env={**os.environ, "PYTHONPATH": "."})
    assert proc.stdout is not None
    acked: list[str] = []
    deadline = time.monotonic() + 60
    while len(acked) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)  # mid-batch, with writers waiting
    proc.wait()
    acked += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]
    assert len(acked) >= 300
    engine = make_engine(url)
    with Session(engine) as s:
        store = SqlAuditStore()
        assert store.verify(s).ok
        stored = {e.id for e in store.list(s, limit=100_000)}
    assert set(acked) <= stored


def _timed_write(store: SqlAuditStore, tag: str) -> Callable[[Session], Any]:
    return lambda s: store.append(s, tenant="t", kind="test", payload={"tag": tag})


def test_writers_of_the_last_batch_are_regrouped_and_a_lone_writer_never_waits(
    make_store: Callable[..., Any],
) -> None:
    engine, store, _ = make_store()
    committer = GroupCommitter(engine, regroup_ms=5000)  # long enough that only the logic decides
    committer.close()  # its thread is gone: the batch former is driven by hand below, on the same queue
    queue_job = committer._queue
    from audit.group_commit import _Job

    first = _Job(_timed_write(store, "first"))
    started = time.monotonic()
    batch, stop = committer._gather(first, returning=1)
    assert [j is first for j in batch] == [True] and not stop
    assert time.monotonic() - started < 2.5  # a lone writer is not held for the regroup window

    later = [_Job(_timed_write(store, f"w{i}")) for i in range(3)]
    threading.Timer(0.05, lambda: [queue_job.put(j) for j in later]).start()
    batch, stop = committer._gather(_Job(_timed_write(store, "lead")), returning=4)
    assert len(batch) == 4 and not stop  # waited for the three that came back after 50 ms


def test_asyncio_writers_share_batches_with_threads_and_keep_the_chain(make_store: Callable[..., Any]) -> None:
    """Tasks of two event loops (in two threads) and plain threads write at once: every write is acknowledged with
    its own entry, batches carry several tasks, and the chain holds every acknowledged entry exactly once."""
    engine, store, _ = make_store()
    sizes: list[int] = []
    committer = GroupCommitter(engine, observe=lambda n, _s: sizes.append(n))
    ids: list[str] = []
    lock = threading.Lock()

    async def task(loop_no: int, n: int) -> None:
        for i in range(15):
            entry = await committer.run_async(lambda s, n=n, i=i: store.append(
                s, tenant=f"loop{loop_no}", kind="test", payload={"n": n, "i": i}))
            with lock:
                ids.append(entry.id)

    async def tasks(loop_no: int) -> None:
        await asyncio.gather(*(task(loop_no, n) for n in range(12)))

    def thread_writer(n: int) -> None:
        for i in range(15):
            entry = committer.run(lambda s, n=n, i=i: store.append(s, tenant="thread", kind="test",
                                                                 payload={"n": n, "i": i}))
            with lock:
                ids.append(entry.id)

    workers = [threading.Thread(target=asyncio.run, args=(tasks(k),)) for k in range(2)]
    workers += [threading.Thread(target=thread_writer, args=(n,)) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    committer.close()
    assert len(ids) == len(set(ids)) == 2 * 12 * 15 + 4 * 15
    assert sum(sizes) == len(ids) and max(sizes) >= 12
    with Session(engine) as s:
        report = store.verify(s)
        assert report.ok and report.checked == len(ids)
        assert {e.id for e in store.list(s, limit=1000)} == set(ids)


def test_an_asyncio_writer_that_raises_fails_alone(make_store: Callable[..., Any]) -> None:
    engine, store, _ = make_store()
    committer = GroupCommitter(engine, max_wait_ms=50)

    def write(name: str, fail: bool) -> Callable[[Session], Any]:
        def run(s: Session) -> Any:
            entry = store.append(s, tenant="t", kind="test", payload={"name": name})
            if fail:
                raise ValueError(f"{name} refused")
            return entry
        return run

    async def main() -> list[Any]:
        return await asyncio.gather(*(committer.run_async(write(name, name == "b")) for name in "abc"),
                                    return_exceptions=True)

    a, b, c = asyncio.run(main())
    committer.close()
    assert isinstance(b, ValueError) and str(b) == "b refused"
    assert a.seq == 1 and c.seq == 2 and c.prev_hash == a.hash
    with Session(engine) as s:
        assert [e.payload["name"] for e in store.list(s)] == ["a", "c"]


def test_asyncio_writers_of_a_batch_that_cannot_commit_all_fail(tmp_path: Path) -> None:
    """The database stays locked by another process's transaction: the batch cannot begin, every task waiting on it
    gets ``CommitFailed`` and nothing is written; once the lock is gone the next write is the log's first entry."""
    import sqlite3

    path = tmp_path / "locked.db"
    engine = make_engine(f"sqlite:///{path}", busy_timeout_ms=200)
    create_schema(engine)
    store = SqlAuditStore()
    committer = GroupCommitter(engine, max_wait_ms=50)
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")

    async def main() -> list[Any]:
        return await asyncio.gather(*(committer.run_async(lambda s, i=i: store.append(
            s, tenant="t", kind="test", payload={"i": i})) for i in range(3)), return_exceptions=True)

    try:
        outcomes = asyncio.run(main())
    finally:
        blocker.rollback()
        blocker.close()
    assert all(isinstance(o, CommitFailed) and "did not commit" in str(o) for o in outcomes)
    assert asyncio.run(committer.run_async(lambda s: store.append(s, tenant="t", kind="test", payload={}))).seq == 1
    committer.close()


def test_run_async_after_close_is_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(engine)
    committer = GroupCommitter(engine)
    committer.close()
    with pytest.raises(CommitFailed, match="closed"):
        asyncio.run(committer.run_async(lambda s: None))


def test_an_asyncio_writer_gives_up_after_the_timeout_but_its_write_still_lands(make_store: Callable[..., Any]
                                                                               ) -> None:
    """The waiter stops waiting (``CommitFailed``), as a thread's ``run`` does; the queued write is not withdrawn."""
    engine, store, _ = make_store()
    committer = GroupCommitter(engine, timeout_s=0.2)

    def slow(s: Session) -> Any:
        time.sleep(0.5)
        return store.append(s, tenant="t", kind="test", payload={"slow": True})

    with pytest.raises(CommitFailed, match="no commit within 0.2 s"):
        asyncio.run(committer.run_async(slow))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the write commits once its 0.5 s are over
        with Session(engine) as s:
            if landed := [e.payload for e in store.list(s)]:
                break
        time.sleep(0.05)
    committer.close()
    assert landed == [{"slow": True}]
