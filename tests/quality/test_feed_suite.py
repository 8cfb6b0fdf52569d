"""The feed suite: great_expectations suites name the row and column of every problem, the template's render checks
add what the compositor refuses, and partial mode keeps the valid rows.

Every validation here is a real great_expectations run on the shipped templates (plus one price template written
for the price rule, as no shipped template has a price slot). The reports that many tests read are built once per
module: each GX run costs 0.1-0.4 s after a 2-3 s import.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from generators.template import TemplateLibrary
from generators.template_samples import SAMPLES, UNCOVERED
from quality.feed_suite import PRICE_REGEX, FeedReport, feed_suite, validate_feed
from quality.feeds import parse_feed

HEADER = ("sku", "locale", "template_id", "headline", "subline", "cta")
CJK_33 = "新しいコレクションが登場" * 2 + "新しいコレクション"  # 33 characters: over 30 (ja), under 60 (en)
PRICE_TEMPLATE = {
    "id": "price-tag", "title": "Price tag (512x512)", "width": 512, "height": 512,
    "background": {"colour": "#ffffff"},
    "slots": [
        {"name": "headline", "box": [32, 32, 448, 160], "max_size": 48, "min_size": 20, "colour": "#111111",
         "max_lines": 2, "required": True, "max_chars": 40},
        {"name": "price", "box": [32, 240, 448, 96], "max_size": 64, "min_size": 24, "colour": "#b91c1c",
         "required": True, "max_chars": 12},
    ],
}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> TemplateLibrary:
    """The shipped templates plus ``price-tag``, loaded the way the gateway loads an operator's directory."""
    extra = tmp_path_factory.mktemp("templates")
    (extra / "price-tag.json").write_text(json.dumps(PRICE_TEMPLATE), encoding="utf-8")
    return TemplateLibrary([TemplateLibrary.default_dir(), extra])


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


VALID_ROWS = [
    _row("SKU-1", "en"), _row("SKU-1", "de"), _row("SKU-1", "ja"), _row("SKU-1", "ko"), _row("SKU-1", "zh-CN"),
    _row("SKU-2", "fr", "spring-sale"), _row("SKU-2", "ru", "spring-sale", subline="Только неделю"),
]

# One row per rule, each broken in exactly one column; (row number, column, rule) is what the report must say.
BAD_ROWS: list[tuple[str, dict[str, str], str | None, str]] = [
    ("sku", _row("bad sku!", "en"), "sku", "sku_format"),
    ("locale", _row("SKU-3", "english"), "locale", "allowed_locale"),
    ("cjk_length", _row("SKU-4", "ja", headline=CJK_33), "headline", "max_chars"),
    ("latin_length", _row("SKU-5", "en", cta="Shop our brand new collection"), "cta", "max_chars"),
    ("unknown_template", _row("SKU-6", "en", "summer-sale"), "template_id", "known_template"),
    ("null_required", _row("SKU-7", "de", cta=""), "cta", "required"),
    ("null_template", _row("SKU-8", "en", template=""), "template_id", "required"),
    ("duplicate", _row("SKU-1", "en"), "sku", "unique_sku_locale"),
    ("uncovered_script", _row("SKU-9", "en", headline=UNCOVERED["th"]["headline"]), "headline", "font_coverage"),
    ("does_not_fit", _row("SKU-10", "en", headline="W" * 40), "headline", "text_fits"),
]
ALLOWED = ["de", "en", "fr", "ja", "ko", "ru", "zh-CN"]


@pytest.fixture(scope="module")
def mixed_report(library: TemplateLibrary) -> FeedReport:
    """The valid rows (1-7), then one bad row per rule (8-17), validated with an allowed-locale list."""
    feed = parse_feed(_csv(VALID_ROWS + [row for _, row, _, _ in BAD_ROWS]), "text/csv")
    return validate_feed(feed, library, locales=ALLOWED)


def test_a_valid_csv_feed_passes(library: TemplateLibrary, make_csv: Callable[..., bytes]) -> None:
    feed = parse_feed(make_csv(VALID_ROWS), "text/csv; charset=utf-8")
    report = validate_feed(feed, library, locales=ALLOWED)
    assert report.errors == ()
    assert report.ok
    assert report.valid_rows == (1, 2, 3, 4, 5, 6, 7) and report.invalid_rows == ()
    assert report.runnable(partial=False) == report.valid_rows
    assert set(report.templates) == {"global-launch", "spring-sale"}
    assert all(t["success"] for t in report.templates.values())
    body = json.loads(json.dumps(report.as_dict()))
    assert body["ok"] is True and body["error_count"] == 0 and body["columns"] == {}


@pytest.mark.parametrize(("case", "column", "rule"), [(c, col, rule) for c, _, col, rule in BAD_ROWS],
                         ids=[c for c, *_ in BAD_ROWS])
def test_each_rule_names_the_row_and_the_column(mixed_report: FeedReport, case: str, column: str, rule: str) -> None:
    number = len(VALID_ROWS) + 1 + [c for c, *_ in BAD_ROWS].index(case)
    found = [(e.column, e.rule) for e in mixed_report.errors if e.row == number]
    assert (column, rule) in found, found
    assert number in mixed_report.invalid_rows
    (issue,) = [e for e in mixed_report.errors if e.row == number and e.rule == rule]
    assert issue.line == number + 1  # CSV: the header is line 1
    assert column in issue.message or rule in ("known_template", "font_coverage", "text_fits")


def test_only_the_broken_rows_are_reported(mixed_report: FeedReport) -> None:
    bad = {len(VALID_ROWS) + 1 + i for i in range(len(BAD_ROWS))}
    # The duplicate (row 15) also makes its twin, row 1, invalid: the pair is the problem.
    assert set(mixed_report.invalid_rows) == bad | {1}
    assert {e.row for e in mixed_report.errors} == bad | {1}
    assert mixed_report.valid_rows == (2, 3, 4, 5, 6, 7)
    assert not mixed_report.ok


def test_partial_runs_only_the_valid_rows(mixed_report: FeedReport) -> None:
    assert mixed_report.runnable(partial=False) == ()
    assert mixed_report.runnable(partial=True) == (2, 3, 4, 5, 6, 7)
    body = json.loads(json.dumps(mixed_report.as_dict()))
    assert body["valid_rows"] == [2, 3, 4, 5, 6, 7]
    assert body["columns"]["headline"]["rules"] == {"max_chars": 1, "font_coverage": 1, "text_fits": 1}
    assert body["columns"]["template_id"] == {"errors": 2, "rows": 2, "rules": {"known_template": 1, "required": 1}}


def test_error_entries_carry_value_and_expectation(mixed_report: FeedReport) -> None:
    (issue,) = [e for e in mixed_report.errors if e.rule == "max_chars" and e.column == "headline"]
    assert issue.as_dict() == {
        "row": 10, "line": 11, "column": "headline", "rule": "max_chars",
        "message": "`headline` may have at most 30 characters in ja, ko, zh but has 33", "value": CJK_33,
        "expectation": "expect_column_value_lengths_to_be_between",
    }


def test_the_length_limit_depends_on_the_locale(library: TemplateLibrary, make_csv: Callable[..., bytes]) -> None:
    rows = [_row("SKU-1", "en", headline=CJK_33), _row("SKU-1", "ja", headline=CJK_33),
            _row("SKU-1", "zh-TW", headline=CJK_33[:30]), _row("SKU-1", "ko", headline=CJK_33[:31])]
    report = validate_feed(parse_feed(make_csv(rows), "text/csv"), library)
    assert [(e.row, e.column, e.rule) for e in report.errors] == [(2, "headline", "max_chars"),
                                                                 (4, "headline", "max_chars")]


def test_length_factors_are_a_parameter(library: TemplateLibrary, make_csv: Callable[..., bytes]) -> None:
    rows = [_row("SKU-1", "ja", headline=CJK_33), _row("SKU-1", "de", headline="Eine neue Kollektion", subline="",
                                                     cta="Los")]
    report = validate_feed(parse_feed(make_csv(rows), "text/csv"), library, length_factors={"de": 0.25})
    assert [(e.row, e.column, e.rule) for e in report.errors] == [(2, "headline", "max_chars")]
    assert "at most 15 characters in de" in report.errors[0].message


def test_any_bcp47_tag_passes_without_an_allowed_list(library: TemplateLibrary,
                                                      make_csv: Callable[..., bytes]) -> None:
    rows = [_row("SKU-1", "pt-BR"), _row("SKU-1", "sr-Cyrl"), _row("SKU-1", "en_US"), _row("SKU-2", "e")]
    report = validate_feed(parse_feed(make_csv(rows), "text/csv"), library)
    assert [(e.row, e.column, e.rule, e.value) for e in report.errors] == [
        (3, "locale", "locale_tag", "en_US"), (4, "locale", "locale_tag", "e")]


def test_a_missing_required_column_invalidates_the_template(library: TemplateLibrary,
                                                             make_csv: Callable[..., bytes]) -> None:
    header = ("sku", "locale", "template_id", "headline", "subline")
    rows = [_row("SKU-1", "en"), _row("SKU-2", "en", "product-square"), _row("SKU-3", "de")]
    report = validate_feed(parse_feed(make_csv(rows, header), "text/csv"), library)
    missing = [e for e in report.errors if e.row is None]
    assert [(e.column, e.rule, e.expectation) for e in missing] == [
        ("cta", "required_column", "expect_column_to_exist"), ("cta", "required_column", "expect_column_to_exist")]
    assert {e.message for e in missing} == {f"`cta` is a column template {t!r} requires, and the feed has none"
                                            for t in ("global-launch", "product-square")}
    assert report.invalid_rows == (1, 2, 3) and report.valid_rows == ()
    assert report.as_dict()["columns"]["cta"]["rows"] == 0


def test_a_column_the_template_lacks_must_stay_empty(library: TemplateLibrary,
                                                      make_csv: Callable[..., bytes]) -> None:
    header = (*HEADER, "hero", "colour")
    rows = [_row("SKU-1", "en"), _row("SKU-2", "en", colour="red"), _row("SKU-3", "en", hero="cat.png")]
    report = validate_feed(parse_feed(make_csv(rows, header), "text/csv"), library)
    assert [(e.row, e.column, e.rule, e.value) for e in report.errors] == [
        (2, "colour", "unknown_field", "red"), (3, "hero", "unknown_field", "cat.png")]
    assert "an image slot" in report.errors[1].message
    assert report.valid_rows == (1,)


@pytest.mark.parametrize(("price", "ok"), [
    ("19.99", True), ("19,99", True), ("1999", True), ("€19.99", True), ("19,99 €", True), ("EUR 19.99", True),
    ("1999 JPY", True), ("19.9", False), ("19.999", False), ("1,299.00", False), ("-5.00", False),
    ("$ $5", False), ("eur 5", False), ("1234567", False), ("free", False),
])
def test_price_format(price: str, ok: bool) -> None:
    assert (re.search(PRICE_REGEX, price) is not None) is ok


def test_price_columns_are_checked_in_the_feed(library: TemplateLibrary) -> None:
    rows = [{"sku": f"P-{i}", "locale": "de", "template_id": "price-tag", "headline": "Winterjacke", "price": p}
            for i, p in enumerate(["49,99 €", "49.9", "EUR 12.00", "zwölf"])]
    report = validate_feed(parse_feed(json.dumps(rows).encode(), "application/json"), library)
    assert [(e.row, e.column, e.rule, e.value) for e in report.errors] == [
        (2, "price", "price_format", "49.9"), (4, "price", "price_format", "zwölf")]
    assert report.valid_rows == (1, 3)


def test_a_json_feed_flattens_fields_and_keeps_number_text(library: TemplateLibrary) -> None:
    body = {"rows": [
        {"sku": "P-1", "locale": "en", "template_id": "price-tag", "fields": {"headline": "Parka", "price": 19.90}},
        {"sku": "P-2", "locale": "en", "template_id": "price-tag", "headline": "Boots", "price": 1999},
        {"sku": "P-3", "locale": "en", "template_id": "price-tag", "headline": "  Hat ", "price": "5.00",
         "fields": {}},
    ]}
    feed = parse_feed(json.dumps(body).replace("19.9", "19.90").encode(), "application/json")
    assert feed.format == "json" and feed.columns == ("sku", "locale", "template_id", "headline", "price")
    assert [dict(r.values) for r in feed.rows][0] == {"sku": "P-1", "locale": "en", "template_id": "price-tag",
                                                      "headline": "Parka", "price": "19.90"}
    assert feed.row(2).fields == {"headline": "Boots", "price": "1999"}
    assert feed.row(3).fields == {"headline": "Hat", "price": "5.00"}
    assert validate_feed(feed, library).ok


def test_json_rows_missing_a_key_are_null(library: TemplateLibrary) -> None:
    rows = [_row("SKU-1", "en"), {k: v for k, v in _row("SKU-2", "en").items() if k != "headline"}]
    report = validate_feed(parse_feed(json.dumps(rows).encode(), "application/json"), library)
    assert [(e.row, e.column, e.rule, e.line) for e in report.errors] == [(2, "headline", "required", None)]


def test_a_ragged_row_is_a_row_error(library: TemplateLibrary, make_csv: Callable[..., bytes]) -> None:
    data = make_csv([_row("SKU-1", "en"), _row("SKU-2", "en")]) + b"SKU-3,en,global-launch,Hi,There\n"
    report = validate_feed(parse_feed(data, "text/csv"), library)
    assert [(e.row, e.line, e.column, e.rule) for e in report.errors] == [(3, 4, None, "row_length")]
    assert "5 cells but the header names 6" in report.errors[0].message
    assert report.runnable(partial=True) == (1, 2)


# --- the suite itself --------------------------------------------------------------------------------------------


def _rule(expectation: Any) -> tuple[str, str | None]:
    """An expectation's short rule (from its meta) and its column."""
    return (expectation.meta or {})["rule"], expectation.configuration.kwargs.get("column")


def test_the_feed_suite_lists_every_rule(library: TemplateLibrary) -> None:
    template = library.get("price-tag")
    assert template is not None
    suite = feed_suite(template, locales=["en", "ja"], price_columns=["price"], regexes={"headline": r"^\S"},
                       max_rows=50)
    rules = [_rule(e) for e in suite.expectations]
    assert ("max_rows", None) in rules
    for column in ("sku", "locale", "template_id", "headline", "price"):
        assert ("required_column", column) in rules and ("required", column) in rules
    assert {("template_id", "template_id"), ("allowed_locale", "locale"), ("sku_format", "sku"),
            ("headline_format", "headline"), ("price_format", "price")} <= set(rules)
    limits = sorted(e.configuration.kwargs["max_value"] for e in suite.expectations if _rule(e)[0] == "max_chars")
    assert limits == [6, 12, 20, 40]  # price and headline, each: the slot's limit and the CJK half
    assert suite.name == "feed.price-tag"
