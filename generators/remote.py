"""Scale-out: generation on Celery workers (one process per GPU) behind a Redis broker.

With ``MEDIAGATE_GENERATION_BACKEND=celery`` the gateway's registry holds ``CeleryGenerator`` proxies: the same
``Generator`` protocol, so the flow (policies, watermarking, scoring, the audit entry) runs in the gateway exactly as
before, while the pixels are rendered by ``mediagate worker`` processes. A worker loads the same registry file and
keeps the micro-batcher (``generators.batching``), so concurrent tasks for one model share pipeline calls.

Delivery: tasks are acknowledged late (after they finish) with ``task_reject_on_worker_lost``, and each worker
prefetches one task per slot, so a task whose worker dies is delivered again (after the broker's visibility timeout)
to another worker. The gateway waits for the task's result, once: however many times the pixels were rendered, the
flow after them runs once, and the audit log has one entry. A worker that renders with other weights than the
gateway's registry says (another revision) is refused: the audit entry must name the weights that made the image.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import time
from typing import Any

from PIL import Image

from generators.base import GeneratedImage, GenerationSpec, progress, report

log = logging.getLogger(__name__)

TASK = "mediagate.generate"
QUEUE = "mediagate.generate"


def make_celery(broker_url: str, result_backend: str, *, visibility_timeout_s: float = 3600.0,
                restore_interval_s: float = 10.0) -> Any:
    from celery import Celery

    app = Celery("mediagate", broker=broker_url, backend=result_backend)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        task_track_started=True,
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        # A delivered task not acknowledged within this time goes to another worker: keep it above the longest
        # render, or a slow task is run twice (harmless to the audit log, wasteful on the GPU).
        # Workers look for such tasks every `restore_interval_s` (kombu's default is a scan every 100 s).
        broker_transport_options={"visibility_timeout": visibility_timeout_s,
                                  "unacked_restore_interval": restore_interval_s, "unacked_restore_throttle": 1},
        result_backend_transport_options={"visibility_timeout": visibility_timeout_s},
    )
    return app


def spec_to_json(spec: GenerationSpec) -> dict[str, Any]:
    out = {"model": spec.model, "width": spec.width, "height": spec.height, "n": spec.n, "seed": spec.seed,
           "prompt": spec.prompt, "negative_prompt": spec.negative_prompt, "steps": spec.steps,
           "strength": spec.strength, "init_image": None}
    if spec.init_image is not None:  # image-to-image: the starting image travels as PNG
        buf = io.BytesIO()
        spec.init_image.save(buf, format="PNG")
        out["init_image"] = base64.b64encode(buf.getvalue()).decode()
    return out


def spec_from_json(data: dict[str, Any]) -> GenerationSpec:
    init = data.get("init_image")
    image = Image.open(io.BytesIO(base64.b64decode(init))).convert("RGB") if init else None
    return GenerationSpec(**{**data, "init_image": image})


class CeleryGenerator:
    """The gateway's side: a ``Generator`` whose renders happen on a worker."""

    def __init__(self, name: str, revision: str, app: Any, *, timeout_s: float = 600.0) -> None:
        self.name, self.revision, self.app, self.timeout_s = name, revision, app, timeout_s

    def generate(self, spec: GenerationSpec) -> list[GeneratedImage]:
        from gateway.errors import DependencyUnavailable

        result = self.app.send_task(TASK, args=[spec_to_json(spec)], queue=QUEUE)
        try:
            out = self._wait(result)
        finally:
            result.forget()
        if out.get("error"):
            raise DependencyUnavailable(f"worker could not render with {self.name!r}: {out['error']}")
        if out["revision"] != self.revision:
            raise DependencyUnavailable(f"a worker rendered {self.name!r} with revision {out['revision']}, the "
                                        f"gateway's registry says {self.revision}: not released")
        return [GeneratedImage(image=Image.open(io.BytesIO(base64.b64decode(i["png"]))).convert("RGB"),
                               index=i["index"], seed=i["seed"], model=self.name, model_revision=out["revision"])
                for i in out["images"]]

    def _wait(self, result: Any) -> dict[str, Any]:
        """The task's result; meanwhile the worker's step reports are passed on to this request's progress sink
        (which may raise to cancel: the gateway then stops waiting, and the render's result is dropped)."""
        from celery import states

        from gateway.errors import DependencyUnavailable

        deadline = time.monotonic() + self.timeout_s
        seen = None
        while (meta := result.backend.get_task_meta(result.id))["status"] not in states.READY_STATES:
            if meta["status"] == "PROGRESS" and meta["result"] != seen:  # one read of the backend per look
                seen = meta["result"]
                report("step", step=seen["step"], of=seen["of"])
            if time.monotonic() > deadline:
                raise DependencyUnavailable(f"no render from a worker within {self.timeout_s} s")
            time.sleep(_POLL_S)
        out: dict[str, Any] = result.get(timeout=self.timeout_s, propagate=True)
        return out


_POLL_S = 0.05  # how often the gateway looks at a task's state while waiting


# -- the worker's side ---------------------------------------------------------------------------------------------

_registry: Any = None


def worker_registry() -> Any:
    """The worker's models: the registry file of its settings, with micro-batching; loaded once per process."""
    global _registry
    if _registry is None:
        from gateway.runtime import build_registry
        from gateway.settings import Settings

        settings = Settings(generation_backend="inprocess")
        _registry = build_registry(settings)
        log.info("worker %d loaded %s", os.getpid(), _registry.names())
    return _registry


def render(task: Any, spec_json: dict[str, Any]) -> dict[str, Any]:
    """The task body: render one request with the worker's model; PNGs travel back base64-encoded. Diffusion steps
    are published as the task's PROGRESS state, which the waiting gateway passes on (``CeleryGenerator._wait``)."""

    task_id = task.request.id  # the micro-batcher reports from its own thread, where the task context is unset

    def publish(kind: str, data: dict[str, Any]) -> None:
        if kind == "step":
            task.update_state(task_id=task_id, state="PROGRESS", meta={"step": data["step"], "of": data["of"]})

    token = progress.set(publish)
    try:
        return _render(spec_json)
    finally:
        progress.reset(token)


def _render(spec_json: dict[str, Any]) -> dict[str, Any]:
    from gateway.errors import GatewayError

    entry = worker_registry().get(spec_json["model"])
    if entry is None or entry.generator is None or entry.backend == "template":
        return {"error": f"this worker has no diffusers model {spec_json['model']!r}", "revision": None}
    try:
        images = entry.generator.generate(spec_from_json(spec_json))
    except GatewayError as exc:  # bad input the gateway's edge did not catch: reported, not retried
        return {"error": exc.detail, "revision": entry.generator.revision}
    out = []
    for g in images:
        buf = io.BytesIO()
        g.image.save(buf, format="PNG")
        out.append({"index": g.index, "seed": g.seed, "png": base64.b64encode(buf.getvalue()).decode()})
    return {"revision": entry.generator.revision, "images": out}


def register_task(app: Any) -> None:
    app.task(name=TASK, bind=True)(render)
