"""Whole-flow benchmark: requests/s, p50/p95 latency and the share of time per stage, over real HTTP.

Starts the gateway (uvicorn, loopback only) on a throw-away MEDIAGATE_HOME, creates an app key and sends a bounded
number of requests from a few client threads. Stage times come from the gateway's own
``mediagate_stage_duration_seconds`` histogram; "edge" is what the HTTP request took beyond the stages
(auth, parsing, validation, response encoding, framework).

    python benchmarks/flow.py --path template --requests 200 --concurrency 4
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BODIES = {
    "template": {"template": "spring-sale", "fields": {"headline": "Spring sale", "subline": "Up to 30% off",
                                                       "cta": "Shop now"}},
    "prompt": {"prompt": "a red bicycle leaning on a wall", "size": "128x128"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stage_sums(metrics_text: str) -> dict[str, float]:
    pattern = re.compile(r'^mediagate_stage_duration_seconds_sum\{stage="(\w+)"\} ([0-9.e+-]+)$', re.MULTILINE)
    return {m.group(1): float(m.group(2)) for m in pattern.finditer(metrics_text)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", choices=sorted(BODIES), default="template")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--unique", action="store_true",
                        help="make every request's text different, so no prompt-feature cache hit helps")
    args = parser.parse_args()

    from gateway.app import create_app
    from gateway.auth import create_key
    from gateway.runtime import build_runtime
    from gateway.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="mediagate-bench-"))
    runtime = build_runtime(Settings(home=home))
    _, key = create_key(runtime.db, tenant="bench", role="app")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime=runtime), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    body = BODIES[args.path]

    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        for _ in range(args.warmup):
            client.post("/v1/generations", json=body).raise_for_status()
        before = stage_sums(client.get("/metrics").text)

    local = threading.local()

    def one(i: int) -> float:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, headers=headers, timeout=120)
        sent = body
        if args.unique and "prompt" in body:
            sent = {**body, "prompt": f"{body['prompt']} number {i}"}
        elif args.unique:
            sent = {**body, "fields": {**body["fields"], "subline": f"Up to {i % 90 + 5}% off, code {i}"}}
        start = time.perf_counter()
        resp = local.client.post("/v1/generations", json=sent)
        elapsed = time.perf_counter() - start
        if resp.status_code != 200 or resp.json()["decision"] != "release":
            raise SystemExit(f"unexpected response {resp.status_code}: {resp.text[:300]}")
        return elapsed

    start = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        latencies = sorted(pool.map(one, range(args.requests)))
    wall = time.perf_counter() - start
    with httpx.Client(base_url=base) as client:
        after = stage_sums(client.get("/metrics").text)
    server.should_exit = True

    stages = {name: after[name] - before.get(name, 0.0) for name in after}
    total = sum(latencies)
    stages["edge"] = max(total - sum(stages.values()), 0.0)
    q = statistics.quantiles(latencies, n=100)
    print(f"path={args.path} requests={args.requests} concurrency={args.concurrency} unique={args.unique} "
          f"cpus={os.cpu_count()}")
    print(f"throughput: {args.requests / wall:.1f} req/s")
    print(f"latency: p50 {q[49] * 1000:.1f} ms, p95 {q[94] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    print("| stage | total s | share |")
    print("|---|---:|---:|")
    for name, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {seconds:.2f} | {100 * seconds / total:.1f}% |")


if __name__ == "__main__":
    main()
