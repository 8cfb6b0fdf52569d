"""Policy engine benchmark: decisions/s and p50/p99 latency of ``mediagate.pre`` and ``mediagate.release``.

The repo bundle with realistic data layered on top: 100 tenants (each with its own overrides), 1,000 banned terms
per tenant, the shipped concept catalogue. Inputs are the shape the flow builds (features included), rotating over
tenants and over allowed and denied prompts. Engines measured:

- ``embedded``: ``EmbeddedRegoEngine.evaluate`` as the gateway calls it (hand-over to an owner thread included);
- ``regorus-direct``: one regorus engine on the calling thread, the floor of the above;
- ``opa-inprocess``: OPA's Go engine through ``opa-golib-python-bindings`` when installed (the test oracle);
- ``opa-server``: ``OpaServerEngine`` in push mode against ``opa run -s`` on loopback, when ``opa`` is on PATH.

    python benchmarks/policy.py --decisions 3000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

from gateway.policy.bundle import Bundle, bundle_from_files, load_bundle
from gateway.policy.embedded import EmbeddedRegoEngine, compile_bundle
from gateway.settings import REPO_POLICIES

PRE, RELEASE = "data.mediagate.pre.decision", "data.mediagate.release.decision"


def realistic_bundle(tenants: int, terms: int) -> Bundle:
    files = dict(load_bundle(REPO_POLICIES).files)
    config = json.loads(files["mediagate/config/data.json"])
    banned = [f"bannedterm{i:04d}" for i in range(terms - len(config["defaults"]["banned_terms"]))]
    config["defaults"]["banned_terms"] += banned
    for t in range(tenants):
        config["tenants"][f"tenant{t:03d}"] = {
            "max_n": 1 + t % 4, "banned_terms": config["defaults"]["banned_terms"] + [f"tenant{t}secret"],
            "release": {**config["defaults"]["release"], "nsfw_review": 0.3 + (t % 5) / 20},
        }
    files["mediagate/config/data.json"] = json.dumps(config).encode()
    return bundle_from_files(files, origin="benchmark")


def inputs(bundle: Bundle, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    concepts = bundle.data["mediagate"]["config"]["concepts"]
    pre, release = [], []
    prompts = ["a red bicycle leaning on a wall", "a lighthouse at dawn over a calm sea", "bannedterm0500 on a table",
               "a portrait of Priya Raman", "a scene full of gore"]
    for i in range(count):
        text = prompts[i % len(prompts)]
        principal = {"tenant": f"tenant{i % 100:03d}", "role": "app", "key_id": "k"}
        request = {"kind": "prompt", "prompt": text, "negative_prompt": None, "model": "demo-tiny", "n": 1,
                   "width": 512, "height": 512, "template": None, "fields": {}, "locale": None, "seed": i,
                   "text": text, "end_user": None}
        features = {"normalized": text.lower(), "folded": text.lower(), "changed": False, "mixed_script": False,
                    "concepts": {c: 0.1 + (i % 7) / 10 for c in concepts}}
        pre.append({"principal": principal, "request": request, "features": features,
                    "context": {"time": "2026-11-25T12:00:00Z", "usage": {}}})
        card = {"complete": True, "failed": {}, "scores": {"nsfw": {"nsfw": (i % 10) / 10},
                                                            "perceptual": {"quality": 0.5}}}
        release.append({"principal": principal, "request": request,
                        "obligations": {"watermark": True, "max_n": 4, "force_review": False, "review_reasons": []},
                        "images": [{"index": 0, "card": card}]})
    return pre, release


def measure(name: str, evaluate: Callable[[str, dict[str, Any]], Any], docs: list[dict[str, Any]], path: str
            ) -> dict[str, Any]:
    for doc in docs[:50]:
        evaluate(path, doc)  # warm-up
    latencies = []
    start = time.perf_counter()
    for doc in docs:
        t0 = time.perf_counter()
        evaluate(path, doc)
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    return {"engine": name, "entrypoint": path.removeprefix("data."), "decisions_per_s": len(docs) / wall,
            "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000}


def regorus_direct(bundle: Bundle) -> Callable[[str, dict[str, Any]], Any]:
    engine = compile_bundle(bundle)

    def evaluate(path: str, doc: dict[str, Any]) -> Any:
        engine.set_input(doc)
        return engine.eval_rule(path)

    return evaluate


def opa_inprocess(bundle: Bundle) -> Callable[[str, dict[str, Any]], Any] | None:
    try:
        from opa_bindings import OpaEngine  # test-only dependency; measured here for comparison
    except ImportError:
        return None
    engine = OpaEngine()
    for rel, source in bundle.policies:
        engine.add_policy(rel, source)
    engine.add_data(bundle.data)
    return lambda path, doc: engine.eval_document(path.removeprefix("data."), doc)


def opa_server(bundle: Bundle) -> tuple[Callable[[str, dict[str, Any]], Any], Callable[[], None]] | None:
    binary = shutil.which("opa")
    if binary is None:
        return None
    from gateway.policy.opa_server import OpaServerEngine

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "run", "-s", "--addr", f"127.0.0.1:{port}", "--log-level", "error"])
    deadline = time.monotonic() + 20
    engine = None
    while engine is None:
        try:
            engine = OpaServerEngine(bundle, url=f"http://127.0.0.1:{port}", mode="push", timeout_s=5)
        except Exception:  # noqa: BLE001 - the server is still starting
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.2)

    def stop() -> None:
        engine.close()
        proc.terminate()
        proc.wait(timeout=10)

    return engine.evaluate, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=3000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--terms", type=int, default=1000)
    args = parser.parse_args()

    bundle = realistic_bundle(args.tenants, args.terms)
    pre, release = inputs(bundle, args.decisions)
    print(f"bundle {bundle.label}: {args.tenants} tenants, {args.terms} banned terms each, "
          f"{len(bundle.files['mediagate/config/data.json']) // 1024} KiB of data; cpus={os.cpu_count()}")
    rows = []
    embedded = EmbeddedRegoEngine(bundle)
    engines: list[tuple[str, Callable[[str, dict[str, Any]], Any]]] = [
        ("embedded", embedded.evaluate), ("regorus-direct", regorus_direct(bundle)),
    ]
    oracle = opa_inprocess(bundle)
    if oracle is not None:
        engines.append(("opa-inprocess", oracle))
    else:
        print("opa-inprocess: skipped (opa-golib-python-bindings not installed)")
    server = opa_server(bundle)
    if server is not None:
        engines.append(("opa-server", server[0]))
    else:
        print("opa-server: skipped (no `opa` binary on PATH)")
    for name, evaluate in engines:
        rows.append(measure(name, evaluate, pre, PRE))
        rows.append(measure(name, evaluate, release, RELEASE))
    embedded.close()
    if server is not None:
        server[1]()
    print("| engine | entrypoint | decisions/s | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['engine']} | {r['entrypoint']} | {r['decisions_per_s']:,.0f} | {r['p50_ms']:.3f} | "
              f"{r['p99_ms']:.3f} |")


if __name__ == "__main__":
    main()
