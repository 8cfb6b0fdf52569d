"""Small shared pieces for background work and files: a periodic task thread and an atomic, fsynced file write."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, and it survives a crash."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Periodic:
    """Runs ``tick`` every ``interval_s`` seconds on a daemon thread until stopped. A failing tick is logged and
    retried at the next interval: background work must never take the process down."""

    def __init__(self, name: str, interval_s: float, tick: Callable[[], None]) -> None:
        self.name, self.interval_s, self.tick = name, interval_s, tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - see the class docstring
                log.exception("%s failed; retrying in %s s", self.name, self.interval_s)

    def start(self) -> None:
        if self.interval_s > 0 and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
