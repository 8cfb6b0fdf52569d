"""The prompt cache through the app: a hit skips the model, never the policies or the audit entry."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import generate_latest
from sqlmodel import Session, select

from gateway.metrics import Metrics
from gateway.models import RenderCache
from gateway.policy.bundle import load_bundle
from gateway.runtime import build_registry
from gateway.settings import Settings

BODY = {"prompt": "a lighthouse at dawn", "seed": 4242, "size": "128x128"}


def generator_record(gw: Any, entry_id: str) -> dict[str, Any]:
    rt = gw.runtime
    with Session(rt.db) as s:
        entry = rt.audit.get(s, entry_id)
    assert entry is not None
    return dict(entry.payload)


def test_an_identical_request_reuses_the_render_but_passes_both_policies_and_is_audited(gateway: Any) -> None:
    app = gateway.key()
    first = gateway.client.post("/v1/generations", json=BODY, headers=app).json()
    second = gateway.client.post("/v1/generations", json=BODY, headers=app).json()
    one, two = generator_record(gateway, first["audit_entry"]), generator_record(gateway, second["audit_entry"])
    assert one["generator"]["cache"] == "miss" and two["generator"]["cache"] == "hit"
    assert one["generator"]["cache_key"] == two["generator"]["cache_key"]
    assert one["generator"]["revision"] == two["generator"]["revision"]
    assert one["pre"]["id"] != two["pre"]["id"] and one["release"]["id"] != two["release"]["id"]  # both ran again
    assert first["audit_entry"] != second["audit_entry"]
    assert one["images"][0]["watermark_id"] != two["images"][0]["watermark_id"]
    assert one["images"][0]["seed"] == two["images"][0]["seed"] == 4242
    other_seed = gateway.client.post("/v1/generations", json={**BODY, "seed": 4243}, headers=app).json()
    assert generator_record(gateway, other_seed["audit_entry"])["generator"]["cache"] == "miss"
    other_tenant = gateway.client.post("/v1/generations", json=BODY, headers=gateway.key("acme")).json()
    assert generator_record(gateway, other_tenant["audit_entry"])["generator"]["cache"] == "miss"


def test_a_banned_prompt_is_denied_even_when_its_render_would_be_cached(gateway: Any, make_policy_dir: Any,
                                                                         make_gateway: Any) -> None:
    """The cache sits after the pre-policy: a term banned after the first render is denied the second time."""
    policies = make_policy_dir(tenants={"studio": {"banned_terms": []}})
    gw = make_gateway(policy_dir=policies)
    studio = gw.key("studio")
    body = {**BODY, "prompt": "a lighthouse drawn in gore red"}
    assert gw.client.post("/v1/generations", json=body, headers=studio).status_code == 200
    stricter = make_policy_dir(tenants={"studio": {"banned_terms": ["gore"]}}, name="stricter")
    active, result, _ = gw.runtime.policy.propose(lambda: load_bundle(stricter), source="directory")
    assert active is not None, result
    denied = gw.client.post("/v1/generations", json=body, headers=studio)
    assert denied.status_code == 403 and "prompt.banned_term" in denied.json()["codes"]


def test_cache_off_and_expiry(make_gateway: Any) -> None:
    off = make_gateway(prompt_cache=False)
    app = off.key()
    for _ in range(2):
        resp = off.client.post("/v1/generations", json=BODY, headers=app).json()
        assert generator_record(off, resp["audit_entry"])["generator"]["cache"] == "off"
    short = make_gateway(prompt_cache_ttl_s=0.05)
    app = short.key()
    short.client.post("/v1/generations", json=BODY, headers=app)
    time.sleep(0.1)
    again = short.client.post("/v1/generations", json=BODY, headers=app).json()
    assert generator_record(short, again["audit_entry"])["generator"]["cache"] == "miss"


def test_retention_drops_a_tenants_cached_renders_with_its_assets(gateway: Any) -> None:
    """acme keeps assets 90 days (data.json); demo keeps them forever, and so its renders."""
    for tenant in ("acme", "demo"):
        resp = gateway.client.post("/v1/generations", json=BODY, headers=gateway.key(tenant))
        assert resp.status_code == 200, resp.text

    def cached(tenant: str) -> int:
        with Session(gateway.runtime.db) as s:
            return len(s.exec(select(RenderCache).where(RenderCache.tenant == tenant)).all())

    assert (cached("acme"), cached("demo")) == (1, 1)
    gateway.runtime.retention.run_once(now=datetime.now(UTC) + timedelta(days=30))
    assert (cached("acme"), cached("demo")) == (1, 1)
    gateway.runtime.retention.run_once(now=datetime.now(UTC) + timedelta(days=91))
    assert (cached("acme"), cached("demo")) == (0, 1)


def test_concurrent_requests_are_rendered_together_and_audited_one_by_one(make_gateway: Any, models_dir: Any,
                                                                         tmp_path: Any) -> None:
    metrics = Metrics()  # the registry reports its batches here (the gateway below has its own request metrics)
    registry = build_registry(Settings(home=tmp_path / "reg", models_dir=models_dir, batch_max_wait_ms=400), metrics)
    gw = make_gateway(registry=registry, prompt_cache=False)
    app = gw.key()
    results: list[Any] = [None] * 4

    def post(k: int) -> None:
        results[k] = gw.client.post("/v1/generations", json={**BODY, "seed": 100 + k}, headers=app)

    threads = [threading.Thread(target=post, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    registry.close()
    assert [r.status_code for r in results] == [200] * 4
    entries = {r.json()["audit_entry"] for r in results}
    assert len(entries) == 4
    seeds = sorted(generator_record(gw, e)["images"][0]["seed"] for e in entries)
    assert seeds == [100, 101, 102, 103]
    text = generate_latest(metrics.registry).decode()
    assert 'mediagate_generation_batch_requests_sum{model="demo-tiny"} 4.0' in text
    assert 'mediagate_generation_batch_requests_count{model="demo-tiny"} 1.0' in text  # one pipeline call
