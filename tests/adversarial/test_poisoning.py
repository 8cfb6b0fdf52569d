"""The poisoning suite against a real in-process gateway: each hostile input is refused with a reason, none kills it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adversarial.poisoning import CaseResult, http_cases, run_poisoning, template_cases


def test_every_hostile_input_is_quarantined_and_the_gateway_survives(make_gateway: Any, tmp_path: Path) -> None:
    gw = make_gateway(job_workers=1)
    result = run_poisoning(gw.client, gw.key("demo", "app"), gw.key("demo", "auditor"), tmp_path, max_seconds=60)
    assert result.failures == [], "\n".join(f"{c.family}/{c.name}: {c.outcome} ({c.reason})" for c in result.failures)
    assert result.gateway_alive
    families = {c.family for c in result.cases}
    assert families == {"templates", "prompts", "images", "jobs"}
    assert len(result.cases) == len(template_cases()) + len(http_cases()) + 1
    by_name = {c.name: c for c in result.cases}
    # the two crashes this suite found stay fixed, each refused with its rule
    assert by_name["lone surrogate"].outcome == "422 unicode"
    assert "nested too deeply" in by_name["nesting bomb"].outcome
    assert by_name["decompression bomb -> /v1/score"].outcome == "413 max_pixels"
    assert result.as_dict()["failures"] == 0


def test_a_failure_is_reported_not_hidden(make_gateway: Any, tmp_path: Path) -> None:
    """The checker itself: a gateway that answers 200 to garbage fails the case, naming why."""
    from adversarial.poisoning import HttpCase, _answer_ok

    case = HttpCase("images", "x", "POST", "/v1/score", dict)
    assert _answer_ok(case, 500, {"type": "t", "detail": "d"}) == (False, "server error 500")
    assert _answer_ok(case, 200, {"id": "x"}) == (False, "accepted with 200")
    assert _answer_ok(case, 422, {"detail": "no type"}) == (False, "a 4xx without a problem+json body")
    lenient = HttpCase("prompts", "x", "POST", "/v1/generations", dict, policy_may_decide=True)
    assert _answer_ok(lenient, 200, {"decision": "release"}) == (True, "")
    assert _answer_ok(lenient, 403, {"codes": []}) == (False, "a 200/403 without a decision or codes")
    assert CaseResult("a", "b", False, "c", 1.0, "d").as_dict()["reason"] == "d"
