"""Scrape-time gauges (queues from the database, GPUs from NVML) and the job and review counters."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.db import make_engine
from gateway.metrics import Metrics

PROMPT = {"prompt": "a lighthouse", "size": "128x128"}


def samples(text: str, prefix: str = "mediagate_") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples if s.name.startswith(prefix)}


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return samples(generate_latest(metrics.registry).decode())


# -- queues ------------------------------------------------------------------------------------------------------


def test_job_queue_depth_and_the_job_counters_follow_a_job_through_a_restart(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    app = gw.key()
    for seed in (1, 2):
        assert gw.client.post("/v1/generations", headers=app, json={**PROMPT, "seed": seed, "async": True}
                              ).status_code == 202
    before = samples(gw.client.get("/metrics").text)
    assert before[("mediagate_job_queue_depth", (("state", "queued"),))] == 2
    assert before[("mediagate_job_queue_depth", (("state", "running"),))] == 0
    assert before[("mediagate_job_queue_oldest_age_seconds", ())] >= 0

    runner = gw.runtime.jobs
    assert runner.claim() is not None  # the process dies while running it...
    running = samples(gw.client.get("/metrics").text)
    assert running[("mediagate_job_queue_depth", (("state", "running"),))] == 1
    assert runner.recover() == 1  # ...and the next one queues it again
    assert runner.run_once() and runner.run_once() and not runner.run_once()
    after = samples(gw.client.get("/metrics").text)
    assert after[("mediagate_job_queue_depth", (("state", "queued"),))] == 0
    assert after[("mediagate_job_queue_oldest_age_seconds", ())] == 0
    assert after[("mediagate_job_attempts_total", ())] == 3
    assert after[("mediagate_job_retries_total", (("reason", "interrupted"),))] == 1
    assert after[("mediagate_jobs_finished_total", (("status", "completed"),))] == 2


def test_a_cancelled_job_is_counted(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    app = gw.key()
    job = gw.client.post("/v1/generations", headers=app, json={**PROMPT, "async": True}).json()
    assert gw.client.post(f"/v1/jobs/{job['id']}/cancel", headers=app).json()["status"] == "cancelled"
    after = samples(gw.client.get("/metrics").text)
    assert after[("mediagate_jobs_finished_total", (("status", "cancelled"),))] == 1
    assert after[("mediagate_job_queue_depth", (("state", "queued"),))] == 0


def test_review_queue_depth_age_and_wait(make_gateway: Any, make_policy_dir: Any) -> None:
    gw = make_gateway(policy_dir=make_policy_dir(tenants={"careful": {"force_review": True}}))
    app, reviewer = gw.key("careful", "app"), gw.key("careful", "reviewer")
    held = [gw.client.post("/v1/generations", headers=app, json={**PROMPT, "seed": s}).json() for s in (1, 2)]
    assert [h["decision"] for h in held] == ["review", "review"]
    pending = samples(gw.client.get("/metrics").text)
    assert pending[("mediagate_review_queue_depth", ())] == 2
    assert pending[("mediagate_review_queue_oldest_age_seconds", ())] > 0
    assert pending[("mediagate_assets_total", (("status", "held"),))] == 2
    assert pending[("mediagate_generations_total", (("decision", "review"),))] == 2

    assert gw.client.post(f"/v1/reviews/{held[0]['review']['id']}/approve", headers=reviewer,
                          json={"reason": "ok"}).status_code == 200
    assert gw.client.post(f"/v1/reviews/{held[1]['review']['id']}/reject", headers=reviewer,
                          json={"reason": "off brand"}).status_code == 200
    after = samples(gw.client.get("/metrics").text)
    assert after[("mediagate_review_queue_depth", ())] == 0
    assert after[("mediagate_review_queue_oldest_age_seconds", ())] == 0
    assert after[("mediagate_review_wait_seconds_count", (("decision", "approved"),))] == 1
    assert after[("mediagate_review_wait_seconds_count", (("decision", "rejected"),))] == 1
    assert 0 < after[("mediagate_review_wait_seconds_sum", (("decision", "approved"),))] < 600


def test_an_unreadable_database_costs_the_queue_series_not_the_scrape(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.track_queues(make_engine(f"sqlite:///{tmp_path}/empty.db"))  # no tables: every query fails
    first, second = scrape(metrics), scrape(metrics)
    assert not [k for k in second if k[0].startswith(("mediagate_job_queue", "mediagate_review_queue"))]
    assert first[("mediagate_scrape_errors_total", (("collector", "queues"),))] == 1
    assert second[("mediagate_scrape_errors_total", (("collector", "queues"),))] == 2


# -- GPUs --------------------------------------------------------------------------------------------------------


class NVMLError(Exception):
    pass


@dataclass
class FakeNvml:
    """Stands in for ``pynvml`` with its call shapes: devices by index, utilisation and memory structs."""

    devices: list[dict[str, Any]]
    fail_init: bool = False
    fail_count: bool = False
    NVMLError = NVMLError

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        if self.fail_init:
            raise NVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        if self.fail_count:
            raise NVMLError("GPU is lost")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:  # noqa: N802
        return self.devices[index]

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> str | bytes:  # noqa: N802
        return handle["name"]  # type: ignore[no-any-return]

    def nvmlDeviceGetUtilizationRates(self, handle: dict[str, Any]) -> Any:  # noqa: N802
        if handle.get("broken"):
            raise NVMLError("Unknown Error")
        return type("Utilization", (), {"gpu": handle["util"], "memory": 0})()

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> Any:  # noqa: N802
        return type("Memory", (), {"used": handle["used"], "total": handle["total"], "free": 0})()


GPU_SERIES = ("mediagate_gpu_utilization_percent", "mediagate_gpu_memory_used_bytes",
              "mediagate_gpu_memory_total_bytes")


def gpu(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[tuple[str, str], float]:
    return {(name, dict(labels)["gpu"]): v for (name, labels), v in scraped.items() if name in GPU_SERIES}


def test_each_gpu_reports_utilisation_and_memory() -> None:
    nvml = FakeNvml([{"name": b"NVIDIA H100 80GB HBM3", "util": 87, "used": 3 * 2**30, "total": 80 * 2**30},
                     {"name": "NVIDIA H100 80GB HBM3", "util": 0, "used": 0, "total": 80 * 2**30}])
    scraped = scrape(Metrics(nvml=nvml))
    assert gpu(scraped) == {
        ("mediagate_gpu_utilization_percent", "0"): 87, ("mediagate_gpu_utilization_percent", "1"): 0,
        ("mediagate_gpu_memory_used_bytes", "0"): 3 * 2**30, ("mediagate_gpu_memory_used_bytes", "1"): 0,
        ("mediagate_gpu_memory_total_bytes", "0"): 80 * 2**30, ("mediagate_gpu_memory_total_bytes", "1"): 80 * 2**30,
    }
    names = {dict(labels)["name"] for (n, labels) in scraped if n in GPU_SERIES}
    assert names == {"NVIDIA H100 80GB HBM3"}


def test_nvml_errors_drop_series_never_the_scrape() -> None:
    one_broken = FakeNvml([{"name": "A", "broken": True}, {"name": "B", "util": 5, "used": 1, "total": 2}])
    metrics = Metrics(nvml=one_broken)
    scraped = scrape(metrics)
    assert set(gpu(scraped)) == {(n, "1") for n in GPU_SERIES}
    assert scraped[("mediagate_scrape_errors_total", (("collector", "gpu"),))] == 1

    lost = Metrics(nvml=FakeNvml([{"name": "A", "util": 1, "used": 1, "total": 2}], fail_count=True))
    scraped = scrape(lost)
    assert gpu(scraped) == {} and scraped[("mediagate_scrape_errors_total", (("collector", "gpu"),))] == 1

    no_driver = Metrics(nvml=FakeNvml([], fail_init=True))
    scraped = scrape(no_driver)
    assert gpu(scraped) == {} and ("mediagate_scrape_errors_total", (("collector", "gpu"),)) not in scraped


def test_a_gateway_whose_nvml_fails_still_serves_metrics(tmp_path: Path, models_dir: Path, shared_registry: Any,
                                                         shared_scorers: Any, shared_matcher: Any) -> None:
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.runtime import build_runtime
    from gateway.settings import Settings

    metrics = Metrics(nvml=FakeNvml([{"name": "A", "util": 1, "used": 1, "total": 2}], fail_count=True))
    runtime = build_runtime(Settings(home=tmp_path / "home", models_dir=models_dir, policy_watch=False),
                            registry=shared_registry, scorers=shared_scorers, matcher=shared_matcher, metrics=metrics)
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            resp = client.get("/metrics")
            assert resp.status_code == 200
            scraped = samples(resp.text)
            assert gpu(scraped) == {} and scraped[("mediagate_job_queue_depth", (("state", "queued"),))] == 0
    finally:
        runtime.close()


def _nvml_works() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - any failure means no usable NVML here
        return False
    pynvml.nvmlShutdown()
    return True


NVML = _nvml_works()


@pytest.mark.skipif(NVML, reason="NVML works on this machine: covered by test_real_nvml_reports_every_gpu")
def test_without_a_gpu_driver_the_real_pynvml_yields_no_series() -> None:
    metrics = Metrics()
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE mediagate_gpu_utilization_percent gauge" in text  # declared...
    assert gpu(samples(text)) == {}  # ...with no series
    assert ("mediagate_scrape_errors_total", (("collector", "gpu"),)) not in samples(text)


@pytest.mark.gpu
@pytest.mark.skipif(not NVML, reason="needs an NVIDIA driver (NVML)")
def test_real_nvml_reports_every_gpu() -> None:
    import pynvml

    pynvml.nvmlInit()
    count = pynvml.nvmlDeviceGetCount()
    scraped = gpu(scrape(Metrics()))
    assert {index for _, index in scraped} == {str(i) for i in range(count)}
    assert all(scraped[("mediagate_gpu_memory_total_bytes", str(i))] > 0 for i in range(count))
    assert all(0 <= scraped[("mediagate_gpu_utilization_percent", str(i))] <= 100 for i in range(count))
