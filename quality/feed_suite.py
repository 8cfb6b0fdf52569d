"""The per-template great_expectations suite for campaign feeds, and its report: check a parsed feed's rows before
anything is generated.

:func:`validate_feed` runs one expectation suite per template (:func:`feed_suite`), then the template's own render
checks, and answers a :class:`FeedReport` of row- and column-level errors. The report alone decides nothing: the
caller generates every row of a feed that is ``ok``, only ``valid_rows`` when the client asked for ``partial``, and
nothing otherwise. great_expectations is imported on first use and run in a fresh in-memory context
(:mod:`quality.gx`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from gateway.errors import InvalidInput
from generators.template_fonts import Fonts, cjk_region
from quality import gx
from quality.feeds import BASE_COLUMNS, DEFAULT_MAX_ROWS, LANGUAGE_COLUMN, Feed, FeedRow, Value

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

    from generators.template_file import TemplateLibrary
    from generators.template_model import Template

SKU_REGEX = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# generators.template.LOCALE_RE without capturing groups (pandas warns about those in a match).
LOCALE_REGEX = r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,6}$"
# A price: 1 to 6 digits, optionally 2 decimals after '.' or ',', optionally one currency marker (an ISO 4217 code
# or a symbol) before or after it, with at most one space between: 19.99, 19,99, €19.99, 19,99 €, EUR 19.99,
# 1999 JPY. No thousands separators and no signs: a feed price is a plain amount.
_CURRENCY = r"(?:[A-Z]{3}|[$€£¥₹₩])"
_AMOUNT = r"\d{1,6}(?:[.,]\d{2})?"
PRICE_REGEX = rf"^(?:(?:{_CURRENCY} ?)?{_AMOUNT}|{_AMOUNT} ?{_CURRENCY})$"
PRICE_COLUMNS = ("price",)
# Template files set one ``max_chars`` per slot. Chinese, Japanese and Korean are set in full-width glyphs, about
# twice as wide as an average Latin one, so the same box holds about half as many characters: the default limit
# for those languages is half the slot's (rounded down). Keyed by the BCP 47 primary language subtag.
LENGTH_FACTORS: Mapping[str, float] = {"ja": 0.5, "ko": 0.5, "zh": 0.5}
MAX_ERRORS = 1000


def _language(locale: Any) -> str | None:
    return locale.split("-")[0].lower() if isinstance(locale, str) else None


def feed_suite(template: Template, *, locales: Collection[str] | None, price_columns: Collection[str] = PRICE_COLUMNS,
               regexes: Mapping[str, str] | None = None, max_rows: int = DEFAULT_MAX_ROWS,
               length_factors: Mapping[str, float] = LENGTH_FACTORS,
               feed_columns: Collection[str] | None = None) -> ExpectationSuite:
    """The expectations every row of ``template`` must meet, each with our short rule name in its ``meta``:

    ``max_rows`` (1 to ``max_rows`` rows); per required column (``sku``, ``locale``, ``template_id`` and the required
    slots) ``required_column`` (it exists) and ``required`` (no nulls); ``template_id`` (equals the template's id);
    ``allowed_locale`` (in ``locales``) or ``locale_tag`` (a BCP 47 tag); ``sku_format`` and ``<column>_format``
    (``regexes``); ``price_format`` (slots named in ``price_columns``); ``max_chars`` per slot and language group;
    ``unique_sku_locale`` (no sku and locale twice); ``unknown_field`` (columns the template lacks stay empty).

    ``locales``: the allowed locale tags (None: any BCP 47 tag). ``regexes``: column -> regex, added to the ``sku``
    default. ``length_factors``: language subtag -> share of a slot's ``max_chars`` allowed in that language (the
    frame needs the derived ``_language`` column, see :func:`feed_frame`). ``feed_columns``: when given, columns
    the feed lacks get only their existence check, and columns the template does not know must stay empty.
    """
    suite = gx.load().ExpectationSuite(name=f"feed.{template.id}")
    present = (lambda c: c in feed_columns) if feed_columns is not None else (lambda c: True)
    slots = {s.name: s for s in template.slots}
    tid = repr(template.id)
    gx.expect(suite, "ExpectTableRowCountToBeBetween", "max_rows", f"a feed holds at most {max_rows} rows",
            min_value=1, max_value=max_rows)
    for column in [*BASE_COLUMNS, *(s.name for s in template.slots if s.required)]:
        gx.expect(suite, "ExpectColumnToExist", "required_column",
                f"is a column template {tid} requires, and the feed has none", column=column)
        if present(column):
            gx.expect(suite, "ExpectColumnValuesToNotBeNull", "required", f"is required by template {tid} but empty",
                    column=column)
    if present("template_id"):
        gx.expect(suite, "ExpectColumnValuesToBeInSet", "template_id", f"must be {tid}", column="template_id",
                value_set=[template.id])
    if present("locale"):
        if locales is None:
            gx.expect(suite, "ExpectColumnValuesToMatchRegex", "locale_tag",
                    "must be a BCP 47 locale tag such as en, de-DE or zh-Hant-TW", column="locale", regex=LOCALE_REGEX)
        else:
            allowed = sorted(locales)
            gx.expect(suite, "ExpectColumnValuesToBeInSet", "allowed_locale",
                    f"must be one of the allowed locales: {', '.join(allowed)}"[:300], column="locale",
                    value_set=allowed)
    for column, regex in {"sku": SKU_REGEX, **(regexes or {})}.items():
        if present(column):
            gx.expect(suite, "ExpectColumnValuesToMatchRegex", f"{column}_format", f"must match {regex}",
                    column=column, regex=regex)
    for column in sorted(set(price_columns) & set(slots)):
        if present(column):
            gx.expect(suite, "ExpectColumnValuesToMatchRegex", "price_format", "must be a price such as 19.99, 19,99, "
                    "€19.99 or 19.99 EUR (1 to 6 digits, optionally 2 decimals and one currency code or symbol)",
                    column=column, regex=PRICE_REGEX)
    for slot in template.slots:
        if present(slot.name):
            _length_expectations(suite, slot.name, slot.max_chars, length_factors)
    if present("sku") and present("locale"):
        gx.expect(suite, "ExpectCompoundColumnsToBeUnique", "unique_sku_locale",
                f"repeats the sku and locale of another row of template {tid}", column_list=["sku", "locale"],
                meta={"column": "sku"})
    known = {*BASE_COLUMNS, *slots, LANGUAGE_COLUMN}
    for column in sorted(set(feed_columns or ()) - known):
        images = {s.name for s in template.images}
        hint = " (an image slot: images are not given in a feed)" if column in images else ""
        gx.expect(suite, "ExpectColumnValuesToBeNull", "unknown_field", f"is not a field of template {tid}{hint}; "
                f"its fields are {', '.join(slots)}", column=column)
    return suite


def _length_expectations(suite: Any, column: str, max_chars: int, factors: Mapping[str, float]) -> None:
    from great_expectations.expectations.row_conditions import Column

    limits: dict[int, list[str]] = {}
    for language, factor in sorted(factors.items()):
        limit = max(1, math.floor(max_chars * factor))
        if limit != max_chars:
            limits.setdefault(limit, []).append(language)
    if not limits:
        gx.expect(suite, "ExpectColumnValueLengthsToBeBetween", "max_chars", f"may have at most {max_chars} characters",
                column=column, max_value=max_chars, meta={"limit": max_chars})
        return
    others = sorted(lang for langs in limits.values() for lang in langs)
    gx.expect(suite, "ExpectColumnValueLengthsToBeBetween", "max_chars", f"may have at most {max_chars} characters",
            column=column, max_value=max_chars, row_condition=Column(LANGUAGE_COLUMN).is_not_in(others),
            meta={"limit": max_chars})
    for limit, languages in sorted(limits.items()):
        gx.expect(suite, "ExpectColumnValueLengthsToBeBetween", "max_chars",
                f"may have at most {limit} characters in {', '.join(languages)}", column=column, max_value=limit,
                row_condition=Column(LANGUAGE_COLUMN).is_in(languages), meta={"limit": limit, "languages": languages})


def feed_frame(rows: Sequence[FeedRow], columns: Sequence[str]) -> Any:
    """The pandas frame a feed suite runs on: index = row number, object columns, plus ``_language``."""
    import pandas as pd

    frame = pd.DataFrame([dict(r.values) for r in rows], index=pd.Index([r.number for r in rows]),
                         columns=list(columns), dtype=object)
    frame[LANGUAGE_COLUMN] = [_language(r.values.get("locale")) for r in rows]
    return frame


# --- the report --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedIssue:
    """One problem: ``row`` None for a column-level problem (a missing column), ``column`` None for a whole row."""

    row: int | None
    column: str | None
    rule: str
    message: str
    value: Value = None
    expectation: str | None = None  # the great_expectations expectation type, when GX found it
    line: int | None = None  # CSV feeds: the line the row starts on

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "line": self.line, "column": self.column, "rule": self.rule,
                "message": self.message, "value": self.value, "expectation": self.expectation}


@dataclass(frozen=True)
class FeedReport:
    """The verdict on a feed: which rows may run, every problem found, and each template's GX statistics."""

    rows: int
    valid_rows: tuple[int, ...]
    invalid_rows: tuple[int, ...]
    errors: tuple[FeedIssue, ...]
    templates: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.invalid_rows

    def runnable(self, partial: bool) -> tuple[int, ...]:
        """The rows to generate: all of an ``ok`` feed, only the valid ones when ``partial``, else none."""
        return self.valid_rows if self.ok or partial else ()

    def columns(self) -> dict[str, dict[str, Any]]:
        """Per column (``*`` for whole-row problems): how many errors, in how many rows, by rule."""
        summary: dict[str, dict[str, Any]] = {}
        for issue in self.errors:
            entry = summary.setdefault(issue.column or "*", {"errors": 0, "rows": set(), "rules": Counter()})
            entry["errors"] += 1
            entry["rules"][issue.rule] += 1
            if issue.row is not None:
                entry["rows"].add(issue.row)
        return {c: {"errors": e["errors"], "rows": len(e["rows"]), "rules": dict(e["rules"])}
                for c, e in sorted(summary.items())}

    def as_dict(self, max_errors: int = MAX_ERRORS) -> dict[str, Any]:
        """JSON-able; at most ``max_errors`` errors are listed (``error_count`` and ``columns`` count them all)."""
        return {"ok": self.ok, "rows": self.rows, "valid_rows": list(self.valid_rows),
                "invalid_rows": list(self.invalid_rows), "error_count": len(self.errors),
                "errors": [e.as_dict() for e in self.errors[:max_errors]],
                "errors_truncated": len(self.errors) > max_errors, "columns": self.columns(),
                "templates": {k: dict(v) for k, v in self.templates.items()}}


def validate_feed(feed: Feed, library: TemplateLibrary, *, locales: Collection[str] | None = None,
                  price_columns: Collection[str] = PRICE_COLUMNS, regexes: Mapping[str, str] | None = None,
                  length_factors: Mapping[str, float] = LENGTH_FACTORS, max_rows: int = DEFAULT_MAX_ROWS,
                  render_checks: bool = True) -> FeedReport:
    """Check every row: its template's expectation suite (great_expectations, on the template's rows), then, for the
    rows that pass, ``Template.check_fields`` (font coverage, shaping, fit in the slot) unless ``render_checks`` is
    off. A missing column or a failed expectation run invalidates every row of the template (fail closed)."""
    errors: list[FeedIssue] = []
    groups: dict[str, list[FeedRow]] = {}
    for row in feed.rows:
        if row.problem is not None:
            errors.append(FeedIssue(row.number, None, "row_length", row.problem, line=row.line))
        elif row.template_id is None:
            errors.append(FeedIssue(row.number, "template_id", "required", "`template_id` is required but empty",
                                    line=row.line))
        elif library.get(row.template_id) is None:
            known = ", ".join(t.id for t in library.list())
            errors.append(FeedIssue(row.number, "template_id", "known_template", f"unknown template "
                                    f"{row.template_id!r}; known: {known}"[:300], row.template_id, line=row.line))
        else:
            groups.setdefault(row.template_id, []).append(row)
    spoiled: set[int] = set()
    summaries: dict[str, dict[str, Any]] = {}
    runner = gx.Runner() if groups else None
    fonts = Fonts() if render_checks and groups else None
    for template_id, rows in sorted(groups.items()):
        template = library.get(template_id)
        assert template is not None and runner is not None  # grouped above by known ids
        suite = feed_suite(template, locales=locales, price_columns=price_columns, regexes=regexes,
                           max_rows=max_rows, length_factors=length_factors, feed_columns=feed.columns)
        result = runner.validate(feed_frame(rows, feed.columns), suite)
        found, whole = _issues(result, {r.number: r for r in rows})
        if whole:
            spoiled.update(r.number for r in rows)
        elif fonts is not None:
            bad = {i.row for i in found}
            found += _render_issues(template, [r for r in rows if r.number not in bad], fonts)
        errors += found
        summaries[template_id] = {"rows": len(rows), "success": bool(result.success) and not found,
                                  "statistics": dict(result.statistics)}
    invalid = spoiled | {e.row for e in errors if e.row is not None}
    errors.sort(key=lambda e: (e.row or 0, e.column or "", e.rule))
    numbers = [r.number for r in feed.rows]
    return FeedReport(len(numbers), tuple(n for n in numbers if n not in invalid),
                      tuple(n for n in numbers if n in invalid), tuple(errors), summaries)


def _issues(result: Any, rows: Mapping[int, FeedRow]) -> tuple[list[FeedIssue], bool]:
    """GX results as issues, and whether one of them concerns every row (a missing column, a failed run)."""
    issues: list[FeedIssue] = []
    whole = False
    missing = {r.expectation_config.kwargs["column"] for r in result.results
               if r.expectation_config.type == "expect_column_to_exist" and not r.success}
    for res in result.results:
        if res.success:
            continue
        config = res.expectation_config
        meta, kind = config.meta or {}, config.type
        column = meta.get("column") or config.kwargs.get("column")
        rule, message = meta.get("rule", kind), meta.get("message", kind)
        if res.exception_info.get("raised_exception", True):  # several entries, each with raised_exception
            if column in missing:
                continue  # already reported as a missing column
            whole = True  # fail closed: an expectation that could not run proves nothing about any row
            issues.append(FeedIssue(None, column, "expectation_error", f"{kind} on {column!r} could not run: "
                                    f"{gx.exception_message(res.exception_info)}"[:300], expectation=kind))
            continue
        indices = res.result.get("unexpected_index_list")
        if indices is None:
            whole = True
            issues.append(FeedIssue(None, column, rule, f"`{column}` {message}" if column else message,
                                    expectation=kind))
            continue
        for number in dict.fromkeys(indices):
            row = rows[int(number)]
            value = row.values.get(column) if column else None
            text = f"`{column}` {message}"
            if rule == "max_chars" and value is not None:
                text += f" but has {len(value)}"
            issues.append(FeedIssue(row.number, column, rule, text, value, kind, row.line))
    return issues, whole


def _render_issues(template: Template, rows: Sequence[FeedRow], fonts: Fonts) -> list[FeedIssue]:
    """What ``Template.check_fields`` refuses (no glyphs, no shaping, does not fit), slot by slot.

    Each slot is checked through a copy of the template holding only that slot (optional), so the check is the
    compositor's own, and it runs once per distinct (slot, text, CJK glyph region): a CTA repeated on every row is
    laid out once. The locale changes a layout only through its CJK region.
    """
    singles = {s.name: replace(template, slots=(replace(s, required=False),)) for s in template.slots}
    issues: list[FeedIssue] = []
    seen: dict[tuple[str, str, str], InvalidInput | None] = {}
    for row in rows:
        locale = row.values.get("locale")
        for name, text in row.fields.items():
            if name not in singles:
                continue
            key = (name, cjk_region(locale), text)
            if key not in seen:
                try:
                    singles[name].check_fields({name: text}, locale, fonts)
                    seen[key] = None
                except InvalidInput as exc:
                    seen[key] = exc
            error = seen[key]
            if error is not None:
                issues.append(FeedIssue(row.number, name, error.rule, error.detail, text, None, row.line))
    return issues
