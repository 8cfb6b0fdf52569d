"""Campaign feed parsing: a readable CSV or JSON feed keeps the client's row numbering, and a feed that cannot be
read (encoding, syntax, header, shape, size, media type) is refused with a 422 naming the field and the rule.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from gateway.errors import InvalidInput, UnsupportedMediaType
from generators.template_samples import SAMPLES
from quality.feeds import Feed, FeedError, parse_feed

HEADER = ("sku", "locale", "template_id", "headline", "subline", "cta")


def _row(sku: str, locale: str, template: str = "global-launch", **fields: str) -> dict[str, str]:
    sample = SAMPLES.get(locale, SAMPLES["en"])
    if template == "global-launch":
        fields = {**sample, **fields}
    elif template in ("spring-sale", "product-square"):
        fields = {"headline": sample["headline"], "cta": sample["cta"], **fields}
    return {"sku": sku, "locale": locale, "template_id": template, **fields}


def _csv(rows: Sequence[Mapping[str, str]], header: Sequence[str] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[row.get(c, "") for c in header] for row in rows])
    return out.getvalue().encode("utf-8")


@pytest.fixture
def make_csv() -> Callable[..., bytes]:
    """Factory: a UTF-8 CSV feed of ``rows`` (dicts) under ``header``."""
    return _csv


def test_the_feed_keeps_the_client_numbering_and_lines(make_csv: Callable[..., bytes]) -> None:
    rows = [_row("SKU-1", "en"), _row("SKU-1", "de")]
    data = make_csv(rows).replace(b"\nSKU-1,de", b"\n\nSKU-1,de")  # a blank line before row 2
    feed = parse_feed(data, "text/csv")
    assert [(r.number, r.line) for r in feed.rows] == [(1, 2), (3, 4)]
    assert feed.columns == HEADER
    assert feed.row(3).fields == SAMPLES["de"]
    assert feed.row(3).template_id == "global-launch"
    assert [r.number for r in feed.select([3, 1])] == [3, 1]


# --- feeds that cannot be read: FeedError, nothing validated ----------------------------------------------------


def _refused(data: bytes, content_type: str = "text/csv", **kwargs: Any) -> FeedError:
    with pytest.raises(FeedError) as caught:
        parse_feed(data, content_type, **kwargs)
    return caught.value


def test_a_feed_error_is_a_422_problem_naming_field_and_rule() -> None:
    error = _refused(b"sku,sku\n1,2\n")
    assert isinstance(error, InvalidInput)
    problem = error.to_problem("/v1/batches")
    assert problem["status"] == 422 and problem["type"].endswith("/invalid-feed")
    assert (problem["field"], problem["rule"]) == ("feed.header", "unique_columns")
    assert "'sku'" in problem["detail"]


def test_latin1_is_refused_naming_offset_and_line(make_csv: Callable[..., bytes]) -> None:
    text = _csv([_row("SKU-1", "fr", headline="Café")]).decode()
    error = _refused(text.encode("latin-1"))
    offset = text.encode("latin-1").index(b"\xe9")
    assert (error.field, error.rule) == ("feed", "encoding")
    assert error.extensions["offset"] == offset and error.extensions["line"] == 2
    assert f"byte 0xE9 at offset {offset} (line 2, byte " in error.detail


def test_a_utf8_bom_is_accepted_and_shifts_no_offsets() -> None:
    data = b"\xef\xbb\xbf" + _csv([_row("SKU-1", "en")])
    assert parse_feed(data, "text/csv").columns == HEADER
    error = _refused(b"\xef\xbb\xbfsku,locale\n\xff\n")
    assert error.extensions["offset"] == 14 and error.extensions["line"] == 2


@pytest.mark.parametrize(("encoding", "offset", "says"), [
    ("utf-16", 0, "UTF-16 byte order mark"), ("utf-16-le", 1, "NUL byte at offset 1"),
    ("utf-16-be", 0, "NUL byte at offset 0"), ("utf-32", 0, "UTF-32 byte order mark"),
])
def test_utf16_and_utf32_are_refused_naming_the_position(encoding: str, offset: int, says: str) -> None:
    error = _refused(_csv([_row("SKU-1", "en")]).decode().encode(encoding))
    assert (error.rule, error.extensions["offset"], error.extensions["line"]) == ("encoding", offset, 1)
    assert says in error.detail and "save it as UTF-8" in error.detail


@pytest.mark.parametrize(("data", "field", "rule", "says"), [
    (b"", "feed", "empty", "empty"),
    (b" \n\n", "feed", "empty", "empty"),
    (b"sku,locale,template_id,headline\n", "feed", "no_rows", "no data rows"),
    (b"sku,locale,template_id\n\n\n", "feed", "no_rows", "no data rows"),
    (b"SKU-1,en,global-launch,Hello,,Go\n", "feed.header", "missing_header", "names none of them"),
    (b"sku;locale;template_id\nA;en;x\n", "feed.header", "missing_header", "semicolon-separated"),
    (b",,\nA,en,x\n", "feed.header", "missing_header", "it is empty"),
    (b"sku,locale,template_id,headline,headline\n", "feed.header", "unique_columns", "'headline'"),
    (b"sku,locale,,template_id\nA,en,x,y\n", "feed.header", "column_name", "column 3"),
    (b"sku,locale,template_id,_language\nA,en,x,y\n", "feed.header", "column_name", "reserved"),
    (b'sku,locale,template_id\nA,"en\nB,de\n', "feed", "csv_syntax", "starting on line 2: unexpected end"),
], ids=["empty", "blank", "header_only", "header_and_blank_lines", "no_header", "semicolons", "empty_header",
        "duplicate_header", "unnamed_column", "reserved_column", "unclosed_quote"])
def test_unreadable_csv_is_refused(data: bytes, field: str, rule: str, says: str) -> None:
    error = _refused(data)
    assert (error.field, error.rule) == (field, rule)
    assert says in error.detail


@pytest.mark.parametrize(("body", "field", "rule", "says"), [
    ('"rows"', "feed", "json_shape", "not str"),
    ('{"items": []}', "feed", "json_shape", "an object with ['items']"),
    ('{"rows": [], "extra": 1}', "feed", "json_shape", "an object with"),
    ("[]", "feed", "no_rows", "no data rows"),
    ('[{"sku": "A"}, [1, 2]]', "feed.rows[2]", "row_object", "row 2 must be a JSON object"),
    ('[{"sku": "A", "headline": {"en": "Hi"}}]', "feed.rows[1].headline", "scalar", "not an object"),
    ('[{"sku": "A", "fields": {"cta": ["Go"]}}]', "feed.rows[1].fields.cta", "scalar", "not a list"),
    ('[{"sku": "A", "fields": "Go"}]', "feed.rows[1].fields", "fields_object", "must be an object"),
    ('[{"sku": "A", "cta": "Go", "fields": {"cta": "Go"}}]', "feed.rows[1].fields.cta", "duplicate_column",
     "both flat and in `fields`"),
    ('[{"sku": "A", "sku": "B"}]', "feed", "json_syntax", "repeats the key 'sku'"),
    ('[{"sku": "A", "price": NaN}]', "feed", "json_syntax", "NaN is not a JSON number"),
    ('[{"sku": "A",\n "cta": }]', "feed", "json_syntax", "line 2 column"),
    ('[{"": "A"}]', "feed.rows[1].", "column_name", "not a column name"),
], ids=["string", "object_without_rows", "rows_and_more", "empty_list", "row_not_object", "nested_object",
        "nested_list", "fields_not_object", "flat_and_nested", "duplicate_key", "nan", "syntax", "empty_key"])
def test_unreadable_json_is_refused(body: str, field: str, rule: str, says: str) -> None:
    error = _refused(body.encode(), "application/json")
    assert (error.field, error.rule) == (field, rule)
    assert says in error.detail


@pytest.mark.parametrize("content_type", ["text/csv", "application/json"])
def test_too_many_rows_are_refused(content_type: str) -> None:
    rows = [_row(f"SKU-{i}", "en") for i in range(4)]
    data = _csv(rows) if content_type == "text/csv" else json.dumps(rows).encode()
    assert len(parse_feed(data, content_type, max_rows=4).rows) == 4
    error = _refused(data, content_type, max_rows=3)
    assert (error.field, error.rule) == ("feed", "max_rows")
    assert "more than 3" in error.detail


def test_other_media_types_and_charsets_are_refused() -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        parse_feed(b"<rows/>", "application/xml")
    assert caught.value.status == 415 and caught.value.extensions["field"] == "content_type"
    error = _refused(b"sku\n", "text/csv; charset=ISO-8859-1")
    assert error.rule == "encoding" and "'ISO-8859-1'" in error.detail


def test_feed_is_frozen() -> None:
    feed = parse_feed(_csv([_row("SKU-1", "en")]), "text/csv")
    assert isinstance(feed, Feed)
    with pytest.raises(AttributeError):
        feed.rows = ()  # type: ignore[misc]
