"""The activation gate: what a candidate bundle must pass before it may decide anything."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.policy.base import PolicyEngineError
from gateway.policy.bundle import Bundle, BundleError
from gateway.policy.testing import TestRun, check_bundle, run_bundle_tests


@dataclass(frozen=True)
class GateResult:
    """A candidate passes when it loaded, has no problems (``check_bundle``: parse, lint, entrypoints) and at least
    one test, all passing. Anything less is refused with these details, and the active bundle stays."""

    bundle: Bundle | None
    problems: tuple[str, ...]
    tests: TestRun | None

    @property
    def ok(self) -> bool:
        return self.bundle is not None and not self.problems and self.tests is not None and self.tests.ok

    def detail(self) -> dict[str, Any]:
        return {"problems": list(self.problems), "tests": self.tests.summary() if self.tests else None}


def gate(load: Callable[[], Bundle]) -> GateResult:
    """Load, check and test a candidate. Never raises for a bad bundle: the result says what is wrong."""
    try:
        bundle = load()
    except BundleError as exc:
        return GateResult(None, (str(exc),), None)
    problems = check_bundle(bundle)
    if problems:
        return GateResult(bundle, tuple(problems), None)
    try:
        tests = run_bundle_tests(bundle)
    except PolicyEngineError as exc:
        return GateResult(bundle, (str(exc),), None)
    if not tests.results:
        return GateResult(bundle, ("the bundle has no test_* rules; an untested bundle is not activated",), tests)
    return GateResult(bundle, (), tests)
