"""``POST /v1/score``: uploaded images through the gateway's scorers and release policy, audited, never stored."""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlmodel import Session, func, select

from audit.sql_store import AuditRow


def png(image: Image.Image, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **params)
    return out.getvalue()


def photo(seed: int = 0, size: tuple[int, int] = (128, 96)) -> Image.Image:
    """A textured, mid-grey-ish RGB image that the perceptual scorer finds sharp and well exposed."""
    rng = np.random.default_rng(seed)
    base = np.linspace(60, 190, size[0])[None, :, None] + rng.normal(0, 25, (size[1], size[0], 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def audit_count(gw: Any) -> int:
    with Session(gw.runtime.db) as session:
        return int(session.exec(select(func.count()).select_from(AuditRow)).one())


def post(gw: Any, headers: dict[str, str], files: list[tuple[str, bytes]], **form: Any) -> Any:
    return gw.client.post("/v1/score", headers=headers,
                          files=[("image", (name, data)) for name, data in files], data=form)


def test_scores_uploads_decides_and_audits_without_storing(gateway: Any) -> None:
    app = gateway.key("demo", "app")
    images = [png(photo(1)), png(photo(2, (64, 64)).convert("L"))]
    before = audit_count(gateway)
    resp = post(gateway, app, [("a.png", images[0]), ("b.png", images[1])], prompt="a grey photo")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["decision"] == "release", body
    assert [im["sha256"] for im in body["images"]] == [hashlib.sha256(d).hexdigest() for d in images]
    assert [(im["width"], im["height"]) for im in body["images"]] == [(128, 96), (64, 64)]
    for im in body["images"]:
        assert im["card"]["complete"] is True
        assert set(im["card"]["scores"]) == {s.name for s in gateway.runtime.scorers}
    assert audit_count(gateway) == before + 1
    entry = gateway.client.get(f"/v1/audit/entries/{body['audit_entry']}", headers=app).json()
    assert entry["kind"] == "score.decided"
    assert entry["payload"]["images"][0]["card"] == body["images"][0]["card"]
    assert entry["payload"]["request"]["prompt"] == "a grey photo"
    assert not list((gateway.home / "assets").rglob("*.png"))  # scoring stores no image


def test_a_failed_scorer_holds_the_upload_for_review(make_gateway: Any, shared_scorers: Any) -> None:
    class Broken:
        name, version, fields = "broken", "1", {"x": "float"}

        def score(self, images: Any, context: Any) -> list[dict[str, float]]:
            raise RuntimeError("weights unreadable")

    gw = make_gateway(scorers=[*shared_scorers, Broken()])
    body = post(gw, gw.key(), [("a.png", png(photo()))]).json()
    assert body["decision"] == "review"
    assert "score.incomplete" in body["codes"]
    assert body["images"][0]["card"]["failed"] == {"broken": "RuntimeError: weights unreadable"}


def _bomb() -> bytes:
    """A valid PNG header declaring 30000x30000 pixels, followed by almost nothing."""
    ihdr = b"IHDR" + (30000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    chunk = len(ihdr[4:]).to_bytes(4, "big") + ihdr + zlib.crc32(ihdr).to_bytes(4, "big")
    idat_data = zlib.compress(b"\x00" * 1000)
    idat = len(idat_data).to_bytes(4, "big") + b"IDAT" + idat_data + zlib.crc32(b"IDAT" + idat_data).to_bytes(4, "big")
    return b"\x89PNG\r\n\x1a\n" + chunk + idat


def _zero_width() -> bytes:
    ihdr = b"IHDR" + (0).to_bytes(4, "big") + (10).to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + ihdr + zlib.crc32(ihdr).to_bytes(4, "big")


def _jpeg(mode: str) -> bytes:
    out = io.BytesIO()
    Image.new(mode, (32, 32)).save(out, format="JPEG")
    return out.getvalue()


BAD: dict[str, tuple[Callable[[], bytes], int, str]] = {
    "empty file": (lambda: b"", 422, "non_empty"),
    "not an image": (lambda: b"%PDF-1.7 definitely not a picture", 422, "image_format"),
    "zero-size png": (_zero_width, 422, "image_format"),
    "truncated png": (lambda: png(photo())[:300], 422, "image_integrity"),
    "decompression bomb": (_bomb, 413, "max_pixels"),
    "cmyk jpeg": (lambda: _jpeg("CMYK"), 422, "color_mode"),
    "16-bit png": (lambda: png(Image.fromarray(np.full((16, 16), 40000, np.uint16))), 422, "color_mode"),
    "alpha png": (lambda: png(Image.new("RGBA", (16, 16), (10, 20, 30, 128))), 422, "color_mode"),
    "palette png": (lambda: png(photo().convert("P")), 422, "color_mode"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_uploads_are_refused_naming_the_problem_and_change_nothing(gateway: Any, case: str) -> None:
    make, status, rule = BAD[case]
    before = audit_count(gateway)
    resp = post(gateway, gateway.key(), [("ok.png", png(photo())), ("bad", make())])
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["field"] == "image[1]" and problem["rule"] == rule
    assert audit_count(gateway) == before


def test_an_opaque_alpha_channel_is_accepted(gateway: Any) -> None:
    resp = post(gateway, gateway.key(), [("a.png", png(photo().convert("RGBA")))])
    assert resp.status_code == 200, resp.text


def test_too_many_images_and_bad_form_fields(make_gateway: Any) -> None:
    gw = make_gateway(score_max_images=2)
    app = gw.key()
    data = png(photo())
    resp = post(gw, app, [("a", data)] * 3)
    assert resp.status_code == 413 and resp.json()["rule"] == "max_images"
    assert post(gw, app, []).status_code == 422  # no `image` at all
    resp = post(gw, app, [("a", data)], brand="no-such-brand")
    assert resp.status_code == 422 and resp.json()["field"] == "brand" and resp.json()["rule"] == "known_brand"
    resp = post(gw, app, [("a", data)], locale="x")
    assert resp.status_code == 422 and resp.json()["field"] == "locale"
    assert audit_count(gw) == audit_count(gw)  # reading twice is stable
    resp = post(gw, app, [("a", data)], expected_text=" ")
    assert resp.status_code == 422 and resp.json()["field"] == "expected_text"


def test_roles_and_authentication(gateway: Any) -> None:
    data = png(photo())
    assert post(gateway, {}, [("a", data)]).status_code == 401
    assert post(gateway, gateway.key("demo", "reviewer"), [("a", data)]).status_code == 403
    assert post(gateway, gateway.key("demo", "auditor"), [("a", data)]).status_code == 200


def test_upload_size_limit_is_its_own(make_gateway: Any) -> None:
    gw = make_gateway(score_max_upload_bytes=4096)
    resp = post(gw, gw.key(), [("a.png", png(photo(size=(256, 256))))])
    assert resp.status_code == 413
    assert json.loads(resp.text)["status"] == 413
