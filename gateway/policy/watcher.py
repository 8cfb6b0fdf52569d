"""Hot reload: a change in the bundle directory proposes the directory as the next bundle.

``watchfiles`` (Rust ``notify``) reports changes; edits that arrive together are debounced into one proposal, so
an editor's save-rename-chmod dance or a ``git pull`` of several files is tested and activated once. The proposal
goes through the same gate as an upload: a broken edit is refused and audited, and the active bundle stays.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import watchfiles

from gateway.policy.bundle import load_bundle
from gateway.policy.manager import PolicyManager

log = logging.getLogger(__name__)


class BundleWatcher:
    def __init__(self, manager: PolicyManager, directory: Path, *, debounce_ms: int = 300) -> None:
        self.manager = manager
        self.directory = Path(directory)
        self.debounce_ms = debounce_ms
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy-watcher", daemon=True)
        self.proposals = 0  # how many changes were proposed (for tests and /readyz-style introspection)

    def start(self) -> None:
        """Start watching; returns once changes are being seen (or after 5 s)."""
        self._thread.start()
        self._ready.wait(timeout=5)

    def _run(self) -> None:
        try:
            for changes in watchfiles.watch(
                self.directory, stop_event=self._stop, debounce=self.debounce_ms, step=50, rust_timeout=200,
                yield_on_timeout=True, raise_interrupt=False,
            ):
                self._ready.set()  # the first (empty) yield comes once the OS watch is in place
                if not changes:
                    continue
                log.info("policy directory changed (%d files); proposing it", len(changes))
                try:
                    self.manager.propose(lambda: load_bundle(self.directory), source="directory")
                except Exception:  # noqa: BLE001 - the watcher must survive e.g. a failed audit write
                    log.exception("the changed policy directory could not be proposed")
                self.proposals += 1
        except Exception:  # noqa: BLE001 - e.g. the directory was removed: log it, hot reload stops
            log.exception("watching %s stopped", self.directory)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
