"""Campaign feeds for ``POST /v1/batches``: read CSV or JSON rows, check them per template with great_expectations
before anything is generated, and check a finished batch's score cards the same way.

A feed has one row per banner: ``sku``, ``locale``, ``template_id`` and one column per text slot of the template
(``headline``, ``cta``, ``price`` ...). :func:`parse_feed` refuses a feed that cannot be read at all (encoding,
syntax, header, shape, size) with a :class:`FeedError`; :func:`validate_feed` runs one expectation suite per template
(:func:`feed_suite`) and answers a :class:`FeedReport` of row- and column-level errors. The report alone decides
nothing: the caller generates every row of a feed that is ``ok``, only ``valid_rows`` when the client asked for
``partial``, and nothing otherwise.

great_expectations takes 2-3 s to import, so it is imported on first use, with analytics off, into an ephemeral
(in-memory) context made per call: it writes no files, sends nothing, and shares no state between threads.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from gateway.errors import InvalidInput, UnsupportedMediaType
from generators.template_fonts import Fonts, cjk_region

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

    from generators.template_file import TemplateLibrary
    from generators.template_model import Template

BASE_COLUMNS = ("sku", "locale", "template_id")
DEFAULT_MAX_ROWS = 10_000
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
# Derived column the per-language length expectations are conditioned on; a slot name cannot start with '_'.
LANGUAGE_COLUMN = "_language"
MAX_ERRORS = 1000
Value = str | None


class FeedError(InvalidInput):
    """A feed that cannot be read at all: 422 naming ``field`` (``feed``, ``feed.header``, ``feed.rows[12]``) and
    ``rule``. Nothing of such a feed may be stored or generated."""

    slug = "invalid-feed"
    title = "Invalid feed"


@dataclass(frozen=True)
class FeedRow:
    """One data row. ``number`` is the row as the client counts it (1 = the first CSV record after the header, blank
    lines included; the first element of a JSON list); ``line`` is the CSV line it starts on (the header is line 1).
    ``problem`` says why its cells could not be read (a CSV row with too few or too many cells)."""

    number: int
    values: Mapping[str, Value]
    line: int | None = None
    problem: str | None = None

    @property
    def template_id(self) -> Value:
        return self.values.get("template_id")

    @property
    def fields(self) -> dict[str, str]:
        """The template fields the row fills (empty cells left out): what the generator is handed."""
        return {k: v for k, v in self.values.items() if k not in BASE_COLUMNS and v is not None}


@dataclass(frozen=True)
class Feed:
    """A parsed feed in its canonical shape: ``columns`` (``sku``, ``locale``, ``template_id`` first when present)
    and the rows, every value a stripped string or None (empty or absent)."""

    format: Literal["csv", "json"]
    columns: tuple[str, ...]
    rows: tuple[FeedRow, ...]

    def row(self, number: int) -> FeedRow:
        return next(r for r in self.rows if r.number == number)

    def select(self, numbers: Iterable[int]) -> list[FeedRow]:
        """The rows numbered ``numbers``, in that order (e.g. ``report.runnable(partial)``)."""
        by_number = {r.number: r for r in self.rows}
        return [by_number[n] for n in numbers]


# --- parsing -----------------------------------------------------------------------------------------------------


def parse_feed(data: bytes, content_type: str, *, max_rows: int = DEFAULT_MAX_ROWS) -> Feed:
    """Read a feed sent as ``text/csv`` or ``application/json`` (UTF-8; a UTF-8 byte order mark is skipped).

    CSV: the first line is the header; every record must have as many cells as the header. JSON: a list of row
    objects, or ``{"rows": [...]}``; a row's values are scalars, and its template fields may be given flat or in a
    ``fields`` object. Numbers keep their JSON text (``19.90`` stays ``"19.90"``). Raises :class:`FeedError` (or
    ``UnsupportedMediaType`` for another media type); the caller bounds the body size.
    """
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media not in ("text/csv", "application/json"):
        raise UnsupportedMediaType(f"a feed is text/csv or application/json, not {media or 'untyped'!r}"[:200],
                                   field="content_type", rule="media_type")
    charset = re.search(r"charset\s*=\s*\"?([\w.:-]+)", params, re.IGNORECASE)
    if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
        raise FeedError("feed", "encoding", f"the feed must be UTF-8 but is declared {charset.group(1)!r}")
    text = _decode(data)
    if not text.strip():
        raise FeedError("feed", "empty", "the feed is empty")
    feed = _parse_csv(text, max_rows) if media == "text/csv" else _parse_json(text, max_rows)
    if not feed.rows:
        raise FeedError("feed", "no_rows", "the feed has no data rows")
    return feed


def _decode(data: bytes) -> str:
    boms = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
            b"\xfe\xff": "UTF-16"}
    for bom, name in boms.items():
        if data.startswith(bom):
            raise FeedError("feed", "encoding", f"the feed starts with a {name} byte order mark (offset 0, line 1); "
                            "save it as UTF-8", offset=0, line=1)
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    nul = data.find(b"\x00", start)
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise FeedError("feed", "encoding", f"NUL byte at offset {nul} (line {line}): the feed looks like UTF-16 or "
                        "binary; save it as UTF-8", offset=nul, line=line)
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        raise FeedError("feed", "encoding", f"the feed is not UTF-8: byte 0x{data[offset]:02X} at offset {offset} "
                        f"(line {line}, byte {column} of the line) is not valid UTF-8 ({exc.reason}); save it as "
                        "UTF-8", offset=offset, line=line) from exc


def _cell(value: str) -> Value:
    value = value.strip()
    return value or None


def _parse_csv(text: str, max_rows: int) -> Feed:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[FeedRow] = []
    number, line = 0, 1  # line: where the record being read starts
    try:
        header = [name.strip() for name in next(reader)]
        columns = _check_header(header)
        line = reader.line_num + 1
        for record in reader:
            number += 1
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue  # a blank line still counts, so that row numbers match the client's spreadsheet
            if len(rows) == max_rows:
                raise FeedError("feed", "max_rows", f"the feed has more than {max_rows} rows")
            if len(record) != len(header):
                problem = f"row {number} (line {start}) has {len(record)} cells but the header names {len(header)}"
                rows.append(FeedRow(number, {}, start, problem))
            else:
                rows.append(FeedRow(number, {c: _cell(v) for c, v in zip(header, record, strict=True)}, start))
    except csv.Error as exc:
        raise FeedError("feed", "csv_syntax", f"CSV error in the record starting on line {line}: {exc}",
                        line=line) from exc
    return Feed("csv", columns, tuple(rows))


def _check_header(header: list[str]) -> tuple[str, ...]:
    if not any(header):
        raise FeedError("feed.header", "missing_header", "the first line must be a header naming the columns but "
                        "it is empty")
    if not set(BASE_COLUMNS) & set(header):
        hint = "; it looks semicolon-separated: use commas" if len(header) == 1 and ";" in header[0] else ""
        raise FeedError("feed.header", "missing_header", f"the first line must be a header naming the columns "
                        f"({', '.join(BASE_COLUMNS)} and the template fields) but it names none of them: "
                        f"{', '.join(map(repr, header[:6]))}{hint}"[:400])
    for i, name in enumerate(header):
        if not name:
            raise FeedError("feed.header", "column_name", f"column {i + 1} of the header has no name")
        if name == LANGUAGE_COLUMN:
            raise FeedError("feed.header", "column_name", f"column {i + 1}: {name!r} is reserved")
    duplicates = sorted(name for name, n in Counter(header).items() if n > 1)
    if duplicates:
        raise FeedError("feed.header", "unique_columns", f"the header names {', '.join(map(repr, duplicates))} more "
                        "than once")
    return _ordered(header)


def _ordered(names: Iterable[str]) -> tuple[str, ...]:
    names = list(names)
    return tuple([c for c in BASE_COLUMNS if c in names] + [c for c in names if c not in BASE_COLUMNS])


def _parse_json(text: str, max_rows: int) -> Feed:
    try:
        # Numbers keep their text, so that a price of 19.90 is still "19.90" when its format is checked.
        data = json.loads(text, parse_float=str, parse_int=str, parse_constant=_no_constant,
                          object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise FeedError("feed", "json_syntax", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                        line=exc.lineno) from exc
    except ValueError as exc:
        raise FeedError("feed", "json_syntax", str(exc)) from exc
    if isinstance(data, dict) and set(data) == {"rows"}:
        data = data["rows"]
    if not isinstance(data, list):
        raise FeedError("feed", "json_shape", 'a JSON feed is a list of row objects or {"rows": [...]}, not '
                        f"{type(data).__name__ if not isinstance(data, dict) else 'an object with ' + str(list(data))}"
                        [:300])
    if len(data) > max_rows:
        raise FeedError("feed", "max_rows", f"the feed has {len(data)} rows, more than {max_rows}")
    rows = [FeedRow(i + 1, _json_row(item, i + 1)) for i, item in enumerate(data)]
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row.values))
    return Feed("json", _ordered(seen), tuple(rows))


def _json_row(item: Any, number: int) -> dict[str, Value]:
    where = f"feed.rows[{number}]"
    if not isinstance(item, dict):
        raise FeedError(where, "row_object", f"row {number} must be a JSON object but is {item!r}"[:200], row=number)
    values: dict[str, Value] = {}
    nested = item.get("fields", {})
    if not isinstance(nested, dict):
        raise FeedError(f"{where}.fields", "fields_object", f"row {number}: `fields` must be an object of template "
                        f"fields but is {nested!r}"[:200], row=number)
    flat = [(k, v, f"{where}.{k}") for k, v in item.items() if k != "fields"]
    for key, value, path in flat + [(k, v, f"{where}.fields.{k}") for k, v in nested.items()]:
        if not key.strip() or key == LANGUAGE_COLUMN:
            raise FeedError(path, "column_name", f"row {number}: {key!r} is not a column name", row=number)
        if key in values:
            raise FeedError(path, "duplicate_column", f"row {number} gives {key!r} both flat and in `fields`",
                            row=number)
        if isinstance(value, dict | list):
            raise FeedError(path, "scalar", f"row {number}: {key!r} must be a string, number, boolean or null, not "
                            f"{'an object' if isinstance(value, dict) else 'a list'}", row=number)
        values[key] = _cell(value) if isinstance(value, str) else None if value is None else json.dumps(value)
    return values


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    duplicates = sorted(k for k, n in Counter(keys).items() if n > 1)
    if duplicates:
        raise ValueError(f"an object repeats the key {duplicates[0]!r}")
    return dict(pairs)


# --- great_expectations ------------------------------------------------------------------------------------------


def _gx() -> Any:
    """great_expectations, imported on first use (2-3 s) with usage analytics off."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"  # read by GX at import; a gateway sends nothing anywhere
    import great_expectations as gx

    return gx


def _context() -> Any:
    """A fresh in-memory context: no project directory, no progress bars, no analytics, nothing shared."""
    gx = _gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False),
                               store_backend_defaults=InMemoryStoreBackendDefaults())
    return gx.get_context(mode="ephemeral", project_config=config)


class _Runner:
    """Validates data frames against suites in one ephemeral context (one pandas data source, reused per frame)."""

    def __init__(self) -> None:
        asset = _context().data_sources.add_pandas("mediagate").add_dataframe_asset("frame")
        self.batches = asset.add_batch_definition_whole_dataframe("whole")

    def validate(self, frame: Any, suite: ExpectationSuite) -> Any:
        batch = self.batches.get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(suite, result_format={"result_format": "COMPLETE"})


def _expect(suite: Any, kind: str, rule: str, message: str, **kwargs: Any) -> None:
    """Add expectation ``kind`` with our short ``rule`` and a message fragment in its meta."""
    gx = _gx()
    meta = {"rule": rule, "message": message, **kwargs.pop("meta", {})}
    suite.add_expectation(getattr(gx.expectations, kind)(meta=meta, **kwargs))


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
    gx = _gx()
    suite = gx.ExpectationSuite(name=f"feed.{template.id}")
    present = (lambda c: c in feed_columns) if feed_columns is not None else (lambda c: True)
    slots = {s.name: s for s in template.slots}
    tid = repr(template.id)
    _expect(suite, "ExpectTableRowCountToBeBetween", "max_rows", f"a feed holds at most {max_rows} rows",
            min_value=1, max_value=max_rows)
    for column in [*BASE_COLUMNS, *(s.name for s in template.slots if s.required)]:
        _expect(suite, "ExpectColumnToExist", "required_column",
                f"is a column template {tid} requires, and the feed has none", column=column)
        if present(column):
            _expect(suite, "ExpectColumnValuesToNotBeNull", "required", f"is required by template {tid} but empty",
                    column=column)
    if present("template_id"):
        _expect(suite, "ExpectColumnValuesToBeInSet", "template_id", f"must be {tid}", column="template_id",
                value_set=[template.id])
    if present("locale"):
        if locales is None:
            _expect(suite, "ExpectColumnValuesToMatchRegex", "locale_tag",
                    "must be a BCP 47 locale tag such as en, de-DE or zh-Hant-TW", column="locale", regex=LOCALE_REGEX)
        else:
            allowed = sorted(locales)
            _expect(suite, "ExpectColumnValuesToBeInSet", "allowed_locale",
                    f"must be one of the allowed locales: {', '.join(allowed)}"[:300], column="locale",
                    value_set=allowed)
    for column, regex in {"sku": SKU_REGEX, **(regexes or {})}.items():
        if present(column):
            _expect(suite, "ExpectColumnValuesToMatchRegex", f"{column}_format", f"must match {regex}",
                    column=column, regex=regex)
    for column in sorted(set(price_columns) & set(slots)):
        if present(column):
            _expect(suite, "ExpectColumnValuesToMatchRegex", "price_format", "must be a price such as 19.99, 19,99, "
                    "€19.99 or 19.99 EUR (1 to 6 digits, optionally 2 decimals and one currency code or symbol)",
                    column=column, regex=PRICE_REGEX)
    for slot in template.slots:
        if present(slot.name):
            _length_expectations(suite, slot.name, slot.max_chars, length_factors)
    if present("sku") and present("locale"):
        _expect(suite, "ExpectCompoundColumnsToBeUnique", "unique_sku_locale",
                f"repeats the sku and locale of another row of template {tid}", column_list=["sku", "locale"],
                meta={"column": "sku"})
    known = {*BASE_COLUMNS, *slots, LANGUAGE_COLUMN}
    for column in sorted(set(feed_columns or ()) - known):
        images = {s.name for s in template.images}
        hint = " (an image slot: images are not given in a feed)" if column in images else ""
        _expect(suite, "ExpectColumnValuesToBeNull", "unknown_field", f"is not a field of template {tid}{hint}; "
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
        _expect(suite, "ExpectColumnValueLengthsToBeBetween", "max_chars", f"may have at most {max_chars} characters",
                column=column, max_value=max_chars, meta={"limit": max_chars})
        return
    others = sorted(lang for langs in limits.values() for lang in langs)
    _expect(suite, "ExpectColumnValueLengthsToBeBetween", "max_chars", f"may have at most {max_chars} characters",
            column=column, max_value=max_chars, row_condition=Column(LANGUAGE_COLUMN).is_not_in(others),
            meta={"limit": max_chars})
    for limit, languages in sorted(limits.items()):
        _expect(suite, "ExpectColumnValueLengthsToBeBetween", "max_chars",
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
    runner = _Runner() if groups else None
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
                                    f"{_exception_message(res.exception_info)}"[:300], expectation=kind))
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


def _exception_message(info: Mapping[str, Any]) -> str:
    if "exception_message" in info:
        return str(info["exception_message"])
    return "; ".join(sorted({str(v.get("exception_message")) for v in info.values() if isinstance(v, dict)}))


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


# --- score cards -------------------------------------------------------------------------------------------------

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

    suite = _gx().ExpectationSuite(name="scorecards")
    _expect(suite, "ExpectTableRowCountToBeBetween", "non_empty", "a batch has at least one score card",
            min_value=1)
    _expect(suite, "ExpectColumnToExist", "required_column", "every card says whether it is complete",
            column="complete")
    _expect(suite, "ExpectColumnValuesToNotBeNull", "complete", "must be true or false", column="complete")
    _expect(suite, "ExpectColumnValuesToBeInSet", "complete", "must be true: a scorer failed on the image",
            column="complete", value_set=[True])
    for column in sorted(c for c in columns if c != "complete" and not c.startswith(_ANSWERED)):
        scorer = column.split(".")[0]
        _expect(suite, "ExpectColumnValuesToNotBeNull", "not_null", f"is missing although {scorer} answered",
                column=column, row_condition=Column(_ANSWERED + scorer).is_in([1]))
        if column in ranges:
            low, high = ranges[column]
            span = f"[{low}, {high}]" if high is not None else f">= {low}"
            _expect(suite, "ExpectColumnValuesToBeBetween", "range", f"must be {span}", column=column,
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
    result = _Runner().validate(frame, scorecard_suite(columns, ranges={**ranges, **counts}))
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
            entry["error"] = _exception_message(res.exception_info)[:300]
        else:
            entry["unexpected_count"] = res.result.get("unexpected_count")
            entry["unexpected_images"] = [int(i) for i in res.result.get("unexpected_index_list") or []]
            entry["unexpected_values"] = [_plain(v) for v in (res.result.get("unexpected_list") or [])[:20]]
            if res.result.get("observed_value") is not None:
                entry["observed_value"] = _plain(res.result["observed_value"])
        failed.append(entry)
    return {"success": bool(result.success), "images": len(rows), "statistics": dict(result.statistics),
            "columns": sorted(c for c in columns if not c.startswith(_ANSWERED)), "failed": failed,
            "great_expectations_version": _gx().__version__}


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
