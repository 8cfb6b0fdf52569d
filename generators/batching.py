"""Dynamic micro-batching: concurrent requests for one model, size and step count rendered in one pipeline call.

``MicroBatcher`` wraps a generator that can render batches (``DiffusersTxt2Img.render_batch``) and is itself a
``Generator``: the flow calls ``generate(spec)`` from the request's thread as before. Requests wait in one queue; a
worker thread per model takes the oldest and every waiting request with the same ``batch_key`` (up to
``max_images`` images), optionally waiting ``max_wait_ms`` for more, and renders them together. While one batch
renders, the next one forms by itself, so under load batches grow without any added wait (``max_wait_ms`` 0).

Each request keeps its own seeds (one seeded ``torch.Generator`` per image), its own progress reporting and its own
result or error; the flow around it (policies, scoring, audit entry) is per request as before. A request's images
are the ones it would get alone up to float rounding: matrix kernels round differently for different batch sizes
(measured on the demo pipeline: at most 1 of 255 levels on some pixels).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol

from generators.base import GeneratedImage, GenerationSpec, Progress, progress

log = logging.getLogger(__name__)


class BatchRenderer(Protocol):
    name: str
    revision: str

    def check_inputs(self, spec: GenerationSpec) -> None: ...

    def batch_key(self, spec: GenerationSpec) -> Hashable: ...

    def render_batch(self, specs: Sequence[GenerationSpec], sinks: Sequence[Progress | None]
                     ) -> list[list[GeneratedImage] | BaseException]: ...


class _Pending:
    __slots__ = ("spec", "key", "sink", "done", "result")

    def __init__(self, spec: GenerationSpec, key: Hashable, sink: Progress | None) -> None:
        self.spec, self.key, self.sink = spec, key, sink
        self.done = threading.Event()
        self.result: list[GeneratedImage] | BaseException | None = None


class MicroBatcher:
    def __init__(self, inner: BatchRenderer, *, max_images: int = 8, max_wait_ms: float = 0.0,
                 observe: Callable[[int, int], None] | None = None) -> None:
        """``observe(requests, images)`` is told the size of every batch (e.g. for metrics)."""
        if max_images < 1:
            raise ValueError(f"`max_images` must be at least 1 but is {max_images}")
        self.inner = inner
        self.name = inner.name
        self.revision = inner.revision
        self.max_images = max_images
        self.max_wait_s = max_wait_ms / 1000
        self.observe = observe
        self._pending: list[_Pending] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"mediagate-batch-{inner.name}", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Any:  # the wrapped generator's other attributes (device, model_dir, ...)
        return getattr(self.inner, name)

    def generate(self, spec: GenerationSpec) -> list[GeneratedImage]:
        self.inner.check_inputs(spec)  # bad input is refused in the caller's thread, before it waits
        pending = _Pending(spec, self.inner.batch_key(spec), progress.get())
        with self._cond:
            if self._closed:
                raise RuntimeError(f"the batcher of {self.name!r} is closed")
            self._pending.append(pending)
            self._cond.notify()
        pending.done.wait()
        if isinstance(pending.result, BaseException):
            raise pending.result
        assert pending.result is not None
        return pending.result

    def _take(self) -> list[_Pending] | None:
        """The oldest waiting request and the others that fit with it; None once closed and drained."""
        with self._cond:
            while not self._pending:
                if self._closed:
                    return None
                self._cond.wait()
            first = self._pending[0]
            deadline = time.monotonic() + self.max_wait_s
            while True:
                batch: list[_Pending] = []
                images = 0
                for p in self._pending:
                    if p.key == first.key and (not batch or images + p.spec.n <= self.max_images):
                        batch.append(p)
                        images += p.spec.n
                remaining = deadline - time.monotonic()
                if images >= self.max_images or remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            for p in batch:
                self._pending.remove(p)
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            try:
                results = self.inner.render_batch([p.spec for p in batch], [p.sink for p in batch])
            except BaseException as exc:  # noqa: BLE001 - every request of the batch gets the error
                results = [exc] * len(batch)
            if self.observe is not None:
                self.observe(len(batch), sum(p.spec.n for p in batch))
            for p, result in zip(batch, results, strict=True):
                p.result = result
                p.done.set()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=60)
