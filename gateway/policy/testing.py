"""Runs a bundle's ``test_*`` rules the way ``opa test`` does: a test passes when its rule evaluates to true."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.policy.bundle import Bundle
from gateway.policy.embedded import clean_regorus_error, compile_bundle

_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_\w+)\b", re.MULTILINE)


@dataclass(frozen=True)
class RegoTestResult:
    file: str
    package: str
    name: str
    passed: bool
    detail: str = ""


def run_bundle_tests(bundle: Bundle) -> list[RegoTestResult]:
    """Evaluate every ``test_*`` rule of every ``*_test.rego`` file; undefined or false is a failure."""
    engine = compile_bundle(bundle, with_tests=True)
    results: list[RegoTestResult] = []
    for rel, source in bundle.tests:
        match = _PACKAGE.search(source)
        if match is None:
            results.append(RegoTestResult(rel, "", "<package>", False, "no package declaration"))
            continue
        package = match.group(1)
        for name in dict.fromkeys(_TEST_RULE.findall(source)):  # a rule may have several bodies
            try:
                value = engine.eval_rule(f"data.{package}.{name}")
            except RuntimeError as exc:
                results.append(RegoTestResult(rel, package, name, False, clean_regorus_error(exc)))
                continue
            detail = "" if value is True else f"evaluated to {value!r}" if value is not None else "undefined"
            results.append(RegoTestResult(rel, package, name, value is True, detail))
    return results
