"""Generation on real Celery workers with a real Redis broker: through the gateway, and a worker killed mid-task."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from PIL import Image
from sqlmodel import Session

from gateway.runtime import build_registry
from gateway.settings import Settings
from generators.base import GenerationSpec
from generators.demo import ensure_demo_pipeline
from generators.diffusers_txt2img import DiffusersTxt2Img, directory_revision

VISIBILITY_S = 6  # how long a task delivered to a dead worker waits before it goes to another


@pytest.fixture
def start_worker(redis_url: str, models_dir: Path, tmp_path: Path
                 ) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    ensure_demo_pipeline(models_dir / "demo-tiny")
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "MEDIAGATE_HOME": str(tmp_path / f"worker-{name}"),
               "MEDIAGATE_MODELS_DIR": str(models_dir),
               "MEDIAGATE_CELERY_BROKER_URL": f"{redis_url}/0", "MEDIAGATE_CELERY_RESULT_BACKEND": f"{redis_url}/1",
               "MEDIAGATE_CELERY_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S), "MEDIAGATE_CELERY_RESTORE_INTERVAL_S": "1",
               "HF_HUB_OFFLINE": "1"}
        log = (tmp_path / f"worker-{name}.log").open("wb")
        proc = subprocess.Popen([str(Path(sys.executable).parent / "mediagate"), "worker", "--concurrency", "4",
                                 "--hostname", f"{name}@test"], env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        deadline = time.monotonic() + 120
        while b"ready." not in (tmp_path / f"worker-{name}.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("worker did not start:\n" + (tmp_path / f"worker-{name}.log").read_text()[-3000:])
            time.sleep(0.2)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def remote_settings(tmp_path: Path, models_dir: Path, redis_url: str, **extra: Any) -> Settings:
    return Settings(home=tmp_path / "gateway", models_dir=models_dir, generation_backend="celery",
                    celery_broker_url=f"{redis_url}/0", celery_result_backend=f"{redis_url}/1",
                    celery_visibility_timeout_s=VISIBILITY_S, **extra)


def decided(gw: Any) -> list[dict[str, Any]]:
    with Session(gw.runtime.db) as s:
        return [dict(e.payload) for e in gw.runtime.audit.list(s, limit=1000) if e.kind == "generation.decided"]


def test_generations_render_on_a_celery_worker(start_worker: Any, make_gateway: Any, models_dir: Path,
                                               redis_url: str, tmp_path: Path) -> None:
    start_worker("a")
    registry = build_registry(remote_settings(tmp_path, models_dir, redis_url))
    assert type(registry.get("demo-tiny").generator).__name__ == "CeleryGenerator"
    gw = make_gateway(registry=registry, prompt_cache=False)
    app = gw.key()
    resp = gw.client.post("/v1/generations", json={"prompt": "a red bicycle", "seed": 77, "n": 2}, headers=app)
    assert resp.status_code == 200, resp.text
    [entry] = decided(gw)
    assert entry["generator"]["revision"] == directory_revision(models_dir / "demo-tiny")
    assert [i["seed"] for i in entry["images"]] == [77, 78]
    # the worker's pixels are the in-process render's (the released file adds only the invisible watermark)
    local = DiffusersTxt2Img("demo-tiny", models_dir / "demo-tiny", device="cpu").generate(GenerationSpec(
        model="demo-tiny", width=128, height=128, n=2, seed=77, prompt="a red bicycle", steps=2))
    png = gw.client.get(resp.json()["assets"][0]["url"], headers=app).content
    released = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    mse = np.mean((released - np.asarray(local[0].image, dtype=np.float64)) ** 2)
    assert 10 * np.log10(255**2 / max(mse, 1e-12)) > 35


def test_a_worker_killed_mid_task_is_replaced_and_the_request_is_audited_once(
    start_worker: Any, make_gateway: Any, models_dir: Path, redis_url: str, tmp_path: Path
) -> None:
    first = start_worker("first")
    registry = build_registry(remote_settings(tmp_path, models_dir, redis_url))
    gw = make_gateway(registry=registry, prompt_cache=False)
    app = gw.key()
    results: dict[str, Any] = {}
    body = {"prompt": "a slow render", "seed": 5, "size": "256x256", "steps": 30}  # about 2 s here

    def post() -> None:
        results["resp"] = gw.client.post("/v1/generations", json=body, headers=app)

    backend = redis.Redis.from_url(f"{redis_url}/1")
    before = set(backend.keys("celery-task-meta-*"))
    poster = threading.Thread(target=post)
    poster.start()
    deadline = time.monotonic() + 180  # generous: a loaded machine starts the render late, never early
    started = False
    while not started and time.monotonic() < deadline:  # the task is running on the first worker...
        for key in set(backend.keys("celery-task-meta-*")) - before:
            started |= json.loads(backend.get(key) or b"{}").get("status") in ("STARTED", "PROGRESS")  # running
        time.sleep(0.05)
    assert started, "the task never started"
    first.send_signal(signal.SIGKILL)  # ...which dies mid-render
    first.wait()
    start_worker("second")
    poster.join(timeout=180)
    assert not poster.is_alive()
    resp = results["resp"]
    assert resp.status_code == 200, resp.text
    entries = [e for e in decided(gw) if e["request"]["prompt"] == "a slow render"]
    assert len(entries) == 1 and entries[0]["generation_id"] == resp.json()["id"]
    assert "succeeded" in (tmp_path / "worker-second.log").read_text()


def test_an_image_to_image_request_travels_to_the_worker_whole() -> None:
    from generators.remote import spec_from_json, spec_to_json

    start = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    spec = GenerationSpec(model="m", width=64, height=64, n=2, seed=9, prompt="p", steps=3, init_image=start,
                          strength=0.4)
    back = spec_from_json(json.loads(json.dumps(spec_to_json(spec))))
    assert np.array_equal(np.asarray(back.init_image), np.asarray(start))
    assert (back.strength, back.seed, back.n, back.steps) == (0.4, 9, 2, 3)
    plain = spec_from_json(json.loads(json.dumps(spec_to_json(GenerationSpec(model="m", width=64, height=64)))))
    assert plain.init_image is None and plain.strength is None


def test_a_job_rendered_on_a_worker_streams_its_diffusion_steps(start_worker: Any, make_gateway: Any,
                                                               models_dir: Path, redis_url: str,
                                                               tmp_path: Path) -> None:
    start_worker("steps")
    gw = make_gateway(registry=build_registry(remote_settings(tmp_path, models_dir, redis_url)), job_workers=0,
                      prompt_cache=False)
    app = gw.key()
    job_id = gw.client.post("/v1/generations", json={"prompt": "a red bicycle", "steps": 6, "size": "256x256",
                                                     "async": True}, headers=app).json()["id"]
    assert gw.runtime.jobs.run_once()
    events = gw.client.get(f"/v1/jobs/{job_id}/events", headers=app).text
    steps = [json.loads(line.removeprefix("data: ")) for block in events.split("\n\n") if "event: step" in block
             for line in block.splitlines() if line.startswith("data: ")]
    assert steps and {s["of"] for s in steps} == {6} and steps[-1]["step"] == 6  # the worker's steps, passed on
    assert "event: completed" in events
