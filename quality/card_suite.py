"""The score-card suite: once a batch has finished, check its score cards with great_expectations (at least one card,
every card complete, no nulls where a scorer answered, known scores within their ranges) and answer the
report stored with the batch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from quality import gx

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

# Known score columns and their ranges (None: unbounded). Columns not listed are only checked for nulls, except
# integer ones, which are counts and must be >= 0.
SCORE_RANGES: Mapping[str, tuple[float | None, float | None]] = {
    **{f"perceptual.{k}": (0.0, 1.0) for k in ("quality", "sharpness", "exposure", "contrast", "clipped_dark",
                                               "clipped_bright")},
    "perceptual.laplacian_var": (0.0, None), "perceptual.colorfulness": (0.0, None),
    "nsfw.nsfw": (0.0, 1.0), "nsfw.sfw": (0.0, 1.0), "brand.score": (0.0, 1.0),
    "ocr.garbled": (0.0, 1.0), "ocr.banned_words": (0.0, None),
}
_ANSWERED = "_answered."


def _flatten(card: Mapping[str, Any]) -> dict[str, Any]:
    """One image's row: ``complete``, ``<scorer>.<value>`` (lists as JSON text) and ``_answered.<scorer>``."""
    row: dict[str, Any] = {"complete": card.get("complete")}
    for scorer, values in (card.get("scores") or {}).items():
        row[_ANSWERED + scorer] = int(bool(values))  # GX conditions compare numbers and strings, not booleans
        for key, value in (values or {}).items():
            row[f"{scorer}.{key}"] = json.dumps(value) if isinstance(value, list | dict) else value
    return row


def scorecard_suite(columns: Collection[str], *,
                    ranges: Mapping[str, tuple[float | None, float | None]] = SCORE_RANGES) -> ExpectationSuite:
    """Expectations on a batch's flattened score cards: at least one card, every card ``complete``, no nulls in a
    scorer's columns where that scorer answered for the image, and each column in ``ranges`` within its range.
    Built for the ``columns`` present, so it fits whatever scorers are configured."""
    from great_expectations.expectations.row_conditions import Column

    suite = gx.load().ExpectationSuite(name="scorecards")
    gx.expect(suite, "ExpectTableRowCountToBeBetween", "non_empty", "a batch has at least one score card",
            min_value=1)
    gx.expect(suite, "ExpectColumnToExist", "required_column", "every card says whether it is complete",
            column="complete")
    gx.expect(suite, "ExpectColumnValuesToNotBeNull", "complete", "must be true or false", column="complete")
    gx.expect(suite, "ExpectColumnValuesToBeInSet", "complete", "must be true: a scorer failed on the image",
            column="complete", value_set=[True])
    for column in sorted(c for c in columns if c != "complete" and not c.startswith(_ANSWERED)):
        scorer = column.split(".")[0]
        gx.expect(suite, "ExpectColumnValuesToNotBeNull", "not_null", f"is missing although {scorer} answered",
                column=column, row_condition=Column(_ANSWERED + scorer).is_in([1]))
        if column in ranges:
            low, high = ranges[column]
            span = f"[{low}, {high}]" if high is not None else f">= {low}"
            gx.expect(suite, "ExpectColumnValuesToBeBetween", "range", f"must be {span}", column=column,
                    min_value=low, max_value=high)
    return suite


def validate_cards(cards: Sequence[Mapping[str, Any]], *,
                   ranges: Mapping[str, tuple[float | None, float | None]] = SCORE_RANGES) -> dict[str, Any]:
    """Validate a batch's score cards (``ScoreCard.as_dict()``, one per image, in order); the JSON-able report
    stored with the batch: ``success``, GX ``statistics``, the ``columns`` checked and every failed expectation with
    the image indices (0-based) and values that broke it."""
    import pandas as pd

    rows = [_flatten(card) for card in cards]
    columns = list(dict.fromkeys(k for row in rows for k in row)) or ["complete"]
    frame = pd.DataFrame(rows, columns=columns, index=pd.RangeIndex(len(rows)), dtype=object)
    counts = {c: (0.0, None) for c in columns if c not in ranges and _all_ints(frame[c])}
    result = gx.Runner().validate(frame, scorecard_suite(columns, ranges={**ranges, **counts}))
    failed = []
    for res in sorted(result.results, key=lambda r: (str(r.expectation_config.kwargs.get("column")),
                                                     r.expectation_config.type)):
        if res.success:
            continue
        config = res.expectation_config
        meta = config.meta or {}
        entry: dict[str, Any] = {"expectation": config.type, "rule": meta.get("rule"),
                                 "column": config.kwargs.get("column"), "message": meta.get("message")}
        if res.exception_info.get("raised_exception", True):
            entry["error"] = gx.exception_message(res.exception_info)[:300]
        else:
            entry["unexpected_count"] = res.result.get("unexpected_count")
            entry["unexpected_images"] = [int(i) for i in res.result.get("unexpected_index_list") or []]
            entry["unexpected_values"] = [_plain(v) for v in (res.result.get("unexpected_list") or [])[:20]]
            if res.result.get("observed_value") is not None:
                entry["observed_value"] = _plain(res.result["observed_value"])
        failed.append(entry)
    return {"success": bool(result.success), "images": len(rows), "statistics": dict(result.statistics),
            "columns": sorted(c for c in columns if not c.startswith(_ANSWERED)), "failed": failed,
            "great_expectations_version": gx.load().__version__}


def _all_ints(values: Any) -> bool:
    present = list(values.dropna())
    return bool(present) and all(isinstance(v, int) and not isinstance(v, bool) for v in present)


def _plain(value: Any) -> Any:
    """A JSON-able copy of a value GX answered (numpy scalars, NaN)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)
