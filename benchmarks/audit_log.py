"""Audit log benchmark: append rate (one transaction per entry vs group commit), verify rate, proof times.

    python benchmarks/audit_log.py --entries 20000                                  # SQLite in a temp directory
    python benchmarks/audit_log.py --entries 40000 --writers async                  # asyncio writers (run_async)
    python benchmarks/audit_log.py --entries 20000 --url postgresql://user@127.0.0.1:5432/db   # an empty database
    python benchmarks/audit_log.py --entries 1000000 --proofs-only                  # proof times at a million entries

Appends carry a payload shaped like a real decision (about 1 KiB of canonical JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlmodel import Session

from audit.chain import Canonical
from audit.group_commit import GroupCommitter
from audit.merkle import verify_consistency, verify_inclusion
from audit.sql_store import SqlAuditStore
from gateway.db import create_schema, make_engine


def payload(i: int) -> dict[str, Any]:
    return {
        "generation_id": f"gen_{i:020d}", "decision": "release",
        "principal": {"tenant": f"tenant{i % 100}", "role": "app", "key_id": "key_0123456789ab"},
        "request": {"kind": "prompt", "prompt": "a red bicycle leaning on a wall at dusk", "n": 1, "seed": i,
                    "width": 512, "height": 512, "model": "demo-tiny"},
        "images": [{"asset_id": f"ast_{i:020d}", "sha256": f"{i:064x}", "watermark_id": f"{i:012x}",
                    "card": {"complete": True, "scores": {"nsfw": {"nsfw": 0.01}, "perceptual": {"quality": 0.7}}}}],
        "pre": {"result": "allow", "revision": "2026-11-25.1+0123456789ab", "id": f"dec_{i:020x}"},
        "release": {"result": "release", "revision": "2026-11-25.1+0123456789ab", "id": f"dec_{i + 1:020x}"},
    }


def append_single(engine: Any, store: SqlAuditStore, start: int, count: int) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + count):
        with Session(engine) as s:
            store.append(s, tenant="bench", kind="bench", payload=payload(i))
            s.commit()
    return count / (time.perf_counter() - t0)


def append_grouped(engine: Any, store: SqlAuditStore, start: int, count: int, threads: int) -> tuple[float, float]:
    sizes: list[int] = []
    committer = GroupCommitter(engine, observe=lambda n, _s: sizes.append(n))
    per = count // threads
    # The application's decisions exist before the audit log sees them: built outside the timed part.
    decisions = [[payload(i) for i in range(start + k * per, start + (k + 1) * per)] for k in range(threads)]

    def writer(k: int) -> None:
        for decision in decisions[k]:
            encoded = Canonical.of(decision)  # timed: in the writer's thread, as the flow does, not the committer's
            committer.run(lambda s, p=encoded: store.append(s, tenant="bench", kind="bench", payload=p))

    workers = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    rate = per * threads / (time.perf_counter() - t0)
    committer.close()
    return rate, statistics.mean(sizes)


def append_grouped_async(engine: Any, store: SqlAuditStore, start: int, count: int, tasks: int
                         ) -> tuple[float, float]:
    """Group commit with asyncio writers (``GroupCommitter.run_async``): ``tasks`` tasks on one event loop."""
    sizes: list[int] = []
    committer = GroupCommitter(engine, observe=lambda n, _s: sizes.append(n))
    per = count // tasks
    decisions = [[payload(i) for i in range(start + k * per, start + (k + 1) * per)] for k in range(tasks)]

    async def writer(k: int) -> None:
        for decision in decisions[k]:
            encoded = Canonical.of(decision)  # timed, in the task, as a writer thread does
            await committer.run_async(lambda s, p=encoded: store.append(s, tenant="bench", kind="bench", payload=p))

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(writer(k) for k in range(tasks)))
        return time.perf_counter() - t0

    elapsed = asyncio.run(main())
    committer.close()
    return per * tasks / elapsed, statistics.mean(sizes)


def _process_writer(url: str, start: int, count: int, threads: int, ready: Any, go: Any, out: Any) -> None:
    """One gateway-like process: its own engine, store and committer, ``threads`` writers."""
    engine = make_engine(url)
    store = SqlAuditStore()
    sizes: list[int] = []
    committer = GroupCommitter(engine, observe=lambda n, _s: sizes.append(n))
    per = count // threads
    decisions = [[payload(i) for i in range(start + k * per, start + (k + 1) * per)] for k in range(threads)]

    def writer(k: int) -> None:
        go.wait()
        for decision in decisions[k]:
            encoded = Canonical.of(decision)
            committer.run(lambda s, p=encoded: store.append(s, tenant="bench", kind="bench", payload=p))

    workers = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    ready.release()
    for w in workers:
        w.join()
    committer.close()
    out.put((per * threads, statistics.mean(sizes)))


def append_processes(url: str, start: int, count: int, threads: int, processes: int) -> tuple[float, float]:
    """Group commit from ``processes`` gateway processes appending to one database (``threads`` writers in all)."""
    ctx = multiprocessing.get_context("spawn")
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    per = count // processes
    procs = [ctx.Process(target=_process_writer, args=(url, start + k * per, per, threads // processes, ready, go, out))
             for k in range(processes)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    t0 = time.perf_counter()
    go.set()
    results = [out.get() for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    return sum(n for n, _ in results) / elapsed, statistics.mean(b for _, b in results)


def proofs(engine: Any, store: SqlAuditStore, samples: int = 200) -> dict[str, float]:
    with Session(engine) as s:
        size = store.size(s)
        t0 = time.perf_counter()
        root = store.root(s, size)
        root_ms = (time.perf_counter() - t0) * 1000
        inclusion, consistency = [], []
        rng = random.Random(7)
        for _ in range(samples):
            seq = rng.randint(1, size)
            leaf = bytes.fromhex(store.list(s, after_seq=seq - 1, limit=1)[0].hash)
            t0 = time.perf_counter()
            path = store.inclusion_proof(s, seq, size)
            inclusion.append(time.perf_counter() - t0)
            verify_inclusion(seq - 1, size, leaf, path, root)
            old = rng.randint(1, size)
            t0 = time.perf_counter()
            cpath = store.consistency_proof(s, old, size)
            consistency.append(time.perf_counter() - t0)
            verify_consistency(old, size, store.root(s, old), root, cpath)
    return {"size": size, "root_ms": root_ms, "inclusion_p50_ms": statistics.median(inclusion) * 1000,
            "consistency_p50_ms": statistics.median(consistency) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="database URL (default: a new SQLite file in a temp directory)")
    parser.add_argument("--entries", type=int, default=20_000, help="entries appended with group commit")
    parser.add_argument("--single", type=int, default=2_000, help="entries appended one transaction each")
    parser.add_argument("--threads", type=int, default=32, help="concurrent writers for group commit")
    parser.add_argument("--writers", choices=["threads", "async"], default="threads",
                        help="writers are threads (GroupCommitter.run) or asyncio tasks on one loop (run_async)")
    parser.add_argument("--processes", type=int, default=1,
                        help="gateway processes appending at once (each with its own committer; threads split)")
    parser.add_argument("--proofs-only", action="store_true", help="append fast, then time proofs and verify")
    args = parser.parse_args()

    url = args.url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='mediagate-audit-bench-')) / 'audit.db'}"
    engine = make_engine(url)
    create_schema(engine)
    store = SqlAuditStore()
    backend = engine.dialect.name
    print(f"backend={backend} entries={args.entries} threads={args.threads}")
    if not args.proofs_only:
        print(f"append, one transaction per entry: {append_single(engine, store, 0, args.single):,.0f} entries/s")
    if args.writers == "async":
        rate, batch = append_grouped_async(engine, store, args.single, args.entries, args.threads)
    elif args.processes > 1:
        rate, batch = append_processes(url, args.single, args.entries, args.threads, args.processes)
    else:
        rate, batch = append_grouped(engine, store, args.single, args.entries, args.threads)
    writers = f"{args.threads} asyncio tasks" if args.writers == "async" else (
        f"{args.threads} threads in {args.processes} process(es)")
    print(f"append, group commit ({writers}): {rate:,.0f} entries/s, mean batch {batch:.1f}")
    t0 = time.perf_counter()
    with Session(engine) as s:
        report = store.verify(s)
    elapsed = time.perf_counter() - t0
    assert report.ok, report
    print(f"verify (chain + stored tree): {report.checked:,} entries in {elapsed:.2f} s = "
          f"{report.checked / elapsed:,.0f} entries/s")
    p = proofs(engine, store)
    print(f"at {p['size']:,} entries: root {p['root_ms']:.2f} ms, inclusion proof p50 {p['inclusion_p50_ms']:.2f} ms, "
          f"consistency proof p50 {p['consistency_p50_ms']:.2f} ms")


if __name__ == "__main__":
    main()
