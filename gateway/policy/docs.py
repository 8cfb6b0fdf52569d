"""The rules of a bundle as the trust team reads them, taken from the Rego's own ``# METADATA`` annotations.

``docs/policies.md`` embeds the generated rule reference between two markers, and a test keeps it equal to what
this module renders from ``policies/``, so the documentation cannot drift from the rules. ``lint`` enforces the
house conventions that make codes stable: every ``deny``/``review``/``reject`` rule carries a METADATA block
with ``custom.code``, and the code in its body is that same code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from gateway.policy.bundle import Bundle

DECISION_SETS = ("deny", "review", "reject")
_HEAD = re.compile(r"^(?P<name>[a-z_][\w]*)\b")
_CODE_IN_BODY = re.compile(r'"code":\s*"(?P<code>[^"]+)"')


@dataclass(frozen=True)
class RuleDoc:
    file: str
    line: int
    package: str
    rule: str  # the rule's name, e.g. "deny", "decision"
    title: str
    description: str
    code: str | None
    entrypoint: bool
    body_codes: tuple[str, ...]


def _annotations(source: str) -> list[tuple[int, dict[str, object], str]]:
    """(line of the rule head, parsed METADATA, head line) for every annotated rule or package."""
    lines = source.splitlines()
    found = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "# METADATA":
            i += 1
            continue
        block = []
        i += 1
        while i < len(lines) and lines[i].startswith("#"):
            block.append(lines[i][2:] if lines[i].startswith("# ") else lines[i][1:])
            i += 1
        try:
            meta = yaml.safe_load("\n".join(block)) or {}
        except yaml.YAMLError as exc:
            # OPA refuses a bundle whose annotations are not YAML; so do we (see lint).
            meta = {"__error__": " ".join(str(exc).split())}
        head = lines[i] if i < len(lines) else ""
        found.append((i + 1, meta if isinstance(meta, dict) else {"__error__": "METADATA is not a YAML mapping"},
                      head))
    return found


def _body(source: str, head_line: int) -> str:
    """The text of a rule from its head to the next blank line at column 0 after a closing brace."""
    lines = source.splitlines()[head_line - 1:]
    out = []
    for line in lines:
        out.append(line)
        if line.startswith("}"):
            break
    return "\n".join(out)


def rule_docs(bundle: Bundle) -> list[RuleDoc]:
    docs = []
    packages = bundle.packages()
    for rel, source in bundle.policies:
        for line, meta, head in _annotations(source):
            if "__error__" in meta or head.startswith("package "):
                continue
            match = _HEAD.match(head)
            if match is None:
                continue
            custom = meta.get("custom") if isinstance(meta.get("custom"), dict) else {}
            assert isinstance(custom, dict)
            code = custom.get("code")
            docs.append(RuleDoc(
                file=rel, line=line, package=packages[rel], rule=match.group("name"),
                title=str(meta.get("title", "")).strip(),
                description=" ".join(str(meta.get("description", "")).split()),
                code=str(code) if code is not None else None, entrypoint=meta.get("entrypoint") is True,
                body_codes=tuple(dict.fromkeys(m.group("code") for m in _CODE_IN_BODY.finditer(_body(source, line)))),
            ))
    return docs


def lint(bundle: Bundle) -> list[str]:
    """Convention problems as ``file:line: message``; the gateway refuses a bundle that has any."""
    problems = [
        f"{rel}:{line}: # METADATA is not valid YAML: {meta['__error__']}"
        for rel, source in bundle.policies + bundle.tests for line, meta, _ in _annotations(source)
        if "__error__" in meta
    ]
    annotated = {(d.file, d.line) for d in rule_docs(bundle)}
    for rel, source in bundle.policies:
        for number, text in enumerate(source.splitlines(), start=1):
            head = _HEAD.match(text)
            if head and head.group("name") in DECISION_SETS and " contains " in text and (rel, number) not in annotated:
                problems.append(f"{rel}:{number}: a {head.group('name')} rule needs # METADATA with custom.code")
    for doc in rule_docs(bundle):
        if doc.rule not in DECISION_SETS:
            continue
        if not doc.code:
            problems.append(f"{doc.file}:{doc.line}: {doc.rule} rule {doc.title!r} has no custom.code")
        elif doc.body_codes != (doc.code,):
            problems.append(
                f"{doc.file}:{doc.line}: custom.code {doc.code!r} but the rule's body sets {list(doc.body_codes)}"
            )
    return problems


def render_rules(bundle: Bundle) -> str:
    """Markdown tables of the entrypoints and of every deny/review/reject rule, by package."""
    docs = rule_docs(bundle)
    out = ["| entrypoint | what |", "|---|---|"]
    for d in docs:
        if d.entrypoint:
            out.append(f"| `data.{d.package}.{d.rule}` | {d.title}. {d.description} |".replace(" . ", " "))
    for package in sorted({d.package for d in docs}):
        rules = [d for d in docs if d.package == package and d.rule in DECISION_SETS]
        if not rules:
            continue
        out += ["", f"### `{package}`", "", "| code | outcome | rule | when |", "|---|---|---|---|"]
        for d in rules:
            when = f"{d.title}. {d.description}".strip().rstrip(".") + "."
            out.append(f"| `{d.code}` | {d.rule} | `{d.file}` | {when} |")
    return "\n".join(out) + "\n"
