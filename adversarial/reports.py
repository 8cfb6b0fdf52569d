"""The run's reports: ``report.json`` (everything), ``junit.xml`` (one test case per suite x target x budget, for CI
systems) and ``report.html`` (a page with the checks and example clean/perturbed images with their verdicts)."""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from adversarial.runner import Check, Report

VERDICT = {0: "pass", 1: "fail"}


def write_reports(report: Report, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "report.json", "junit": directory / "junit.xml", "html": directory / "report.html"}
    paths["json"].write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    paths["junit"].write_bytes(junit(report))
    paths["html"].write_text(page(report), encoding="utf-8")
    return paths


def _describe(check: Check) -> str:
    value = "n/a" if check.value is None else f"{check.value:.4g}"
    if check.limit is None:
        return f"{check.metric} = {value} (reported, no threshold)"
    relation = "<=" if check.kind == "max" else ">="
    return f"{check.metric} = {value}, threshold {relation} {check.limit:g}"


def junit(report: Report) -> bytes:
    """JUnit XML: a <testsuite> per suite, a <testcase> per check, <failure> where a threshold is violated."""
    root = ET.Element("testsuites", name=f"mediagate adversarial {report.profile}",
                      tests=str(len(report.checks)), failures=str(len(report.violations)),
                      time=f"{report.seconds:.3f}")
    for suite in dict.fromkeys(c.suite for c in report.checks):
        checks = [c for c in report.checks if c.suite == suite]
        element = ET.SubElement(root, "testsuite", name=suite, tests=str(len(checks)),
                                failures=str(sum(not c.passed for c in checks)),
                                time=f"{sum(c.seconds for c in checks):.3f}")
        for check in checks:
            case = ET.SubElement(element, "testcase", classname=f"adversarial.{suite}.{check.target}",
                                 name=check.budget, time=f"{check.seconds:.3f}")
            if not check.passed:
                failure = ET.SubElement(case, "failure", message=_describe(check), type="threshold")
                failure.text = json.dumps(check.details, default=str)[:4000]
            else:
                ET.SubElement(case, "system-out").text = _describe(check)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _row(check: Check) -> str:
    status = "pass" if check.passed else "FAIL"
    value = "" if check.value is None else f"{check.value:.4g}"
    bound = "" if check.limit is None else f"{'&le;' if check.kind == 'max' else '&ge;'} {check.limit:g}"
    return (f"<tr class='{status.lower()}'><td>{html.escape(check.suite)}</td><td>{html.escape(check.target)}</td>"
            f"<td>{html.escape(check.budget)}</td><td>{html.escape(check.metric)}</td><td>{value}</td>"
            f"<td>{bound}</td><td>{status}</td><td>{check.seconds:.2f}</td></tr>")


def _example(example: dict[str, Any]) -> str:
    clean, adversarial = VERDICT.get(example["clean_verdict"]), VERDICT.get(example["adversarial_verdict"])
    scores = ""
    if "clean_score" in example:
        scores = (f" (score {example['clean_score']:.3f} -> {example['adversarial_score']:.3f}, threshold "
                  f"{example['threshold']:g})")
    caption = html.escape(f"{example['target']} / {example['attack']}: clean {clean}, perturbed {adversarial}"
                          f"{scores}")
    return (f"<figure><img alt='clean' src='data:image/png;base64,{example['clean_png']}'>"
            f"<img alt='perturbed' src='data:image/png;base64,{example['adversarial_png']}'>"
            f"<figcaption>{caption}</figcaption></figure>")


def page(report: Report) -> str:
    verdict = "passed" if not report.violations else f"{len(report.violations)} threshold(s) violated"
    rows = "\n".join(_row(c) for c in report.checks)
    examples = "\n".join(_example(e) for e in report.extra.get("examples", [])) or "<p>No verdict flipped.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mediagate adversarial report ({html.escape(report.profile)})</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2rem; }} table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; }} tr.fail {{ background: #fdd; }}
figure {{ display: inline-block; margin: 0 1rem 1rem 0; }} img {{ width: 160px; image-rendering: pixelated; }}
</style></head><body>
<h1>Adversarial robustness: profile {html.escape(report.profile)}</h1>
<p>{html.escape(report.started)}, {report.seconds:.1f} s: <strong>{html.escape(verdict)}</strong>.</p>
<h2>Checks</h2>
<table><tr><th>suite</th><th>target</th><th>budget</th><th>metric</th><th>value</th><th>threshold</th>
<th>status</th><th>s</th></tr>
{rows}
</table>
<h2>Examples: clean and perturbed images whose verdict flipped</h2>
{examples}
</body></html>
"""
