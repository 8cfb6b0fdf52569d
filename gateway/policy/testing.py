"""What ``opa test`` and ``opa check`` do, on regorus: run a bundle's ``test_*`` rules, measure coverage, and find
every error a trust team should see before a bundle is activated, as ``file:line:col: message``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

import regorus

from gateway.policy.base import ENTRYPOINTS, PolicyEngineError
from gateway.policy.bundle import Bundle
from gateway.policy.docs import lint
from gateway.policy.embedded import compile_bundle

_TEST_RULE = re.compile(r"^(test_\w+)\b", re.MULTILINE)
_LOCATION = re.compile(r"-->\s*(?P<file>[^\s:]+):(?P<line>\d+):(?P<col>\d+)")
_MESSAGE = re.compile(r"^error:\s*(?P<msg>.+)$", re.MULTILINE)

REQUIRED_ENTRYPOINTS = tuple(path.removeprefix("data.") for path in ENTRYPOINTS.values())


@dataclass(frozen=True)
class RegoTestResult:
    file: str
    package: str
    name: str
    passed: bool
    detail: str = ""
    duration_s: float = 0.0
    prints: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return f"data.{self.package}.{self.name}"


@dataclass(frozen=True)
class TestRun:
    results: tuple[RegoTestResult, ...]
    coverage: dict[str, float] = field(default_factory=dict)  # policy file -> covered share of its lines, 0..1

    @property
    def failed(self) -> tuple[RegoTestResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    @property
    def ok(self) -> bool:
        """Every test passed, and there was at least one: an untested bundle is not a tested one."""
        return bool(self.results) and not self.failed

    def summary(self) -> dict[str, object]:
        return {
            "passed": len(self.results) - len(self.failed), "failed": len(self.failed),
            "failures": [{"test": r.path, "file": r.file, "detail": r.detail} for r in self.failed],
        }


def format_error(message: str) -> str:
    """regorus' caret diagram -> ``file:line:col: message``, the form editors and CI annotations understand."""
    message = message.split("Stack backtrace:")[0].strip()
    where, what = _LOCATION.search(message), _MESSAGE.search(message)
    if where is None:
        return message
    text = what.group("msg").strip() if what else message.splitlines()[-1].strip()
    return f"{where.group('file')}:{where.group('line')}:{where.group('col')}: {text}"


def run_bundle_tests(bundle: Bundle, *, coverage: bool = False) -> TestRun:
    """Evaluate every ``test_*`` rule of every ``*_test.rego``; a test passes only when its rule is ``true``."""
    try:
        engine = compile_bundle(bundle, with_tests=True)
    except PolicyEngineError as exc:
        raise PolicyEngineError(format_error(str(exc))) from exc
    engine.set_gather_prints(True)
    engine.set_enable_coverage(coverage)
    packages = bundle.packages()
    results: list[RegoTestResult] = []
    for rel, source in bundle.tests:
        package = packages[rel]
        if not package:
            results.append(RegoTestResult(rel, "", "<package>", False, "no package declaration"))
            continue
        for name in dict.fromkeys(_TEST_RULE.findall(source)):  # a rule may have several bodies
            start = time.perf_counter()
            try:
                value = engine.eval_rule(f"data.{package}.{name}")
                detail = "" if value is True else f"evaluated to {value!r}" if value is not None else "undefined"
            except RuntimeError as exc:
                value, detail = None, format_error(str(exc))
            prints = tuple(engine.take_prints())
            results.append(RegoTestResult(
                rel, package, name, value is True, detail, time.perf_counter() - start, prints,
            ))
    shares = _coverage(engine, bundle) if coverage else {}
    return TestRun(tuple(results), shares)


def _coverage(engine: regorus.Engine, bundle: Bundle) -> dict[str, float]:
    """Covered share of the executable lines of each policy file (test files excluded, as ``opa test`` does)."""
    report = json.loads(engine.get_coverage_report_as_json())
    policy_files = {rel for rel, _ in bundle.policies}
    shares = {}
    for entry in report.get("files", []):
        if entry["path"] in policy_files:
            covered, missed = len(entry.get("covered", [])), len(entry.get("not_covered", []))
            shares[entry["path"]] = covered / (covered + missed) if covered + missed else 1.0
    return dict(sorted(shares.items()))


def check_bundle(bundle: Bundle) -> list[str]:
    """Every problem ``mediagate policy check`` reports, as ``file:line:col: message`` lines; empty when clean.

    regorus parses modules one by one but resolves rules lazily, so after parsing each package's document is
    evaluated once on an empty input: unsafe variables, unknown functions, conflicting rules and recursion show
    up then. The required entrypoints must exist, and the house conventions hold (``gateway.policy.docs.lint``).
    """
    problems: list[str] = []
    engine = regorus.Engine()
    for rel, source in bundle.policies + bundle.tests:
        try:
            engine.add_policy(rel, source)
        except RuntimeError as exc:
            problems.append(format_error(str(exc)))
    problems += lint(bundle)
    if problems:
        return list(dict.fromkeys(problems))
    engine.add_data(bundle.data)
    engine.set_input({})
    for package in sorted(set(bundle.packages().values())):
        try:
            engine.eval_query_as_json(f"data.{package}")
        except RuntimeError as exc:
            problems.append(format_error(str(exc)))
    defined = set(engine.get_packages())
    for entrypoint in REQUIRED_ENTRYPOINTS:
        package = "data." + entrypoint.rsplit(".", 1)[0]
        rule = entrypoint.rsplit(".", 1)[1]
        if package not in defined or not any(
            re.search(rf"^{rule}\s*(:=|=|if\b|contains\b|\{{)", src, re.MULTILINE)
            for rel, src in bundle.policies if bundle.packages()[rel] == package.removeprefix("data.")
        ):
            problems.append(f"{bundle.origin}: the bundle must define data.{entrypoint}, which the gateway evaluates")
    return list(dict.fromkeys(problems))  # a broken rule shows up once per package that reaches it
