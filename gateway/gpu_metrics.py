"""GPU utilisation and memory per GPU, read from NVML (``nvidia-ml-py``, ``import pynvml``) at scrape time.

Kept apart from the database collectors so that it needs nothing but ``prometheus_client`` (and ``pynvml`` where a
GPU is): a check on a GPU machine can import it without the rest of the gateway's stack.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class GpuCollector(Collector):
    """Utilisation and memory of every GPU NVML sees (``nvidia-ml-py``), read at scrape time.

    Without NVML (no driver, no GPU, the package missing) the families are there with no series. NVML is
    initialised on the first scrape, once; ``nvml`` replaces the ``pynvml`` module (tests). NVML sees every GPU of
    the host, whatever ``CUDA_VISIBLE_DEVICES`` says; ``gpu`` is NVML's index.
    """

    def __init__(self, errors: Counter, nvml: Any = None) -> None:
        self.errors = errors
        self._nvml = nvml
        self._ready: bool | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        labels = ["gpu", "name"]
        return (
            GaugeMetricFamily("mediagate_gpu_utilization_percent",
                              "Percent of the last sample period in which a kernel ran on the GPU (NVML).",
                              labels=labels),
            GaugeMetricFamily("mediagate_gpu_memory_used_bytes", "GPU memory in use, by every process.",
                              labels=labels),
            GaugeMetricFamily("mediagate_gpu_memory_total_bytes", "GPU memory installed.", labels=labels),
        )

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def _init(self) -> Any:
        """The NVML module, initialised; None where NVML cannot be used (decided once)."""
        with self._lock:
            if self._ready is None:
                try:
                    nvml = self._nvml if self._nvml is not None else importlib.import_module("pynvml")
                    nvml.nvmlInit()
                except Exception as exc:  # noqa: BLE001 - ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded...
                    log.info("no GPU metrics: NVML is not available (%s: %s)", type(exc).__name__, exc)
                    self._ready = False
                else:
                    self._nvml, self._ready = nvml, True
            return self._nvml if self._ready else None

    def collect(self) -> Iterator[Metric]:
        util, used, total = self._families()
        nvml = self._init()
        if nvml is not None:
            try:
                count = nvml.nvmlDeviceGetCount()
            except Exception:  # noqa: BLE001 - NVMLError (driver gone, GPU lost): no GPU series this scrape
                log.warning("NVML could not count GPUs", exc_info=True)
                self.errors.labels("gpu").inc()
                count = 0
            for index in range(count):
                try:
                    handle = nvml.nvmlDeviceGetHandleByIndex(index)
                    name = nvml.nvmlDeviceGetName(handle)
                    rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                except Exception:  # noqa: BLE001 - one GPU that does not answer drops its own series only
                    log.warning("NVML could not read GPU %d", index, exc_info=True)
                    self.errors.labels("gpu").inc()
                    continue
                labels = [str(index), name.decode() if isinstance(name, bytes) else str(name)]
                util.add_metric(labels, float(rates.gpu))
                used.add_metric(labels, float(memory.used))
                total.add_metric(labels, float(memory.total))
        yield from (util, used, total)
