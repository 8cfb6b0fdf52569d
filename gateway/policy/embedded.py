"""In-process Rego evaluation with regorus, one engine per thread.

A regorus ``Engine`` must only be used from the thread that created it (another thread panics), so each worker
thread compiles its own engine from the loaded bundle on first use. Compiling the bundle takes milliseconds.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import regorus

from gateway.policy.base import PolicyEngineError
from gateway.policy.bundle import Bundle


def clean_regorus_error(exc: BaseException) -> str:
    """regorus appends a Rust stack trace to its messages; keep the part a person can act on."""
    return str(exc).split("Stack backtrace:")[0].strip()


def compile_bundle(bundle: Bundle, *, with_tests: bool = False) -> regorus.Engine:
    engine = regorus.Engine()
    sources = bundle.policies + (bundle.tests if with_tests else ())
    for rel, source in sources:
        try:
            engine.add_policy(rel, source)
        except RuntimeError as exc:
            raise PolicyEngineError(clean_regorus_error(exc)) from exc
    engine.add_data(bundle.data)
    return engine


class EmbeddedRegoEngine:
    """``PolicyEngine`` on regorus. Safe under concurrent requests: engines are thread-local."""

    name = "embedded"

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.revision = bundle.label
        self._local = threading.local()
        compile_bundle(bundle)  # fail at start-up, not on the first request, when the bundle does not compile

    def _engine(self) -> regorus.Engine:
        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = self._local.engine = compile_bundle(self.bundle)
        return engine

    def evaluate(self, path: str, input_doc: Mapping[str, Any]) -> Any:
        engine = self._engine()
        try:
            engine.set_input(dict(input_doc))
            value = engine.eval_rule(path)
        except RuntimeError as exc:
            raise PolicyEngineError(f"{path}: {clean_regorus_error(exc)}") from exc
        if value is None:
            # Undefined is not "no objection": fail closed.
            raise PolicyEngineError(f"{path} is undefined for this input")
        return value

    def check(self) -> None:
        self._engine()
