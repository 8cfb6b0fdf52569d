"""In-process Rego evaluation with regorus, on engines owned by dedicated threads.

A regorus ``Engine`` is bound to the thread that created it: using it from another thread panics, and dropping it
on another thread leaks it with an "unsendable" error. Thread-locals do not help, because Python frees a
thread-local's values on whichever thread happens to collect them. So each ``EmbeddedRegoEngine`` runs a few
owner threads; each compiles its own engine, evaluates the calls handed to it and drops its engine itself when
the adapter is closed. A hand-over costs tens of microseconds, far below anything else in a request.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import orjson
import regorus

from gateway.policy.base import EngineClosed, PolicyEngineError
from gateway.policy.bundle import Bundle


def clean_regorus_error(exc: BaseException) -> str:
    """regorus appends a Rust stack trace to its messages; keep the part a person can act on."""
    return str(exc).split("Stack backtrace:")[0].strip()


def compile_bundle(bundle: Bundle, *, with_tests: bool = False) -> regorus.Engine:
    """A new engine with every policy (and, for the test runner, every test) and the bundle's data."""
    engine = regorus.Engine()
    sources = bundle.policies + (bundle.tests if with_tests else ())
    for rel, source in sources:
        try:
            engine.add_policy(rel, source)
        except RuntimeError as exc:
            raise PolicyEngineError(clean_regorus_error(exc)) from exc
    engine.add_data(bundle.data)
    return engine


_Job = tuple[str, str, "Future[Any]"]  # (rule path, input as JSON text, the caller's future)


class EmbeddedRegoEngine:
    """``PolicyEngine`` on regorus. Safe under concurrent requests; ``close()`` stops the owner threads."""

    name = "embedded"

    def __init__(self, bundle: Bundle, *, workers: int = 2, timeout_s: float = 5.0) -> None:
        if workers < 1:
            raise ValueError(f"`workers` must be at least 1 but is {workers}")
        self.bundle = bundle
        self.revision = bundle.label
        self.timeout_s = timeout_s
        # Fail at start-up, not on the first request, when the bundle does not compile. This engine is created
        # and dropped on the calling thread, which is allowed.
        compile_bundle(bundle)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._lifecycle = threading.Lock()  # a job is queued before the stop sentinels or refused, never lost
        self._threads = [
            threading.Thread(target=self._serve, name=f"rego-{bundle.digest[:8]}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def _serve(self) -> None:
        engine = compile_bundle(self.bundle)  # owned by this thread from creation to drop
        while (job := self._jobs.get()) is not None:
            path, input_json, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                engine.set_input_json(input_json)
                future.set_result(engine.eval_rule(path))
            except RuntimeError as exc:
                future.set_exception(PolicyEngineError(f"{path}: {clean_regorus_error(exc)}"))
            except BaseException as exc:  # noqa: BLE001 - a Rust panic (PanicException) must not kill the thread
                future.set_exception(PolicyEngineError(f"{path}: the engine failed: {clean_regorus_error(exc)}"))
                engine = compile_bundle(self.bundle)  # a panicked engine is not trusted again
        del engine  # dropped here, on its own thread

    def evaluate(self, path: str, input_doc: Mapping[str, Any]) -> Any:
        # Serialised here, in the caller's thread: orjson refuses what is not JSON (a lone UTF-16 surrogate in a
        # string, which regorus's own conversion of Python objects crashes the process on) and is faster than it.
        try:
            input_json = orjson.dumps(input_doc).decode()
        except orjson.JSONEncodeError as exc:
            raise PolicyEngineError(f"{path}: the input is not valid JSON: {exc}") from exc
        future: Future[Any] = Future()
        with self._lifecycle:
            if self._closed:
                raise EngineClosed(f"the embedded engine for revision {self.revision} is closed")
            self._jobs.put((path, input_json, future))
        try:
            value = future.result(timeout=self.timeout_s)
        except FutureTimeout as exc:
            future.cancel()
            raise PolicyEngineError(f"{path}: no decision within {self.timeout_s} s") from exc
        if value is None:
            # Undefined is not "no objection": fail closed.
            raise PolicyEngineError(f"{path} is undefined for this input")
        return value

    def check(self) -> None:
        if self._closed or not all(t.is_alive() for t in self._threads):
            raise PolicyEngineError(f"the embedded engine for revision {self.revision} is not running")

    def close(self) -> None:
        """Stop the owner threads; each drops its engine on its own thread. Idempotent."""
        with self._lifecycle:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=self.timeout_s)
