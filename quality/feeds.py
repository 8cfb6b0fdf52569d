"""Campaign feeds for ``POST /v1/batches``: read CSV or JSON rows into one canonical shape, or refuse the feed.

A feed has one row per banner: ``sku``, ``locale``, ``template_id`` and one column per text slot of the template
(``headline``, ``cta``, ``price`` ...). :func:`parse_feed` refuses a feed that cannot be read at all (encoding,
syntax, header, shape, size) with a :class:`FeedError`; what a readable feed's rows say is checked per template by
``quality.feed_suite.validate_feed``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.errors import InvalidInput, UnsupportedMediaType

BASE_COLUMNS = ("sku", "locale", "template_id")
DEFAULT_MAX_ROWS = 10_000
# Derived column the per-language length expectations (quality.feed_suite) are conditioned on; a feed may not name it,
# and a slot name cannot start with '_'.
LANGUAGE_COLUMN = "_language"
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
