"""End-to-end through HTTP: real SQLite, real regorus on the real bundle, the tiny diffusers pipeline, real NSFW."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from audit import watermark
from audit.c2pa_manifest import read_manifest
from gateway.policy.bundle import load_bundle
from gateway.settings import REPO_POLICIES

PROBLEM = "application/problem+json"


def generate(gw: Any, headers: dict[str, str], **body: Any) -> Any:
    body.setdefault("prompt", "a red bicycle leaning on a wall")
    body.setdefault("seed", 7)
    body.setdefault("size", "128x128")
    return gw.client.post("/v1/generations", json=body, headers=headers)


def test_clean_prompt_is_released_with_asset_and_audit_entry(gateway: Any) -> None:
    app = gateway.key("demo", "app")
    resp = generate(gateway, app, n=2)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["decision"] == "release"
    assert body["reasons"] == []
    assert len(body["assets"]) == 2
    assert body["policy"]["revision"] == gateway.runtime.policy.revision == load_bundle(REPO_POLICIES).label
    for asset in body["assets"]:
        got = gateway.client.get(asset["url"], headers=app)
        assert got.status_code == 200
        assert got.headers["content-type"] == "image/png"
        assert hashlib.sha256(got.content).hexdigest() == asset["sha256"]
        assert Image.open(io.BytesIO(got.content)).size == (128, 128)
        report = read_manifest(got.content, "image/png", gateway.runtime.settings.keys.ca_cert.read_bytes())
        assert report.trusted and report.claims is not None  # released files carry our signed C2PA manifest
        assert report.claims.audit_entry_hash == body["audit_entry_hash"]
        assert report.claims.watermark_id == asset["watermark_id"]
        mark = watermark.decode(Image.open(io.BytesIO(got.content)))
        assert mark.mark_id is not None and mark.mark_id.hex() == asset["watermark_id"]
    assert [a["seed"] for a in body["assets"]] == [7, 8]

    entry = gateway.client.get(f"/v1/audit/entries/{body['audit_entry']}", headers=app)
    assert entry.status_code == 200
    payload = entry.json()["payload"]
    assert entry.json()["hash"] == body["audit_entry_hash"]
    assert payload["decision"] == "release"
    assert payload["generation_id"] == body["id"]
    assert [i["sha256"] for i in payload["images"]] == [a["pixels_sha256"] for a in body["assets"]]
    assert [i["watermark_id"] for i in payload["images"]] == [a["watermark_id"] for a in body["assets"]]
    assert all(i["card"]["complete"] for i in payload["images"])
    assert 0.0 <= payload["images"][0]["card"]["scores"]["nsfw"]["nsfw"] < 0.4
    assert payload["pre"]["result"] == "allow"

    gen = gateway.client.get(f"/v1/generations/{body['id']}", headers=app)
    assert gen.status_code == 200 and gen.json()["decision"] == "release"


def test_same_seed_same_pixels_up_to_the_watermark(gateway: Any) -> None:
    """The generator is deterministic; each release then carries its own watermark, a change far below visibility."""
    app = gateway.key()

    def pixels(seed: int) -> tuple[np.ndarray, str]:
        asset = generate(gateway, app, seed=seed).json()["assets"][0]
        png = gateway.client.get(asset["url"], headers=app).content
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64), asset["watermark_id"]

    (first, mark1), (second, mark2), (other, _) = pixels(123), pixels(123), pixels(124)

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(255**2 / max(np.mean((a - b) ** 2), 1e-12)))

    assert mark1 != mark2
    assert psnr(first, second) > 35.0
    assert psnr(first, other) < 25.0


@pytest.mark.parametrize(
    ("tenant", "body", "code"),
    [
        ("demo", {"prompt": "a castle covered in gore"}, "prompt.banned_term"),
        ("demo", {"prompt": "a cat", "negative_prompt": "Gore"}, "prompt.banned_term"),
        ("acme", {"prompt": "the competitorco logo"}, "prompt.banned_term"),
        ("restricted", {"prompt": "a cat"}, "model.not_allowed"),
        ("demo", {"prompt": "a cat", "n": 5}, "request.n_exceeds_max"),
        ("demo", {"prompt": "a cat", "size": "1024x512"}, "request.size_exceeds_max"),
    ],
)
def test_pre_policy_denial_is_403_with_codes_and_audited(gateway: Any, tenant: str, body: dict, code: str) -> None:
    app = gateway.key(tenant)
    resp = generate(gateway, app, **body)
    assert resp.status_code == 403, resp.text
    assert resp.headers["content-type"] == PROBLEM
    problem = resp.json()
    assert problem["type"].endswith("/policy-denied")
    assert code in problem["codes"]
    entry = gateway.client.get(f"/v1/audit/entries/{problem['audit_entry']}", headers=app).json()
    assert entry["kind"] == "generation.denied"
    assert code in [r["code"] for r in entry["payload"]["pre"]["reasons"]]
    from sqlmodel import Session, select

    from gateway.models import Asset

    with Session(gateway.runtime.db) as s:
        assert s.exec(select(Asset)).all() == []


def test_template_request_renders_and_is_released(gateway: Any) -> None:
    app = gateway.key()
    listed = gateway.client.get("/v1/templates", headers=app)
    assert listed.status_code == 200
    ids = [t["id"] for t in listed.json()["data"]]
    assert "spring-sale" in ids
    resp = gateway.client.post("/v1/generations", headers=app, json={
        "template": "spring-sale", "fields": {"headline": "Spring sale", "subline": "Up to 30% off", "cta": "Shop now"},
    })
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["decision"] == "release"
    png = gateway.client.get(body["assets"][0]["url"], headers=app).content
    assert Image.open(io.BytesIO(png)).size == (1024, 512)


def test_template_fields_are_checked_by_the_pre_policy(gateway: Any) -> None:
    app = gateway.key()
    resp = gateway.client.post("/v1/generations", headers=app, json={
        "template": "spring-sale", "fields": {"headline": "Gore sale", "cta": "Shop now"},
    })
    assert resp.status_code == 403
    assert resp.json()["codes"] == ["prompt.banned_term"]


def test_templates_listing_follows_policy(gateway: Any) -> None:
    resp = gateway.client.get("/v1/templates", headers=gateway.key("demo"))
    assert {"spring-sale", "product-square"} <= {t["id"] for t in resp.json()["data"]}


def test_foreign_tenant_sees_404_for_everything(gateway: Any) -> None:
    mine, theirs = gateway.key("demo"), gateway.key("other")
    body = generate(gateway, mine).json()
    for path in (body["assets"][0]["url"], f"/v1/generations/{body['id']}", f"/v1/audit/entries/{body['audit_entry']}"):
        resp = gateway.client.get(path, headers=theirs)
        assert resp.status_code == 404, path
        assert resp.headers["content-type"] == PROBLEM
    listed = gateway.client.get("/v1/audit/entries", headers=theirs).json()["data"]
    assert listed == []


def test_roles_are_enforced(gateway: Any) -> None:
    reviewer = gateway.key("demo", "reviewer")
    resp = generate(gateway, reviewer)
    assert resp.status_code == 403
    assert resp.json()["type"].endswith("/forbidden")
    assert gateway.client.get("/v1/reviews", headers=gateway.key("demo", "app")).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer mg_nope"}, {"Authorization": "Bearer "}],
)
def test_missing_or_bad_key_is_401(gateway: Any, headers: dict[str, str]) -> None:
    resp = gateway.client.post("/v1/generations", json={"prompt": "a cat"}, headers=headers)
    assert resp.status_code == 401
    assert resp.headers["content-type"] == PROBLEM
    assert resp.headers["www-authenticate"].startswith("Bearer")


def test_health_ready_and_metrics(gateway: Any) -> None:
    assert gateway.client.get("/healthz").json() == {"status": "ok"}
    ready = gateway.client.get("/readyz")
    assert ready.status_code == 200
    assert set(ready.json()["models"]) == {"demo-tiny", "demo-tiny-img2img", "demo-tiny-preview", "template"}
    app = gateway.key()
    generate(gateway, app)
    generate(gateway, app, prompt="gore")
    text = gateway.client.get("/metrics").text
    assert 'mediagate_http_request_duration_seconds_count{method="POST",outcome="2xx",route="/v1/generations"}' in text
    assert 'mediagate_policy_decisions_total{code="prompt.banned_term",result="deny",stage="pre"} 1.0' in text
    assert 'mediagate_generation_duration_seconds_count{model="demo-tiny"} 1.0' in text
    assert 'mediagate_scoring_duration_seconds_count{scorer="nsfw"} 1.0' in text
    assert 'mediagate_stage_duration_seconds_count{stage="audit"}' in text


def test_readyz_is_503_when_the_database_is_gone(make_gateway: Any) -> None:
    import shutil

    gw = make_gateway()
    assert gw.client.get("/readyz").status_code == 200
    gw.runtime.db.dispose()
    shutil.rmtree(gw.home)  # the database file and its directory disappear under the running gateway
    resp = gw.client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["type"].endswith("/unavailable")


GLOBAL = {"headline": "Our new collection is here", "subline": "Designed for every city.", "cta": "Shop now"}


def _decided(gateway: Any, entry_id: str) -> dict[str, Any]:
    from sqlmodel import Session as _Session

    with _Session(gateway.runtime.db) as s:
        entry = gateway.runtime.audit.get(s, entry_id)
    assert entry is not None
    return dict(entry.payload)


def test_a_template_image_slot_is_filled_by_a_diffusion_render(gateway: Any) -> None:
    app = gateway.key()
    body = {"template": "global-launch", "fields": GLOBAL, "seed": 3,
            "images": {"hero": {"prompt": "mountains at dawn, wide shot"}}}
    resp = gateway.client.post("/v1/generations", json=body, headers=app)
    assert resp.status_code == 200, resp.text
    payload = _decided(gateway, resp.json()["audit_entry"])
    assert payload["request"]["image_prompts"]["hero"]["prompt"] == "mountains at dawn, wide shot"
    hero = payload["generator"]["image_slots"]["hero"]
    assert hero["model"] == "demo-tiny" and hero["revision"].startswith("sha256:") and hero["seed"] == 1003
    plain = gateway.client.post("/v1/generations", json={**body, "images": None}, headers=app).json()
    with_hero = gateway.client.get(resp.json()["assets"][0]["url"], headers=app).content
    without = gateway.client.get(plain["assets"][0]["url"], headers=app).content
    top = (0, 0, 1080, 600)  # the hero's box: rendered pixels there, the plain background otherwise
    a = np.asarray(Image.open(io.BytesIO(with_hero)).convert("RGB").crop(top), dtype=np.float64)
    b = np.asarray(Image.open(io.BytesIO(without)).convert("RGB").crop(top), dtype=np.float64)
    assert np.abs(a - b).mean() > 10


@pytest.mark.parametrize(
    ("tenant", "body", "status", "expect"),
    [
        ("demo", {"images": {"hero": {"prompt": "a castle covered in gore"}}}, 403, "prompt.banned_term"),
        ("restricted", {"images": {"hero": {"prompt": "mountains"}}}, 403, "image_model.not_allowed"),
        ("demo", {"images": {"logo": {"prompt": "mountains"}}}, 422, "unknown_image_slot"),
        ("demo", {"images": {"hero": {"prompt": " "}}}, 422, "non_empty"),
    ],
)
def test_image_slot_prompts_are_governed(gateway: Any, tenant: str, body: dict, status: int, expect: str) -> None:
    resp = gateway.client.post("/v1/generations", json={"template": "global-launch", "fields": GLOBAL, **body},
                               headers=gateway.key(tenant))
    assert resp.status_code == status, resp.text
    problem = resp.json()
    assert expect in (problem.get("codes") or [problem.get("rule")])


def test_a_locale_batch_is_one_request_with_a_banner_per_locale(gateway: Any) -> None:
    from generators.template_samples import SAMPLES

    app = gateway.key()
    locales = [{"locale": tag, "fields": SAMPLES[tag]} for tag in ("de", "ja", "ar", "ru")]
    resp = gateway.client.post("/v1/generations", json={"template": "global-launch", "locales": locales, "seed": 9},
                               headers=app)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["assets"]) == 4
    payload = _decided(gateway, resp.json()["audit_entry"])
    assert [i["locale"] for i in payload["images"]] == ["de", "ja", "ar", "ru"]
    assert [loc["locale"] for loc in payload["request"]["locales"]] == ["de", "ja", "ar", "ru"]
    pngs = {gateway.client.get(a["url"], headers=app).content for a in resp.json()["assets"]}
    assert len(pngs) == 4


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"locales": [{"locale": "de", "fields": {**GLOBAL, "headline": "Sehr " * 40}}]}, "locales.de.fields.headline",
         "max_chars"),
        ({"locales": [{"locale": "de", "fields": GLOBAL}, {"locale": "DE", "fields": GLOBAL}]}, "locales.DE",
         "unique_locale"),
        ({"locales": [{"locale": "de", "fields": GLOBAL}], "fields": GLOBAL}, "locales", "locales_xor_fields"),
        ({"locales": [{"locale": "de", "fields": GLOBAL}], "n": 2}, "n", "one_per_locale"),
        ({"locales": [{"locale": f"x-{i:03d}", "fields": GLOBAL} for i in range(101)]}, "locales", "too_long"),
    ],
)
def test_bad_locale_batches_name_the_locale_and_the_slot(gateway: Any, body: dict, field: str, rule: str) -> None:
    resp = gateway.client.post("/v1/generations", json={"template": "global-launch", **body}, headers=gateway.key())
    assert resp.status_code == 422, resp.text
    assert (resp.json()["field"], resp.json()["rule"]) == (field, rule)


def test_image_to_image_starts_from_a_released_asset_of_the_tenant(gateway: Any) -> None:
    app = gateway.key()
    first = gateway.client.post("/v1/generations", json={"prompt": "a red bicycle", "seed": 21}, headers=app).json()
    asset = first["assets"][0]
    body = {"prompt": "a red bicycle, watercolour", "model": "demo-tiny-img2img", "init_image": asset["id"],
            "strength": 0.5, "seed": 22}
    resp = gateway.client.post("/v1/generations", json=body, headers=app)
    assert resp.status_code == 200, resp.text
    payload = _decided(gateway, resp.json()["audit_entry"])
    assert payload["request"]["init_image"]["asset_id"] == asset["id"]
    assert payload["request"]["init_image"]["sha256"] == _decided(gateway, first["audit_entry"])["images"][0]["sha256"]
    assert payload["request"]["strength"] == 0.5 and payload["generator"]["cache"] == "off"

    def pixels(a: dict[str, Any]) -> np.ndarray:
        png = gateway.client.get(a["url"], headers=app).content
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)

    # the same seed and prompt: closer to the starting image at low strength than at full strength
    far = gateway.client.post("/v1/generations", json={**body, "strength": 1.0}, headers=app).json()
    start = pixels(asset)
    near_diff = np.abs(pixels(resp.json()["assets"][0]) - start).mean()
    far_diff = np.abs(pixels(far["assets"][0]) - start).mean()
    assert near_diff < far_diff


@pytest.mark.parametrize(
    ("body", "status", "field", "rule"),
    [
        ({"model": "demo-tiny-img2img"}, 422, "init_image", "required"),
        ({"model": "demo-tiny-img2img", "init_image": "ast_00000000000000000000"}, 422, "init_image", "known_asset"),
        ({"init_image": "ast_00000000000000000000"}, 422, "init_image", "model_backend"),
        ({"strength": 0.5}, 422, "strength", "model_backend"),
        ({"model": "demo-tiny-img2img", "init_image": "x", "strength": 1.5}, 422, "strength", "less_than_equal"),
    ],
)
def test_bad_image_to_image_requests(gateway: Any, body: dict, status: int, field: str, rule: str) -> None:
    resp = gateway.client.post("/v1/generations", json={"prompt": "a cat", **body}, headers=gateway.key())
    assert resp.status_code == status, resp.text
    assert (resp.json()["field"], resp.json()["rule"]) == (field, rule)


def test_another_tenants_asset_cannot_be_a_starting_image(gateway: Any) -> None:
    theirs = gateway.client.post("/v1/generations", json={"prompt": "a red bicycle"}, headers=gateway.key("acme"))
    asset_id = theirs.json()["assets"][0]["id"]
    resp = gateway.client.post("/v1/generations", json={"prompt": "a cat", "model": "demo-tiny-img2img",
                                                        "init_image": asset_id}, headers=gateway.key("demo"))
    assert resp.status_code == 422 and resp.json()["rule"] == "known_asset"
