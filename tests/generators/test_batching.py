"""Dynamic micro-batching on the real demo pipeline: shared pipeline calls, per-request seeds, results and errors."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.errors import InvalidInput
from generators.base import GeneratedImage, GenerationSpec, progress
from generators.batching import MicroBatcher
from generators.demo import ensure_demo_pipeline
from generators.diffusers_txt2img import DiffusersTxt2Img


@pytest.fixture(scope="module")
def inner(models_dir: Path) -> DiffusersTxt2Img:
    return DiffusersTxt2Img("demo-tiny", ensure_demo_pipeline(models_dir / "demo-tiny"), device="cpu")


def spec(seed: int, prompt: str = "a red bicycle", n: int = 1, size: int = 128, **kw: Any) -> GenerationSpec:
    return GenerationSpec(model="demo-tiny", width=size, height=size, n=n, seed=seed, prompt=prompt, **kw)


def run_concurrently(batcher: MicroBatcher, specs: list[GenerationSpec], sinks: list[Any] | None = None
                     ) -> list[list[GeneratedImage] | BaseException]:
    results: list[list[GeneratedImage] | BaseException] = [[] for _ in specs]

    def call(k: int) -> None:
        if sinks is not None and sinks[k] is not None:
            progress.set(sinks[k])
        try:
            results[k] = batcher.generate(specs[k])
        except BaseException as exc:  # noqa: BLE001 - compared below
            results[k] = exc

    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(specs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_requests_share_one_call_and_keep_their_own_seeds(inner: DiffusersTxt2Img) -> None:
    calls: list[tuple[int, int]] = []
    batcher = MicroBatcher(inner, max_images=8, max_wait_ms=500, observe=lambda r, i: calls.append((r, i)))
    specs = [spec(10, "a red bicycle", n=2), spec(20, "a blue house"), spec(30, "a green tree", n=3)]
    results = run_concurrently(batcher, specs)
    batcher.close()
    assert calls == [(3, 6)]  # one pipeline call for the three requests
    for s, result in zip(specs, results, strict=True):
        assert isinstance(result, list)
        assert [g.seed for g in result] == [s.seed + i for i in range(s.n)]
        assert [g.index for g in result] == list(range(s.n))
        alone = inner.generate(s)
        for batched, solo in zip(result, alone, strict=True):
            diff = np.abs(np.asarray(batched.image, dtype=int) - np.asarray(solo.image, dtype=int))
            assert diff.max() <= 2  # float rounding differs with the batch size; nothing else does


def test_requests_of_other_sizes_or_steps_are_never_mixed(inner: DiffusersTxt2Img) -> None:
    calls: list[tuple[int, int]] = []
    batcher = MicroBatcher(inner, max_images=8, max_wait_ms=300, observe=lambda r, i: calls.append((r, i)))
    results = run_concurrently(batcher, [spec(1), spec(2, size=64), spec(3, steps=3), spec(4)])
    batcher.close()
    assert sorted(calls) == [(1, 1), (1, 1), (2, 2)]
    assert [r[0].image.size for r in results if isinstance(r, list)] == [(128, 128), (64, 64), (128, 128),
                                                                         (128, 128)]


def test_a_batch_never_exceeds_max_images(inner: DiffusersTxt2Img) -> None:
    calls: list[tuple[int, int]] = []
    batcher = MicroBatcher(inner, max_images=4, max_wait_ms=300, observe=lambda r, i: calls.append((r, i)))
    results = run_concurrently(batcher, [spec(s, n=2) for s in range(5)])
    batcher.close()
    assert all(isinstance(r, list) and len(r) == 2 for r in results)
    assert sum(i for _, i in calls) == 10 and max(i for _, i in calls) <= 4


def test_bad_input_is_refused_in_the_callers_thread(inner: DiffusersTxt2Img) -> None:
    calls: list[tuple[int, int]] = []
    batcher = MicroBatcher(inner, observe=lambda r, i: calls.append((r, i)))
    with pytest.raises(InvalidInput, match="divisible by 8"):
        batcher.generate(spec(1, size=100))
    batcher.close()
    assert calls == []


def test_a_request_cancelled_in_a_batch_fails_alone(inner: DiffusersTxt2Img) -> None:
    class Stop(Exception):
        pass

    seen: list[dict[str, Any]] = []

    def cancelling(kind: str, data: dict[str, Any]) -> None:
        if kind == "step" and data["step"] == 1:
            raise Stop("cancelled")

    def recording(kind: str, data: dict[str, Any]) -> None:
        seen.append(data)

    batcher = MicroBatcher(inner, max_images=8, max_wait_ms=500)
    results = run_concurrently(batcher, [spec(1), spec(2)], sinks=[cancelling, recording])
    batcher.close()
    assert isinstance(results[0], Stop)
    assert isinstance(results[1], list) and len(results[1]) == 1
    assert seen == [{"step": 0, "of": 2}, {"step": 1, "of": 2}, {"step": 2, "of": 2}]
