"""The conformance oracle: the bundle under regorus (what serves here) and under OPA's own Go engine (what serves in
production on an OPA server) must agree, or the build fails.

OPA runs in-process through ``opa-golib-python-bindings`` (import ``opa_bindings``), a test-only dependency: it has
``http.send`` enabled, so it stays out of ``gateway/``. Three checks:

a) every ``test_*`` rule of the bundle passes under both engines, as ``opa test`` would run it;
b) a decision table of realistic inputs gives the same ``mediagate.pre`` / ``mediagate.release`` decisions;
c) the comparison can fail: policies that the two engines are known to evaluate differently are told apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import regorus

from gateway.policy.base import PolicyEngineError
from gateway.policy.bundle import Bundle, load_bundle
from gateway.policy.embedded import EmbeddedRegoEngine
from gateway.policy.testing import run_bundle_tests
from gateway.settings import REPO_POLICIES
from quality.prompt_text import normalize_prompt

opa_bindings = pytest.importorskip(
    "opa_bindings",
    reason="the conformance oracle needs OPA's Go engine: "
    "pip install --ignore-requires-python opa-golib-python-bindings==0.4.4",
)

_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_\w+)\b", re.MULTILINE)


# -- the comparison ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one engine made of one query: a JSON-normalised value, ``undefined``, or an ``error``."""

    kind: str  # "value" | "undefined" | "error"
    value: Any = None
    detail: str = ""

    def same_as(self, other: Outcome) -> bool:
        """Values must be equal; an error is an error and undefined is undefined, whatever the engine's wording."""
        return (self.kind, self.value) == (other.kind, other.value)


def normalise(value: Any, *, unordered: bool = False) -> Any:
    """JSON-normalise a value: regorus hands Rego sets back as Python sets, OPA as lists in its own order, so sets
    become lists sorted by their JSON text. ``unordered`` does the same for a set-valued document that arrives as a
    list. Arrays keep their order: a decision's ``deny`` order reaches the problem+json response and the audit hash.
    """

    def encode(v: Any) -> Any:
        if isinstance(v, set | frozenset):
            return sorted(v, key=lambda item: json.dumps(item, sort_keys=True, default=encode))
        raise TypeError(f"not JSON: {type(v).__name__}")

    value = json.loads(json.dumps(value, sort_keys=True, default=encode))
    if unordered and isinstance(value, list):
        value = sorted(value, key=lambda item: json.dumps(item, sort_keys=True))
    return value


def regorus_outcome(engine: EmbeddedRegoEngine, path: str, input_doc: Mapping[str, Any], *, unordered: bool = False
                    ) -> Outcome:
    try:
        return Outcome("value", normalise(engine.evaluate(path, input_doc), unordered=unordered))
    except PolicyEngineError as exc:
        return Outcome("undefined" if "undefined" in str(exc) else "error", detail=str(exc))


def opa_outcome(engine: Any, path: str, input_doc: Mapping[str, Any] | None, *, unordered: bool = False) -> Outcome:
    try:
        value = engine.eval_document(path.removeprefix("data."), input_doc)
        return Outcome("value", normalise(value, unordered=unordered))
    except opa_bindings.OpaUndefinedError as exc:
        return Outcome("undefined", detail=str(exc))
    except opa_bindings.OpaError as exc:
        return Outcome("error", detail=str(exc))


def assert_same(path: str, regorus_side: Outcome, opa_side: Outcome) -> None:
    if not regorus_side.same_as(opa_side):
        pytest.fail(
            f"regorus and OPA disagree on {path}:\n  regorus: {regorus_side.kind} {regorus_side.value!r} "
            f"{regorus_side.detail}\n  OPA:     {opa_side.kind} {opa_side.value!r} {opa_side.detail}",
            pytrace=False,
        )


def opa_engine(modules: tuple[tuple[str, str], ...], data: Mapping[str, Any]) -> Any:
    """OPA's engine holding ``modules`` and ``data``, as ``opa run -b`` would load them. Compile errors surface on the
    first evaluation (``prepare_error``), as they would when OPA activates the bundle."""
    engine = opa_bindings.OpaEngine()
    try:
        for rel, source in modules:
            engine.add_policy(rel, source)
        engine.add_data(dict(data))
    except BaseException:
        engine.close()
        raise
    return engine


# -- fixtures ----------------------------------------------------------------------------------------------------

BUNDLE: Bundle = load_bundle(REPO_POLICIES)


def discovered_tests(bundle: Bundle) -> list[str]:
    """``<package>.<test rule>`` of every test, found the way ``opa test`` finds them (rules named ``test_*``)."""
    found = []
    for rel, source in bundle.tests:
        package = _PACKAGE.search(source)
        assert package is not None, f"{rel}: no package declaration"
        found += [f"{package.group(1)}.{name}" for name in dict.fromkeys(_TEST_RULE.findall(source))]
    return found


@pytest.fixture(scope="module")
def regorus_engine() -> Iterator[EmbeddedRegoEngine]:
    engine = EmbeddedRegoEngine(BUNDLE, workers=1)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def oracle() -> Iterator[Any]:
    """OPA with the policies only, as the gateway pushes them (push mode uploads no tests)."""
    engine = opa_engine(BUNDLE.policies, BUNDLE.data)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def oracle_with_tests() -> Iterator[Any]:
    """OPA with policies and tests, as ``opa test`` and ``opa run -b`` load the bundle directory."""
    engine = opa_engine(BUNDLE.policies + BUNDLE.tests, BUNDLE.data)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def regorus_test_results() -> dict[str, tuple[bool, str]]:
    return {f"{r.package}.{r.name}": (r.passed, r.detail) for r in run_bundle_tests(BUNDLE).results}


# -- a) the bundle's own tests -----------------------------------------------------------------------------------


def test_both_runners_find_the_same_tests(regorus_test_results: dict[str, tuple[bool, str]]) -> None:
    assert discovered_tests(BUNDLE), "the bundle has no test_* rules"
    assert sorted(regorus_test_results) == sorted(discovered_tests(BUNDLE))


@pytest.mark.parametrize("test_rule", discovered_tests(BUNDLE))
def test_rego_test_passes_under_opa_and_regorus(
    test_rule: str, oracle_with_tests: Any, regorus_test_results: dict[str, tuple[bool, str]]
) -> None:
    opa = opa_outcome(oracle_with_tests, f"data.{test_rule}", None)
    opa_passed = opa.kind == "value" and opa.value is True
    opa_detail = opa.detail or f"evaluated to {opa.value!r}"
    regorus_passed, regorus_detail = regorus_test_results.get(test_rule, (False, "not run by run_bundle_tests"))
    if opa_passed != regorus_passed:
        pytest.fail(f"engines disagree on {test_rule}: OPA {'passes' if opa_passed else 'fails: ' + opa_detail}; "
                    f"regorus {'passes' if regorus_passed else 'fails: ' + regorus_detail}", pytrace=False)
    assert opa_passed, f"{test_rule} fails under both engines: OPA: {opa_detail}; regorus: {regorus_detail}"


# -- b) the decision table ---------------------------------------------------------------------------------------

CONFIG: dict[str, Any] = BUNDLE.data["mediagate"]["config"]


def features(text: str, **concepts: float) -> dict[str, Any]:
    """``input.features`` as the gateway computes them: the text's readings plus a similarity per banned concept
    (low unless given; keys use ``__`` for the ``.`` of concept ids)."""
    similarities = {cid: 0.05 for cid in CONFIG.get("concepts", {})}
    similarities.update({k.replace("__", "."): v for k, v in concepts.items()})
    return {**normalize_prompt(text).as_dict(), "concepts": similarities, "model": {"name": "test", "revision": "1"}}


def pre_input(text: str = "a red bicycle on a quiet street", *, tenant: str = "demo", feats: Any = None,
              context: Mapping[str, Any] | None = None, **request: Any) -> dict[str, Any]:
    req = {"kind": "prompt", "model": "demo-tiny", "prompt": text, "negative_prompt": None, "template": None,
           "fields": {}, "locale": None, "n": 1, "width": 256, "height": 256, "seed": 7, "text": text, "brand": None,
           **request}
    doc: dict[str, Any] = {
        "principal": {"tenant": tenant, "role": "app", "key_id": "k1"},
        "request": req,
        "features": features(text) if feats is None else feats,
        "context": {"time": "2026-11-25T10:00:00+00:00", "usage": {"template_assets": 0}, **(context or {})},
    }
    if feats == "omit":
        del doc["features"]
    return doc


def template_input(template: str = "spring-sale", **overrides: Any) -> dict[str, Any]:
    return pre_input("Spring sale: 20% off", kind="template", model="template", template=template,
                     fields={"headline": "Spring sale", "offer": "20% off"}, **overrides)


PRE_CASES: dict[str, dict[str, Any]] = {
    "clean prompt": pre_input(),
    "at every limit": pre_input(n=4, width=512, height=512),
    "non-latin text": pre_input("un café au lait, 東京の夜景, ☕"),
    "unknown tenant gets defaults": pre_input(tenant="nobody"),
    "banned term": pre_input("a scene full of gore"),
    "banned term in capitals": pre_input("GORE at night"),
    "banned term, leetspeak": pre_input("a scene full of g0re"),
    "banned phrase": pre_input("stop child abuse campaign"),
    "substring of a banned term is fine": pre_input("gorey mountain view"),
    "tenant's own banned term": pre_input("logo of competitorco", tenant="acme"),
    "another tenant's banned term is fine": pre_input("logo of competitorco"),
    "banned concept": pre_input("a dark alley", feats=features("a dark alley", violence__gore=0.91)),
    "concept just under its threshold": pre_input("a dark alley", feats=features("a dark alley", violence__gore=0.59)),
    "features missing": pre_input(feats="omit"),
    "one concept missing": pre_input(feats={**features("x"), "concepts": {}}),
    "prompt too long": pre_input("a lake " * 200),
    "model not allowed": pre_input(model="sdxl"),
    "tenant's model allow-list": pre_input(tenant="restricted"),
    "n over max": pre_input(n=5),
    "tenant's own max n": pre_input(tenant="restricted", model="template", n=2),
    "width over max": pre_input(width=1024),
    "height over max": pre_input(height=520),
    "several denials at once": pre_input("gore", n=9, model="x", width=4096),
    "template in its campaign window": template_input(context={"usage": {"template_assets": 10}}),
    "template before its campaign": template_input(context={"time": "2026-01-01T00:00:00Z"}),
    "template without a request time": template_input(context={"time": None}),
    "new template is reviewed": template_input(),
    "template size is not checked": template_input(width=4096),
    "public figure is reviewed": pre_input("a portrait of taylor swift"),
    "given name and surname are reviewed": pre_input("a photo of Maria Lopez at work"),
    "mixed scripts are reviewed": pre_input("a g\u0430rden party"),
    "invisible characters": pre_input("go\u200bre in the street"),
    "no principal: undefined": {"request": pre_input()["request"]},
    # Inputs on which the engines' built-ins differ (see KNOWN_DIVERGENCES): the bundle must not depend on them.
    "given name with a dotted capital I": pre_input("a photo of \u0130van Petrov at the beach"),
    "banned phrase with a dotted capital I": pre_input("CH\u0130LD ABUSE poster"),
    "greek capitals": pre_input("\u039f\u0394\u039f\u03a3 sign at night"),
}

def card(nsfw: float | None = 0.01, quality: float | None = 0.8, **scores: Any) -> dict[str, Any]:
    found = {"nsfw": {"nsfw": nsfw, "sfw": 1 - nsfw} if nsfw is not None else None,
             "perceptual": {"quality": quality} if quality is not None else None, **scores}
    failed = {name: "RuntimeError: boom" for name, value in found.items() if value is None}
    return {"complete": not failed, "scores": {k: v for k, v in found.items() if v is not None}, "failed": failed}


def release_input(*cards: dict[str, Any], tenant: str = "demo", brand: str | None = None,
                  obligations: Mapping[str, Any] | None = None) -> dict[str, Any]:
    base = pre_input(tenant=tenant, brand=brand)
    return {**base, "obligations": {"watermark": True, "max_n": 4, "force_review": False, "review_reasons": [],
                                    **(obligations or {})},
            "images": [{"index": i, "card": c} for i, c in enumerate(cards)]}


RELEASE_CASES: dict[str, dict[str, Any]] = {
    "clean image": release_input(card()),
    "nsfw over reject threshold": release_input(card(0.97)),
    "nsfw in the grey zone": release_input(card(0.5)),
    "nsfw at the review threshold": release_input(card(0.4)),
    "low quality": release_input(card(quality=0.05)),
    "one bad image holds the batch": release_input(card(), card(0.6)),
    "reject wins over review": release_input(card(0.9, 0.05)),
    "no images": release_input(),
    "incomplete card": release_input(card(nsfw=None)),
    "forced review carries the pre reasons": release_input(card(), obligations={
        "force_review": True, "review_reasons": [{"code": "review.person_name", "msg": "m", "rule": "r"}]}),
    "tenant thresholds": release_input(card(0.3), tenant="acme"),
    "brand below its minimum": release_input(card(brand={"score": 0.4}), brand="acme-premium"),
    "brand without a brand score": release_input(card(), brand="acme-premium"),
    "banned words rendered": release_input(card(ocr={"banned_words": 1, "garbled": 0.1})),
    "garbled text": release_input(card(ocr={"banned_words": 0, "garbled": 0.7})),
    "tiny probabilities": release_input(card(1.2e-07, 0.99999)),
    "many images": release_input(*(card(i / 10, 1 - i / 10) for i in range(10))),
    # Scores with no fraction and scores on a rounding tie: number formatting differs between the engines.
    "certainly nsfw": release_input(card(1.0)),
    "black image": release_input(card(quality=0.0)),
    "quality on a rounding tie": release_input(card(quality=0.0625)),
    "all text garbled": release_input(card(ocr={"banned_words": 0, "garbled": 1.0})),
}


@pytest.mark.parametrize("case", PRE_CASES)
def test_pre_decision_is_the_same_under_both_engines(
    case: str, regorus_engine: EmbeddedRegoEngine, oracle: Any
) -> None:
    path, doc = "data.mediagate.pre.decision", PRE_CASES[case]
    assert_same(path, regorus_outcome(regorus_engine, path, doc), opa_outcome(oracle, path, doc))


@pytest.mark.parametrize("case", RELEASE_CASES)
def test_release_decision_is_the_same_under_both_engines(
    case: str, regorus_engine: EmbeddedRegoEngine, oracle: Any
) -> None:
    path, doc = "data.mediagate.release.decision", RELEASE_CASES[case]
    assert_same(path, regorus_outcome(regorus_engine, path, doc), opa_outcome(oracle, path, doc))


def test_set_valued_documents_are_compared_as_sets(regorus_engine: EmbeddedRegoEngine, oracle: Any) -> None:
    path = "data.mediagate.pre.allowed_templates"
    doc = {"principal": {"tenant": "demo"}, "templates": ["spring-sale", "a-template", "product-square"]}
    regorus_side = regorus_outcome(regorus_engine, path, doc, unordered=True)
    assert_same(path, regorus_side, opa_outcome(oracle, path, doc, unordered=True))
    assert regorus_side.value == ["a-template", "product-square", "spring-sale"]


def test_a_few_stable_facts_hold_under_opa(oracle: Any) -> None:
    """The table above only compares engines; these facts pin down that both are right, not merely alike."""
    pre = "mediagate.pre.decision"
    assert oracle.eval_document(pre, PRE_CASES["clean prompt"])["allow"] is True
    denied = oracle.eval_document(pre, PRE_CASES["several denials at once"])
    assert denied["allow"] is False
    assert {"prompt.banned_term", "request.n_exceeds_max", "model.not_allowed"} <= {d["code"] for d in denied["deny"]}
    missing = oracle.eval_document(pre, PRE_CASES["features missing"])
    assert missing["allow"] is False, "a request without prompt features must be denied (fail closed)"
    release = "mediagate.release.decision"
    assert oracle.eval_document(release, RELEASE_CASES["clean image"])["outcome"] == "release"
    assert oracle.eval_document(release, RELEASE_CASES["nsfw over reject threshold"])["outcome"] == "reject"
    assert oracle.eval_document(release, RELEASE_CASES["incomplete card"])["outcome"] != "release"
    assert oracle.eval_document(release, RELEASE_CASES["no images"])["outcome"] != "release"


# -- c) the comparison can fail ----------------------------------------------------------------------------------


def outcomes(source: str, path: str = "data.t.out", input_doc: Mapping[str, Any] | None = None,
             opa_source: str | None = None) -> tuple[Outcome, Outcome]:
    """``(regorus, OPA)`` for a one-module policy (OPA may get a different module, to prove the comparison bites)."""
    plain = regorus.Engine()  # a plain engine on this thread: the policy is tiny and used once
    try:
        plain.add_policy("t.rego", source)
        plain.set_input(dict(input_doc or {}))
        value = plain.eval_rule(path)  # None: undefined (regorus' Python binding also maps null to None)
        regorus_side = Outcome("value", normalise(value)) if value is not None else Outcome("undefined")
    except RuntimeError as exc:
        regorus_side = Outcome("error", detail=str(exc).split("Stack backtrace:")[0].strip())
    oracle = opa_engine((("t.rego", opa_source or source),), {})
    try:
        return regorus_side, opa_outcome(oracle, path, input_doc or {})
    finally:
        oracle.close()


def test_the_comparison_tells_two_different_policies_apart() -> None:
    regorus_side, opa_side = outcomes("package t\nout := 1", opa_source="package t\nout := 2")
    assert not regorus_side.same_as(opa_side)
    with pytest.raises(pytest.fail.Exception, match="regorus and OPA disagree"):
        assert_same("data.t.out", regorus_side, opa_side)
    assert Outcome("value", normalise({"a": {2, 1}})).same_as(Outcome("value", normalise({"a": [1, 2]})))


# Found with the oracle (OPA v1.20.2 as embedded in opa-golib-python-bindings 0.4.4, regorus 0.13 as
# gordon-to-regorus). Each one is a way a policy can decide differently in production than in tests here; the
# bundle must avoid them. When a new engine release removes one, this test says so: drop it from the list.
KNOWN_DIVERGENCES: dict[str, tuple[str, dict[str, Any] | None]] = {
    # OPA rewrites `not f(input.x)` to `t = input.x; not f(t)`, which is undefined when input.x is (OPA issue
    # #1877); regorus answers true. A fail-closed `not is_number(x)` check is fail-open on OPA. Use object.get.
    "not f(undefined) is undefined in OPA": ("out if not is_number(input.missing)", {}),
    # Declared but unused `every` key: a compile error in OPA (the whole bundle is refused), accepted by regorus.
    "unused every key": ("out if { every k, v in [1] { v > 0 } }", None),
    # Go's fmt gets an int64 for a number without a fraction: "%!f(int64=001)"; regorus: "1.000".
    "sprintf %.3f of an integral number": ('out := sprintf("%.3f", [1.0])', None),
    # Rounding ties: Go rounds the binary value half to even ("0.12"), regorus half up ("0.13").
    "sprintf %.2f on a tie": ('out := sprintf("%.2f", [0.125])', None),
    # Number formatting of %v: OPA "1e-07", regorus "0.0000001".
    "sprintf %v of a tiny float": ('out := sprintf("%v", [0.0000001])', None),
    # Go's simple case mapping vs Rust's full mapping: "i" vs "i̇" (i + combining dot) for U+0130.
    "lower of a dotted capital I": ('out := lower("\u0130")', None),
    # Rust lower-cases a word-final capital sigma to "ς", Go always to "σ".
    "lower of a final capital sigma": ('out := lower("\u039f\u0394\u039f\u03a3")', None),
    # OPA computes with arbitrary-precision decimals, regorus with f64.
    "decimal arithmetic": ("out := 0.1 + 0.2 == 0.3", None),
    # RE2 (OPA) classes are ASCII, Rust's regex classes are Unicode.
    "regex \\d on a non-ASCII digit": ('out := regex.match(`\\d`, "\u0663")', None),
    # Non-overlapping (OPA) vs overlapping (regorus) counting.
    "strings.count overlapping": ('out := strings.count("aaaa", "aa")', None),
    # OPA replaces all pairs in one pass; regorus one pair after another.
    "strings.replace_n": ('out := strings.replace_n({"a": "b", "b": "a"}, "ab")', None),
    # OPA: floor(-0.5) is 0 (and ceil(-0.5) is 1); regorus: -1 (and -0).
    "floor(-0.5)": ("out := floor(-0.5)", None),
    # Builtins OPA has and regorus (as built here) lacks.
    "crypto.sha256": ('out := crypto.sha256("abc")', None),
}


@pytest.mark.parametrize("case", KNOWN_DIVERGENCES)
def test_known_divergences_are_detected(case: str) -> None:
    rule, input_doc = KNOWN_DIVERGENCES[case]
    regorus_side, opa_side = outcomes(f"package t\n{rule}\n", input_doc=input_doc)
    assert not regorus_side.same_as(opa_side), f"{case!r} no longer diverges ({regorus_side}): drop it from the list"
