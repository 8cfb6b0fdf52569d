"""docs/policies.md stays true to the bundle, and the bundle keeps the house conventions."""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.policy.bundle import load_bundle
from gateway.policy.docs import lint, render_rules, rule_docs
from gateway.settings import REPO_POLICIES

DOC = Path(__file__).resolve().parents[2] / "docs" / "policies.md"


def test_rule_reference_in_docs_matches_the_bundle() -> None:
    text = DOC.read_text()
    generated = text.split("<!-- rules:begin -->\n", 1)[1].split("<!-- rules:end -->", 1)[0]
    assert generated == render_rules(load_bundle(REPO_POLICIES)), "run `mediagate policy doc` and paste it in"


def test_every_decision_rule_has_a_stable_code() -> None:
    bundle = load_bundle(REPO_POLICIES)
    assert lint(bundle) == []
    docs = [d for d in rule_docs(bundle) if d.rule in ("deny", "review", "reject")]
    assert len(docs) >= 20
    assert all(d.code and d.body_codes == (d.code,) for d in docs)
    codes = [d.code for d in docs]
    assert len(codes) == len(set(codes)), "each code belongs to one rule"


def test_lint_catches_a_missing_or_mismatched_code(tmp_path: Path) -> None:
    root = tmp_path / "p"
    shutil.copytree(REPO_POLICIES, root)
    rego = root / "mediagate/pre/pre.rego"
    text = rego.read_text()
    text = text.replace("#   code: prompt.too_long", "#   code: prompt.length", 1)
    text += '\ndeny contains {"code": "x.y", "msg": "m", "rule": "r"} if input.never\n'
    rego.write_text(text)
    problems = lint(load_bundle(root))
    assert any("custom.code 'prompt.length' but the rule's body sets ['prompt.too_long']" in p for p in problems)
    assert any("a deny rule needs # METADATA with custom.code" in p for p in problems)


def test_metadata_that_is_not_yaml_is_a_problem(tmp_path: Path) -> None:
    root = tmp_path / "p"
    shutil.copytree(REPO_POLICIES, root)
    rego = root / "mediagate/release/release.rego"
    rego.write_text(rego.read_text().replace("# title: No images", "# title: No images: none {at all}", 1))
    assert any("METADATA is not valid YAML" in p for p in lint(load_bundle(root)))
