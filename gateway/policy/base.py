"""The ``PolicyEngine`` extension point and the frozen ``PolicyDecision`` it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Reason:
    """One rule's finding: a stable ``code`` the trust team owns, a human ``msg`` and the ``rule`` that fired."""

    code: str
    msg: str
    rule: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "msg": self.msg, "rule": self.rule}


@dataclass(frozen=True)
class PolicyDecision:
    """What a policy package decided. ``result`` is ``allow``/``deny`` (pre) or ``release``/``review``/``reject``."""

    stage: str
    result: str
    reasons: tuple[Reason, ...] = ()
    obligations: Mapping[str, Any] = field(default_factory=dict)
    revision: str = ""
    engine: str = ""
    id: str = ""  # decision id, unique per evaluation; recorded in the response and the audit entry

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stage": self.stage,
            "result": self.result,
            "reasons": [r.as_dict() for r in self.reasons],
            "obligations": dict(self.obligations),
            "revision": self.revision,
            "engine": self.engine,
        }


# The entrypoints the gateway evaluates, by stage; a bundle without them cannot serve.
ENTRYPOINTS = {"pre": "data.mediagate.pre.decision", "release": "data.mediagate.release.decision"}


def parse_decision(stage: str, raw: Any) -> tuple[str, tuple[Reason, ...], dict[str, Any]]:
    """Read an entrypoint's value: ``(result, reasons, obligations)``. Raises ``ValueError`` on any other shape.

    ``pre`` answers ``{allow, deny: [{code, msg, rule}], obligations}``; ``release`` answers
    ``{outcome: release|review|reject, reasons: [...]}``. A value of another shape is no decision at all.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"the {stage} decision is {type(raw).__name__}, not an object")
    if stage == "pre":
        if not isinstance(raw.get("allow"), bool):
            raise ValueError("the pre decision has no boolean `allow`")
        result, items = ("allow" if raw["allow"] else "deny"), raw["deny"]
        obligations = dict(raw.get("obligations") or {})
    else:
        result, items, obligations = raw["outcome"], raw["reasons"], {}
        if result not in ("release", "review", "reject"):
            raise ValueError(f"unknown release outcome {result!r}")
    reasons = tuple(Reason(str(r["code"]), str(r["msg"]), str(r.get("rule", ""))) for r in items)
    if result == "deny" and not reasons:
        raise ValueError("the pre decision denies without a reason")
    return result, reasons, obligations


class PolicyEngineError(Exception):
    """The engine could not produce a decision (error, timeout, undefined result). Callers fail closed."""


class EngineClosed(PolicyEngineError):
    """The engine was closed (e.g. replaced by a newer bundle) before it could take the call."""


class PolicyEngine(Protocol):
    """Evaluates a rule of the bundle (``data.<path>``) against an input document."""

    name: str
    revision: str

    def evaluate(self, path: str, input_doc: Mapping[str, Any]) -> Any:
        """Return the rule's value; raise ``PolicyEngineError`` when it is undefined or evaluation failed."""
        ...

    def check(self) -> None:
        """Raise ``PolicyEngineError`` unless the engine can answer right now (used by /readyz)."""
        ...

    def close(self) -> None:
        """Release the engine's threads and connections. Idempotent."""
        ...
