"""Quotas and rate limits (``gateway.quotas``): limits from the bundle's ``data.mediagate.quota``, counters in the
database, 429 with ``Retry-After`` and a problem naming the limit, and a refusal that changes nothing."""

from __future__ import annotations

import io
import json
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlmodel import Session, col, func, select

from audit.sql_store import AuditRow
from gateway.auth import Principal
from gateway.errors import QuotaExceeded
from gateway.models import Generation, Job, QuotaCounter, UsageRecord
from gateway.policy.bundle import load_bundle
from gateway.quotas import Limits, Quotas, Window
from generators.registry import ModelEntry, ModelRegistry

PROBLEM = "application/problem+json"
TEMPLATE = {"template": "spring-sale", "fields": {"headline": "Spring sale", "subline": "Up to 30% off",
                                                  "cta": "Shop now"}}
PROMPT = {"prompt": "a red bicycle leaning on a wall", "size": "128x128", "seed": 3}
# limits the shipped defaults set, lifted where a test must see one limit alone
UNLIMITED_REST = {"requests_per_minute_per_key": None, "requests_per_minute_per_tenant": None,
                  "images_per_day_per_tenant": None}
FEED = (
    "sku,locale,template_id,headline,cta\n"
    "SKU-1,en-GB,product-square,Autumn boots,Shop now\n"
    "SKU-2,de-DE,product-square,Herbststiefel,Jetzt kaufen\n"
    "SKU-3,fr-FR,product-square,Bottes,Acheter\n"
)


def set_limits(root: Path, *, tenants: dict[str, Any] | None = None, keys: dict[str, Any] | None = None) -> None:
    """Edit the bundle's quota data as a trust team would (``policies/mediagate/quota/data.json``)."""
    path = root / "mediagate/quota/data.json"
    data = json.loads(path.read_text())
    data["config"]["tenants"].update(tenants or {})
    data["config"]["keys"].update(keys or {})
    path.write_text(json.dumps(data, indent=2))


@pytest.fixture
def limited(make_policy_dir: Callable[..., Path]) -> Callable[..., Path]:
    """Factory: a bundle directory whose quota data gives ``tenants`` (and ``keys``) these limits."""
    def make(name: str = "policies", **tenants: dict[str, Any]) -> Path:
        return make_policy_dir(name=name, edit=lambda root: set_limits(root, tenants=tenants))
    return make


@pytest.fixture
def make(make_gateway: Callable[..., Any]) -> Callable[..., Any]:
    """``make_gateway`` with the quota clock pinned to the test's start, so that no window turns over mid-test
    (every gateway a test makes shares the instant, as workers share the real clock)."""
    now = time.time()

    def build(**overrides: Any) -> Any:
        gw = make_gateway(**overrides)
        gw.runtime.quotas.clock = lambda: now
        return gw
    return build


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Settings for one database that several gateways ("workers") share: a SQLite file or a PostgreSQL database
    with the gateway's own role."""
    if request.param == "sqlite":
        return {"database_url": f"sqlite:///{tmp_path / 'shared.db'}"}
    postgres = request.getfixturevalue("postgres")
    owner_url, app_url = postgres.new_database(f"q_{secrets.token_hex(6)}")
    return {"database_url": app_url, "database_admin_url": owner_url}


def counts(gw: Any, tenant: str) -> dict[str, int]:
    """What a request could have created or charged for ``tenant``."""
    with Session(gw.runtime.db) as s:
        return {
            "generations": int(s.exec(select(func.count()).select_from(Generation)
                                      .where(Generation.tenant == tenant)).one()),
            "audit": int(s.exec(select(func.count()).select_from(AuditRow)).one()),
            "jobs": int(s.exec(select(func.count()).select_from(Job).where(Job.tenant == tenant)).one()),
            "usage": int(s.exec(select(func.count()).select_from(UsageRecord)
                                .where(UsageRecord.tenant == tenant)).one()),
        }


def counters(gw: Any) -> dict[tuple[str, str], float]:
    with Session(gw.runtime.db) as s:
        return {(c.limit_name, c.subject): c.used for c in s.exec(select(QuotaCounter)).all()}


def key_id(headers: dict[str, str]) -> str:
    return "key_" + headers["Authorization"].removeprefix("Bearer mg_").split("_")[0]


def assert_refused(resp: Any, limit: str, *, limit_value: float, used: float, window: str) -> dict[str, Any]:
    assert resp.status_code == 429, resp.text
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["type"] == "https://mediagate.dev/problems/quota-exceeded" and body["title"] == "Quota exceeded"
    assert (body["limit"], body["limit_value"], body["used"], body["window"]) == (limit, limit_value, used, window)
    assert limit in body["detail"]
    retry_after = int(resp.headers["retry-after"])
    longest = {"minute": 60, "day": 86_400, "concurrent": 60}[window]
    assert 1 <= retry_after <= longest and body["retry_after"] == retry_after
    return body


# -- requests per minute -----------------------------------------------------------------------------------------


def test_requests_per_minute_per_key_refuses_and_the_refusal_changes_nothing(make: Any, limited: Any) -> None:
    gw = make(policy_dir=limited(q1={"requests_per_minute_per_key": 2}))
    first, second = gw.key("q1"), gw.key("q1")
    for _ in range(2):
        assert gw.client.post("/v1/generations", json=TEMPLATE, headers=first).status_code == 200
    before, charged = counts(gw, "q1"), counters(gw)
    body = assert_refused(gw.client.post("/v1/generations", json=TEMPLATE, headers=first),
                          "requests_per_minute_per_key", limit_value=2, used=2, window="minute")
    assert body["scope"] == "key" and body["requested"] == 1
    assert counts(gw, "q1") == before and counters(gw) == charged  # no generation, audit entry, usage or charge
    # the limit is per key: another key of the tenant still has room
    assert gw.client.post("/v1/generations", json=TEMPLATE, headers=second).status_code == 200


def test_a_refusal_undoes_the_charges_made_before_it(make: Any, limited: Any) -> None:
    """The per-key counter is charged before the per-tenant one; the tenant's refusal must roll the key's back."""
    gw = make(policy_dir=limited(q1={"requests_per_minute_per_key": 5, "requests_per_minute_per_tenant": 3}))
    a, b = gw.key("q1"), gw.key("q1")
    for headers in (a, a, b):
        assert gw.client.post("/v1/generations", json=TEMPLATE, headers=headers).status_code == 200
    assert_refused(gw.client.post("/v1/generations", json=TEMPLATE, headers=b),
                   "requests_per_minute_per_tenant", limit_value=3, used=3, window="minute")
    charged = counters(gw)
    assert charged[("requests_per_minute_per_key", key_id(b))] == 1
    assert charged[("requests_per_minute_per_tenant", "q1")] == 3


def test_bad_input_is_not_charged(make: Any, limited: Any) -> None:
    gw = make(policy_dir=limited(q1={"requests_per_minute_per_key": 1}))
    app = gw.key("q1")
    assert gw.client.post("/v1/generations", json={"template": "no-such-template"}, headers=app).status_code == 422
    assert gw.client.post("/v1/generations", json=TEMPLATE, headers=app).status_code == 200


# -- images per day, GPU-seconds per day -----------------------------------------------------------------------


def test_images_per_day_count_images_not_requests(make: Any, limited: Any) -> None:
    gw = make(policy_dir=limited(q1={"images_per_day_per_tenant": 3}))
    app = gw.key("q1")
    assert gw.client.post("/v1/generations", json={**PROMPT, "n": 2}, headers=app).status_code == 200
    body = assert_refused(gw.client.post("/v1/generations", json={**PROMPT, "n": 2}, headers=app),
                          "images_per_day_per_tenant", limit_value=3, used=2, window="day")
    assert body["requested"] == 2 and body["scope"] == "tenant"
    assert body["resets_at"].endswith("T00:00:00+00:00")
    assert gw.client.post("/v1/generations", json={**PROMPT, "n": 1}, headers=app).status_code == 200  # exactly 3
    # the OpenAI-compatible route: the same limit, with the error member the openai SDK reads
    resp = gw.client.post("/v1/images/generations", json={"prompt": "a cat", "size": "128x128"}, headers=app)
    assert_refused(resp, "images_per_day_per_tenant", limit_value=3, used=3, window="day")
    assert resp.json()["error"]["type"] == "quota-exceeded"


def test_the_openai_sdk_raises_its_rate_limit_error(make: Any, limited: Any, serve: Any) -> None:
    openai = pytest.importorskip("openai")
    gw = make(policy_dir=limited(q1={"images_per_day_per_key": 1}))
    key = gw.key("q1")["Authorization"].removeprefix("Bearer ")
    with openai.OpenAI(base_url=serve(gw) + "/v1", api_key=key, max_retries=0) as client:  # closed, not left to gc
        client.images.generate(prompt="a lighthouse", size="128x128", response_format="b64_json")  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as refused:
            client.images.generate(prompt="a lighthouse", size="128x128")  # type: ignore[arg-type]
    assert refused.value.response.headers["retry-after"].isdigit()


class OnCuda:
    """The demo pipeline as if it ran on a GPU: its generation seconds are GPU-seconds."""

    device = "cuda:0"

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name, self.revision = inner.name, inner.revision

    def generate(self, spec: Any) -> Any:
        return self.inner.generate(spec)


def test_gpu_seconds_per_day_refuse_new_work_once_spent(make: Any, limited: Any, shared_registry: Any
                                                        ) -> None:
    registry = ModelRegistry([ModelEntry(e.spec, OnCuda(e.generator)) if e.name == "demo-tiny" else e
                              for e in shared_registry])
    gw = make(registry=registry, policy_dir=limited(q1={"gpu_seconds_per_day_per_tenant": 1e-6}))
    app = gw.key("q1")
    assert gw.client.post("/v1/generations", json=PROMPT, headers=app).status_code == 200
    with Session(gw.runtime.db) as s:
        [usage] = s.exec(select(UsageRecord).where(UsageRecord.tenant == "q1")).all()
    assert usage.gpu_seconds > 0 and usage.cpu_seconds == 0
    spent = counters(gw)[("gpu_seconds_per_day_per_tenant", "q1")]
    assert spent == pytest.approx(usage.gpu_seconds)
    before = counts(gw, "q1")
    resp = gw.client.post("/v1/generations", json=TEMPLATE, headers=app)  # any generation work is refused
    assert resp.status_code == 429 and resp.json()["limit"] == "gpu_seconds_per_day_per_tenant"
    assert resp.json()["used"] == pytest.approx(spent, abs=1e-3) and resp.json()["window"] == "day"
    assert counts(gw, "q1") == before


# -- concurrent jobs ---------------------------------------------------------------------------------------------


def test_concurrent_jobs_are_counted_from_the_jobs_table(make: Any, limited: Any) -> None:
    gw = make(job_workers=0, policy_dir=limited(q1={"concurrent_jobs_per_tenant": 2}))
    app = gw.key("q1")
    ids = [gw.client.post("/v1/generations", json={**TEMPLATE, "async": True}, headers=app).json()["id"]
           for _ in range(2)]
    before = counts(gw, "q1")
    body = assert_refused(gw.client.post("/v1/generations", json={**TEMPLATE, "async": True}, headers=app),
                          "concurrent_jobs_per_tenant", limit_value=2, used=2, window="concurrent")
    assert "resets_at" not in body  # no window: a job slot frees when a job finishes
    assert counts(gw, "q1") == before  # nothing queued
    # a batch needs room for all its rows: refused whole, with no batch, job or audit entry
    resp = gw.client.post("/v1/batches", content=FEED.encode(), headers={**app, "Content-Type": "text/csv"})
    assert resp.status_code == 429 and resp.json()["limit"] == "concurrent_jobs_per_tenant"
    assert counts(gw, "q1") == before
    # a finished job frees its slot
    assert gw.client.post(f"/v1/jobs/{ids[0]}/cancel", headers=app).json()["status"] == "cancelled"
    assert gw.client.post("/v1/generations", json={**TEMPLATE, "async": True}, headers=app).status_code == 202


def test_a_batch_charges_its_rows_images(make: Any, limited: Any) -> None:
    gw = make(job_workers=0, policy_dir=limited(q1={"images_per_day_per_tenant": 4}))
    app = gw.key("q1")
    csv = {**app, "Content-Type": "text/csv"}
    assert gw.client.post("/v1/batches", content=FEED.encode(), headers=csv).status_code == 202
    assert counters(gw)[("images_per_day_per_tenant", "q1")] == 3
    before = counts(gw, "q1")
    assert_refused(gw.client.post("/v1/batches", content=FEED.encode(), headers=csv),
                   "images_per_day_per_tenant", limit_value=4, used=3, window="day")
    assert counts(gw, "q1") == before


# -- shared, durable, atomic -------------------------------------------------------------------------------------


def test_two_workers_share_the_limits_and_counters_survive_a_restart(make: Any, limited: Any,
                                                                     database: dict[str, str]) -> None:
    policy_dir = limited(q1={"requests_per_minute_per_tenant": 3})
    one = make(policy_dir=policy_dir, **database)
    two = make(policy_dir=policy_dir, **database)
    app = one.key("q1")
    assert one.client.post("/v1/generations", json=TEMPLATE, headers=app).status_code == 200
    assert two.client.post("/v1/generations", json=TEMPLATE, headers=app).status_code == 200
    assert one.client.post("/v1/generations", json=TEMPLATE, headers=app).status_code == 200
    assert_refused(two.client.post("/v1/generations", json=TEMPLATE, headers=app),
                   "requests_per_minute_per_tenant", limit_value=3, used=3, window="minute")
    # both stop; a new process on the same database still knows what was used this minute
    one.client.__exit__(None, None, None)
    two.client.__exit__(None, None, None)
    three = make(policy_dir=policy_dir, **database)
    assert_refused(three.client.post("/v1/generations", json=TEMPLATE, headers=app),
                   "requests_per_minute_per_tenant", limit_value=3, used=3, window="minute")


def test_racing_requests_never_over_admit(make: Any, limited: Any, database: dict[str, str]) -> None:
    """24 threads on two gateways race for 5 slots of one tenant: exactly 5 get in, and the counter says 5."""
    policy_dir = limited(q1={**UNLIMITED_REST, "images_per_day_per_tenant": 5})
    workers = [make(policy_dir=policy_dir, **database) for _ in range(2)]
    principal = Principal("q1", "app", key_id(workers[0].key("q1")))
    start = threading.Barrier(24)

    def attempt(i: int) -> bool:
        quotas: Quotas = workers[i % 2].runtime.quotas
        start.wait()
        try:
            quotas.admit(principal, images=1)
            return True
        except QuotaExceeded:
            return False

    with ThreadPoolExecutor(24) as pool:
        admitted = list(pool.map(attempt, range(24)))
    assert sum(admitted) == 5
    assert counters(workers[0])[("images_per_day_per_tenant", "q1")] == 5


def test_racing_http_clients_never_over_admit(make: Any, limited: Any, serve: Any) -> None:
    # only this limit: no other counter's lock serialises the racers first
    gw = make(policy_dir=limited(q1={**UNLIMITED_REST, "requests_per_minute_per_tenant": 4}))
    base, app = serve(gw), gw.key("q1")
    start = threading.Barrier(12)

    def post(_: int) -> int:
        with httpx.Client(base_url=base, headers=app, timeout=60) as client:
            start.wait()
            return client.post("/v1/generations", json=TEMPLATE).status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = sorted(pool.map(post, range(12)))
    assert statuses == [200] * 4 + [429] * 8
    assert counts(gw, "q1")["generations"] == 4


def test_racing_async_submissions_never_exceed_the_job_limit(make: Any, limited: Any,
                                                             database: dict[str, str]) -> None:
    policy_dir = limited(q1={**UNLIMITED_REST, "concurrent_jobs_per_tenant": 3})
    workers = [make(job_workers=0, policy_dir=policy_dir, **database) for _ in range(2)]
    app = workers[0].key("q1")
    start = threading.Barrier(10)

    def submit(i: int) -> int:
        start.wait()
        return workers[i % 2].client.post("/v1/generations", json={**TEMPLATE, "async": True},
                                          headers=app).status_code

    with ThreadPoolExecutor(10) as pool:
        statuses = sorted(pool.map(submit, range(10)))
    assert statuses == [202] * 3 + [429] * 7
    assert counts(workers[0], "q1")["jobs"] == 3


# -- the policy decides ------------------------------------------------------------------------------------------


def test_a_new_bundle_applies_at_once(make: Any, limited: Any, tmp_path: Path) -> None:
    policy_dir = limited(q1={"requests_per_minute_per_key": 1})
    gw = make(policy_dir=policy_dir)
    app, admin = gw.key("q1"), gw.key("q1", "policy-admin")
    assert gw.client.post("/v1/generations", json=TEMPLATE, headers=app).status_code == 200
    assert gw.client.post("/v1/generations", json=TEMPLATE, headers=app).status_code == 429
    set_limits(policy_dir, keys={key_id(app): {"requests_per_minute_per_key": 3}})  # this key only
    resp = gw.client.put("/v1/policies", content=load_bundle(policy_dir).archive(),
                         headers={**admin, "Content-Type": "application/gzip"})
    assert resp.status_code == 200, resp.text
    assert gw.client.post("/v1/generations", json=TEMPLATE, headers=app).status_code == 200
    assert gw.runtime.quotas.limits(Principal("q1", "app", key_id(app))).requests_per_minute_per_key == 3


def test_a_bundle_without_the_quota_package_sets_no_limits(make: Any, make_policy_dir: Any) -> None:
    def drop(root: Path) -> None:
        for name in ("quota.rego", "quota_test.rego", "data.json"):
            (root / "mediagate/quota" / name).unlink()

    gw = make(policy_dir=make_policy_dir(edit=drop))
    app = gw.key("restricted")  # 30 requests a minute per key in the shipped data
    assert gw.runtime.quotas.limits(Principal("restricted", "app", key_id(app))) == Limits()
    assert gw.client.post("/v1/generations", json=TEMPLATE, headers=app).status_code == 200
    assert counters(gw) == {}


def test_quotas_off_admits_everything_and_counts_nothing(make: Any, limited: Any) -> None:
    gw = make(quotas=False, policy_dir=limited(q1={"requests_per_minute_per_key": 1}))
    app = gw.key("q1")
    assert [gw.client.post("/v1/generations", json=TEMPLATE, headers=app).status_code for _ in range(2)] == [200, 200]
    assert counters(gw) == {}
    assert counts(gw, "q1")["usage"] == 2  # usage is still accounted


@pytest.mark.parametrize(("raw", "problem"), [
    ("x", "not an object"),
    ({}, "does not name"),
    ({**{n: None for n in Limits.__dataclass_fields__}, "images_per_day_per_key": -1}, "number >= 0"),
    ({**{n: None for n in Limits.__dataclass_fields__}, "images_per_day_per_key": True}, "number >= 0"),
    ({**{n: None for n in Limits.__dataclass_fields__}, "images_per_day_per_key": "10"}, "number >= 0"),
])
def test_limits_of_the_wrong_shape_are_no_answer(raw: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Limits.parse(raw)


def test_windows_are_utc_minutes_and_days() -> None:
    now = 1_790_000_123.5  # 2026-09-21T14:15:23.5Z
    assert Window.of("minute", now) == Window("minute", 1_790_000_100, 1_790_000_160)
    day = Window.of("day", now)
    assert (day.start % 86_400, day.end - day.start) == (0, 86_400)
    assert Window.of("minute", now).retry_after(now) == 37 and Window.of("minute", 1_790_000_159.9).retry_after(
        1_790_000_159.9) == 1


def test_old_counters_are_pruned(make: Any, limited: Any) -> None:
    gw = make(policy_dir=limited(q1={"requests_per_minute_per_key": 10, "images_per_day_per_tenant": 10}))
    principal = Principal("q1", "app", key_id(gw.key("q1")))
    gw.runtime.quotas.admit(principal, images=1)  # (its first admission also prunes, and finds nothing old)
    two_days_ago = Quotas(db=gw.runtime.db, policy=gw.runtime.policy, clock=lambda: time.time() - 2 * 86_400)
    two_days_ago.admit(principal, images=1)
    with Session(gw.runtime.db) as s:
        assert s.exec(select(func.count()).select_from(QuotaCounter)).one() == 6
    assert gw.runtime.quotas.prune() == 3
    with Session(gw.runtime.db) as s:
        left = s.exec(select(QuotaCounter).where(col(QuotaCounter.expires_at) > 0)).all()
    now = gw.runtime.quotas.clock()
    assert sorted(c.window_start for c in left) == sorted([Window.of("minute", now).start] * 2
                                                          + [Window.of("day", now).start])


def test_a_scoring_request_counts_against_the_request_rate(make: Any, limited: Any) -> None:
    gw = make(policy_dir=limited(q1={"requests_per_minute_per_key": 1}))
    app = gw.key("q1")
    buf = io.BytesIO()
    Image.new("RGB", (96, 96), (200, 80, 40)).save(buf, format="PNG")
    files = [("image", ("a.png", buf.getvalue()))]
    assert gw.client.post("/v1/score", headers=app, files=files).status_code == 200
    assert_refused(gw.client.post("/v1/score", headers=app, files=files),
                   "requests_per_minute_per_key", limit_value=1, used=1, window="minute")
    # no images were asked for: only the request rate counted
    assert ("images_per_day_per_tenant", "q1") not in counters(gw)


def test_counters_that_cannot_be_charged_admit_nothing(make: Any, limited: Any, write_locked: Any) -> None:
    gw = make(db_busy_timeout_ms=200, policy_dir=limited(q1={"requests_per_minute_per_key": 5}))
    app = gw.key("q1")
    with write_locked(gw):  # another process holds the write lock past the gateway's busy timeout
        resp = gw.client.post("/v1/generations", json=TEMPLATE, headers=app)
    assert resp.status_code == 503 and "quota counters" in resp.json()["detail"]
    assert counts(gw, "q1")["generations"] == 0 and counters(gw) == {}
