"""Bidirectional text for the template compositor: embedding levels and visual run order (Unicode UAX #9).

A slot's text is one paragraph with no explicit embeddings, so this implements the rules that apply to it: the
paragraph level (P2, P3), weak types (W1-W7), neutrals (N1, N2), implicit levels (I1, I2) and the reordering of
runs on a line (L2), per https://unicode.org/reports/tr9/. Explicit formatting characters (LRE, RLE, LRO, RLO, PDF
and the isolates LRI, RLI, FSI, PDI) are not interpreted: they count as neutrals (X9 would remove them). Each run
of one level is handed to Raqm with that level's direction, which shapes it and mirrors its brackets; this module
only decides which characters form a run and in which order the runs stand on the line.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

_STRONG = {"L": "L", "R": "R", "AL": "R"}
_NEUTRAL = {"B", "S", "WS", "ON", "BN", "LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}


def paragraph_level(text: str) -> int:
    """0 (left-to-right) or 1 (right-to-left): the direction of the first strong character (P2, P3)."""
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind in _STRONG:
            return 0 if kind == "L" else 1
    return 0


def embedding_levels(text: str, base: int) -> list[int]:
    """The resolved embedding level of each character of one paragraph at paragraph level ``base``."""
    sos = "R" if base % 2 else "L"
    types = [unicodedata.bidirectional(c) or "L" for c in text]
    _weak(types, sos)
    _neutral(types, sos)
    levels = []
    for kind in types:  # I1, I2
        if base % 2 == 0:
            levels.append(base + {"R": 1, "AN": 2, "EN": 2}.get(kind, 0))
        else:
            levels.append(base + (1 if kind in ("L", "EN", "AN") else 0))
    return levels


def _weak(types: list[str], sos: str) -> None:
    n = len(types)
    for i in range(n):  # W1: a non-spacing mark takes the type of what it marks
        if types[i] == "NSM":
            types[i] = types[i - 1] if i else sos
    last = sos
    for i in range(n):  # W2: European digits after Arabic letters are Arabic numbers; W3: AL is R
        if types[i] in ("L", "R", "AL"):
            last = types[i]
        if types[i] == "EN" and last == "AL":
            types[i] = "AN"
    types[:] = ["R" if t == "AL" else t for t in types]
    for i in range(1, n - 1):  # W4: one separator between two numbers of a kind joins them
        before, after = types[i - 1], types[i + 1]
        if types[i] == "ES" and before == after == "EN":
            types[i] = "EN"
        elif types[i] == "CS" and before == after and before in ("EN", "AN"):
            types[i] = before
    i = 0
    while i < n:  # W5: terminators (%, currency signs) next to European numbers are European numbers
        if types[i] != "ET":
            i += 1
            continue
        end = i
        while end < n and types[end] == "ET":
            end += 1
        if (i > 0 and types[i - 1] == "EN") or (end < n and types[end] == "EN"):
            types[i:end] = ["EN"] * (end - i)
        i = end
    types[:] = ["ON" if t in ("ES", "ET", "CS") else t for t in types]  # W6
    last = sos
    for i in range(n):  # W7: European numbers after left-to-right text are left-to-right
        if types[i] in ("L", "R"):
            last = types[i]
        if types[i] == "EN" and last == "L":
            types[i] = "L"


def _neutral(types: list[str], sos: str) -> None:
    """N1, N2: a run of neutrals between two strong types of one direction takes it; otherwise the paragraph's."""
    n = len(types)
    i = 0
    while i < n:
        if types[i] not in _NEUTRAL:
            i += 1
            continue
        end = i
        while end < n and types[end] in _NEUTRAL:
            end += 1
        before = _direction(types[i - 1]) if i > 0 else sos
        after = _direction(types[end]) if end < n else sos
        types[i:end] = [before if before == after else sos] * (end - i)
        i = end


def _direction(kind: str) -> str:
    return "L" if kind == "L" else "R"  # numbers count as right-to-left for neutrals (N1)


def visual_order(levels: Sequence[int]) -> list[int]:
    """Indexes of runs (given their levels, in logical order) in visual order, left to right (L2)."""
    order = list(range(len(levels)))
    if not levels:
        return order
    lowest_odd = min(lv for lv in levels if lv % 2) if any(lv % 2 for lv in levels) else max(levels) + 1
    for level in range(max(levels), lowest_odd - 1, -1):
        i = 0
        while i < len(order):
            if levels[order[i]] < level:
                i += 1
                continue
            end = i
            while end < len(order) and levels[order[end]] >= level:
                end += 1
            order[i:end] = order[i:end][::-1]
            i = end
    return order
