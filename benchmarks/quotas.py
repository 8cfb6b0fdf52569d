"""Quota-check overhead: p50/p95 request latency with quotas on and off, 200 concurrent clients on loopback.

Starts the gateway (uvicorn, loopback only) on a throw-away MEDIAGATE_HOME whose bundle gives the benchmark tenant
finite (never reached) limits, so that every admission charges every counter: requests per minute per key and per
tenant, images per day per key and per tenant, and reads the GPU-seconds budget. The same server runs both settings,
alternating phases (off, on, off, on) so that drift hits both alike; only ``runtime.quotas.enabled`` changes.

Two workloads:
- ``edge``: a benchmark-only route that authenticates and runs the quota check, nothing else: the overhead alone.
- ``template``: ``POST /v1/generations`` with a template banner, the governed flow's cheapest path.

    python benchmarks/quotas.py --clients 200 --edge-requests 2000 --template-requests 400
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gateway.deps import PrincipalDep, RuntimeDep  # noqa: E402 - after the offline switch

TEMPLATE = {"template": "spring-sale", "fields": {"headline": "Spring sale", "subline": "Up to 30% off",
                                                  "cta": "Shop now"}}
HIGH = 10**9  # finite, so that every counter is charged, and never reached


def edge(principal: PrincipalDep, rt: RuntimeDep) -> dict[str, str]:
    """Authentication and the quota check of a one-image generation request, and nothing else."""
    rt.quotas.admit(principal, images=1)
    return {"tenant": principal.tenant}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def policy_dir(home: Path) -> Path:
    """The repo bundle with finite limits for the benchmark tenant."""
    from gateway.settings import REPO_POLICIES

    root = home / "policies"
    shutil.copytree(REPO_POLICIES, root)
    path = root / "mediagate/quota/data.json"
    data = json.loads(path.read_text())
    data["config"]["tenants"]["bench"] = {
        "requests_per_minute_per_key": HIGH, "requests_per_minute_per_tenant": HIGH, "images_per_day_per_key": HIGH,
        "images_per_day_per_tenant": HIGH, "concurrent_jobs_per_tenant": HIGH, "gpu_seconds_per_day_per_tenant": HIGH,
    }
    path.write_text(json.dumps(data))
    return root


async def phase(base: str, keys: list[str], path: str, body: dict[str, Any] | None, clients: int,
                requests: int) -> tuple[list[float], float]:
    """``requests`` requests from ``clients`` concurrent clients (one connection each); latencies and wall time."""
    per_client = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    async def client(i: int) -> None:
        headers = {"Authorization": f"Bearer {keys[i % len(keys)]}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=300, limits=limits) as http:
            for _ in range(per_client[i]):
                start = time.perf_counter()
                resp = await http.post(path, json=body)
                latencies.append(time.perf_counter() - start)
                if resp.status_code != 200:
                    raise SystemExit(f"unexpected {resp.status_code} on {path}: {resp.text[:300]}")

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--keys", type=int, default=10, help="API keys of the one tenant the clients share")
    parser.add_argument("--edge-requests", type=int, default=2000, help="per phase")
    parser.add_argument("--template-requests", type=int, default=200, help="per phase (0: skip)")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs of the edge workload")
    parser.add_argument("--template-rounds", type=int, default=1, help="off/on pairs of the template workload")
    parser.add_argument("--scorers", nargs="*", default=["perceptual"],
                        help="scorers of the template workload (default: the cheapest; every default scorer makes a "
                             "banner cost about half a CPU-second here, which would hide what is measured)")
    args = parser.parse_args()

    from gateway.app import create_app
    from gateway.auth import Principal, create_key
    from gateway.runtime import build_runtime
    from gateway.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="mediagate-bench-"))
    runtime = build_runtime(Settings(home=home, policy_dir=policy_dir(home), policy_watch=False,
                                     scorers=args.scorers))
    keys = [create_key(runtime.db, tenant="bench", role="app")[1] for _ in range(args.keys)]
    app = create_app(runtime=runtime)

    app.add_api_route("/bench/edge", edge, methods=["POST"])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    limits = runtime.quotas.limits(Principal("bench", "app", "key_x"))
    assert limits.images_per_day_per_tenant == HIGH, limits

    workloads = [("edge", "/bench/edge", None, args.edge_requests, args.rounds)]
    if args.template_requests:
        workloads.append(("template", "/v1/generations", TEMPLATE, args.template_requests, args.template_rounds))
    results: dict[tuple[str, bool], list[float]] = {}
    walls: dict[tuple[str, bool], float] = {}
    for name, path, body, requests, rounds in workloads:
        asyncio.run(phase(base, keys, path, body, min(args.clients, len(keys) * 2), len(keys) * 4))  # warm-up
        for _ in range(rounds):
            for enabled in (False, True):
                runtime.quotas.enabled = enabled
                latencies, wall = asyncio.run(phase(base, keys, path, body, args.clients, requests))
                results.setdefault((name, enabled), []).extend(latencies)
                walls[(name, enabled)] = walls.get((name, enabled), 0.0) + wall
    server.should_exit = True

    print(f"clients={args.clients} keys={args.keys} rounds={args.rounds}/{args.template_rounds} "
          f"scorers={args.scorers} cpus={os.cpu_count()} database=sqlite (WAL, synchronous=FULL)")
    print("| workload | quotas | requests | req/s | p50 ms | p95 ms |")
    print("|---|---|---:|---:|---:|---:|")
    summary: dict[tuple[str, bool], tuple[float, float]] = {}
    for (name, enabled), latencies in results.items():
        q = statistics.quantiles(latencies, n=100)
        summary[(name, enabled)] = (q[49] * 1000, q[94] * 1000)
        print(f"| {name} | {'on' if enabled else 'off'} | {len(latencies)} | "
              f"{len(latencies) / walls[(name, enabled)]:.0f} | {q[49] * 1000:.1f} | {q[94] * 1000:.1f} |")
    for name, *_ in workloads:
        (p50_off, p95_off), (p50_on, p95_on) = summary[(name, False)], summary[(name, True)]
        print(f"{name}: quota checks add {p50_on - p50_off:+.1f} ms at p50, {p95_on - p95_off:+.1f} ms at p95")


if __name__ == "__main__":
    main()
