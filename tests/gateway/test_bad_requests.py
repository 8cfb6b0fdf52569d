"""Bad input: a 4xx problem+json naming the field and the rule, and nothing written anywhere."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, func, select

from audit.sql_store import AuditRow
from gateway.models import Asset, Generation

PROBLEM = "application/problem+json"


def counts(gw: Any) -> tuple[int, int, int]:
    with Session(gw.runtime.db) as s:
        return tuple(s.exec(select(func.count()).select_from(t)).one() for t in (AuditRow, Generation, Asset))


@pytest.mark.parametrize(
    ("body", "status", "field", "rule"),
    [
        ({}, 422, "prompt", "prompt_xor_template"),
        ({"prompt": ""}, 422, "prompt", "non_empty"),
        ({"prompt": "   \n"}, 422, "prompt", "non_empty"),
        ({"prompt": "x" * 2001}, 422, "prompt", "max_length"),
        ({"prompt": "a cat", "negative_prompt": "y" * 2001}, 422, "negative_prompt", "max_length"),
        ({"prompt": 42}, 422, "prompt", "string_type"),
        ({"prompt": "a cat", "n": "two"}, 422, "n", "int_parsing"),
        ({"prompt": "a cat", "n": 0}, 422, "n", "greater_than_equal"),
        ({"prompt": "a cat", "n": 17}, 422, "n", "less_than_equal"),
        ({"prompt": "a cat", "seed": -1}, 422, "seed", "greater_than_equal"),
        ({"prompt": "a cat", "size": "big"}, 422, "size", "size_format"),
        ({"prompt": "a cat", "size": "100x100"}, 422, "size", "size_multiple_of_8"),
        ({"prompt": "a cat", "size": "32x32"}, 422, "size", "size_range"),
        ({"prompt": "a cat", "model": "sdxl-nope"}, 404, "model", "known_model"),
        ({"prompt": "a cat", "model": "template"}, 404, "model", "known_model"),
        ({"prompt": "a cat", "size": "2048x512"}, 422, "size", "max_size"),  # demo-tiny's limit: 1024x1024
        ({"prompt": "a cat", "steps": 51}, 422, "steps", "max_steps"),  # demo-tiny's limit: 50
        ({"prompt": "a cat", "steps": 0}, 422, "steps", "greater_than_equal"),
        ({"template": "spring-sale", "fields": {"headline": "Hi", "cta": "Go"}, "steps": 4}, 422, "steps",
         "template_steps"),
        ({"prompt": "a cat", "colour": "red"}, 422, "colour", "extra_forbidden"),
        ({"prompt": "a cat", "fields": {"a": "b"}}, 422, "fields", "prompt_no_fields"),
        ({"prompt": "a cat", "template": "spring-sale"}, 422, "prompt", "prompt_xor_template"),
        ({"template": "nope", "fields": {}}, 422, "template", "known_template"),
        ({"template": "spring-sale", "fields": {"cta": "Go"}}, 422, "fields.headline", "required"),
        ({"template": "spring-sale", "fields": {"headline": "Hi", "cta": "Go", "x": "y"}}, 422, "fields.x",
         "unknown_field"),
        ({"template": "spring-sale", "fields": {"headline": 5, "cta": "Go"}}, 422, "fields.headline", "string_type"),
        ({"template": "spring-sale", "fields": {"headline": "Hi", "cta": "Go"}, "size": "64x64"}, 422, "size",
         "template_size"),
        ({"template": "spring-sale", "fields": {"headline": "Hi", "cta": "Go"}, "model": "demo-tiny"}, 422, "model",
         "template_model"),
        ({"template": "product-square", "fields": {"headline": "Supercalifragilisticexpialidocious" * 3, "cta": "Go"}},
         422, "fields.headline", "text_fits"),
    ],
)
def test_bad_body_gets_4xx_naming_field_and_rule(gateway: Any, body: dict, status: int, field: str, rule: str) -> None:
    app = gateway.key()
    before = counts(gateway)
    resp = gateway.client.post("/v1/generations", json=body, headers=app)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    problem = resp.json()
    assert problem["status"] == status
    assert problem["field"] == field
    assert problem["rule"] == rule
    assert field.split(".")[-1] in problem["detail"]
    assert counts(gateway) == before


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"{not json", "application/json"), (b"[1, 2]", "application/json"), (b"", "application/json")],
)
def test_malformed_json_is_400(gateway: Any, content: bytes, content_type: str) -> None:
    resp = gateway.client.post(
        "/v1/generations", content=content, headers={**gateway.key(), "Content-Type": content_type}
    )
    assert resp.status_code in (400, 422), resp.text
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["detail"]


def test_body_over_limit_is_413_with_and_without_content_length(make_gateway: Any) -> None:
    gw = make_gateway(max_body_bytes=2048)
    app = gw.key()
    big = b'{"prompt": "' + b"a" * 4096 + b'"}'
    resp = gw.client.post("/v1/generations", content=big, headers={**app, "Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["limit"] == 2048

    def chunks() -> Any:
        yield big[:1000]
        yield big[1000:]

    resp = gw.client.post("/v1/generations", content=chunks(), headers={**app, "Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.headers["content-type"] == PROBLEM


def test_unknown_route_and_method_are_problems(gateway: Any) -> None:
    resp = gateway.client.get("/v1/nope")
    assert resp.status_code == 404 and resp.headers["content-type"] == PROBLEM
    resp = gateway.client.delete("/v1/generations")
    assert resp.status_code == 405 and resp.headers["content-type"] == PROBLEM


@pytest.mark.parametrize("body", [
    b'{"prompt": "a cat \\ud800 on a mat"}',  # a high surrogate alone
    b'{"prompt": "a cat \\udc00"}',  # a low surrogate alone
    b'{"template": "product-square", "fields": {"headline": "\\uDBFF", "cta": "Go"}}',
])
def test_an_unpaired_surrogate_escape_is_refused_at_the_edge(gateway: Any, body: bytes) -> None:
    """JSON allows ``\\ud800``; it is no Unicode character, and it once crashed the process inside regorus."""
    resp = gateway.client.post("/v1/generations", content=body,
                               headers={**gateway.key(), "Content-Type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["rule"] == "unicode" and resp.json()["field"] == "body"
    assert gateway.client.get("/healthz").status_code == 200


def test_paired_surrogates_and_escaped_backslashes_pass(gateway: Any) -> None:
    app = {**gateway.key(), "Content-Type": "application/json"}
    emoji = gateway.client.post("/v1/generations", content=b'{"prompt": "a cat \\ud83d\\ude00 on a mat"}', headers=app)
    assert emoji.status_code == 200, emoji.text
    literal = gateway.client.post("/v1/generations", content=b'{"prompt": "a path C:\\\\ud800 cat"}', headers=app)
    assert literal.status_code == 200, literal.text
