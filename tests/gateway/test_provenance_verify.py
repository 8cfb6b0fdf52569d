"""``POST /v1/provenance/verify``: from an image (even stripped and re-encoded) back to its audited release."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from audit.c2pa_manifest import C2paSigner, ProvenanceClaims
from audit.keys import init_signing
from gateway.cli import main

BANNER = {"template": "product-square", "fields": {"headline": "Autumn boots", "cta": "Shop now"}}


def released(gw: Any, app: dict[str, str]) -> tuple[dict[str, Any], bytes]:
    body = gw.client.post("/v1/generations", headers=app, json=BANNER).json()
    assert body["decision"] == "release", body
    return body, gw.client.get(body["assets"][0]["url"], headers=app).content


def verify(gw: Any, headers: dict[str, str], data: bytes, name: str = "x.png") -> Any:
    return gw.client.post("/v1/provenance/verify", headers=headers, files={"image": (name, data)})


def reencode(png: bytes, *, quality: int = 75, scale: float = 0.75) -> bytes:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.resize((int(image.width * scale), int(image.height * scale)), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)  # also drops the C2PA manifest
    return out.getvalue()


def test_the_released_file_verifies_with_a_proof(gateway: Any, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    app, auditor = gateway.key("demo", "app"), gateway.key("demo", "auditor")
    body, png = released(gateway, app)
    resp = verify(gateway, auditor, png)
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["verdict"] == "verified" and result["reasons"] == []
    assert result["exact_copy"] and result["c2pa"]["trusted"] and result["watermark"]["found"]
    assert result["audit_entry"]["id"] == body["audit_entry"]
    assert result["audit_entry"]["payload"]["request"]["template"] == "product-square"
    (tmp_path / "proof.json").write_text(json.dumps(result["proof"]))
    (tmp_path / "cp.note").write_text(result["proof"]["checkpoint"]["note"])
    assert main(["audit", "verify-proof", "--proof", str(tmp_path / "proof.json"), "--checkpoint",
                 str(tmp_path / "cp.note"), "--public-key", str(gateway.runtime.settings.keys.checkpoint_public)]) == 0


def test_stripped_reencoded_and_resized_copy_is_found_by_its_watermark(gateway: Any) -> None:
    app, auditor = gateway.key("demo", "app"), gateway.key("demo", "auditor")
    body, png = released(gateway, app)
    result = verify(gateway, auditor, reencode(png), "copy.jpg").json()
    assert result["c2pa"]["present"] is False and not result["exact_copy"]
    assert result["watermark"]["id"] == body["assets"][0]["watermark_id"]
    assert result["verdict"] == "verified" and result["audit_entry"]["id"] == body["audit_entry"]


def test_another_tenants_image_is_not_their_business(gateway: Any) -> None:
    _, png = released(gateway, gateway.key("demo", "app"))
    result = verify(gateway, gateway.key("other", "auditor"), png).json()
    assert result["verdict"] == "not_verified"
    assert "audit_entry" not in result and "asset" not in result
    assert "for this tenant" in result["reasons"][-1]


def test_an_image_we_never_made_is_not_verified(gateway: Any) -> None:
    out = io.BytesIO()
    Image.effect_mandelbrot((256, 256), (-2, -1.5, 1, 1.5), 64).convert("RGB").save(out, format="PNG")
    result = verify(gateway, gateway.key("demo", "auditor"), out.getvalue()).json()
    assert result["verdict"] == "not_verified" and not result["watermark"]["found"]


def test_a_forged_manifest_is_not_trusted(gateway: Any, tmp_path: Path) -> None:
    app, auditor = gateway.key("demo", "app"), gateway.key("demo", "auditor")
    body, _ = released(gateway, app)
    plain = io.BytesIO()
    Image.new("RGB", (256, 256), (200, 30, 30)).save(plain, format="PNG")
    with C2paSigner.from_directory(init_signing(tmp_path / "forger").directory) as forger:
        forged = forger.sign(plain.getvalue(), "image/png", ProvenanceClaims(
            model="demo-tiny", model_revision="x", policy_revision="x", audit_entry_id=body["audit_entry"],
            audit_entry_hash=body["audit_entry_hash"], tenant="demo", watermark_id=body["assets"][0]["watermark_id"],
        ))
    result = verify(gateway, auditor, forged).json()
    assert result["verdict"] == "not_verified"
    assert result["c2pa"]["present"] and not result["c2pa"]["trusted"]
    assert any("not signed by this gateway" in r for r in result["reasons"])


@pytest.mark.parametrize(
    ("data", "status", "rule"),
    [
        (b"", 422, "non_empty"),
        (b"not an image at all", 422, "image_format"),
    ],
)
def test_bad_uploads(gateway: Any, data: bytes, status: int, rule: str) -> None:
    resp = verify(gateway, gateway.key("demo", "auditor"), data)
    assert resp.status_code == status and resp.json()["rule"] == rule


def test_truncated_huge_and_missing_uploads(make_gateway: Any) -> None:
    gw = make_gateway(provenance_max_pixels=2_000_000)
    auditor = gw.key("demo", "auditor")
    _, png = released(gw, gw.key("demo", "app"))
    truncated = verify(gw, auditor, png[: len(png) // 2])
    assert truncated.status_code == 422 and truncated.json()["rule"] == "image_integrity"
    big = io.BytesIO()
    Image.new("RGB", (2000, 1200)).save(big, format="PNG")
    huge = verify(gw, auditor, big.getvalue())
    assert huge.status_code == 413 and huge.json()["rule"] == "max_pixels"
    missing = gw.client.post("/v1/provenance/verify", headers=auditor, data={"other": "x"})
    assert missing.status_code == 422 and missing.json()["field"] == "image"


def test_roles_and_public_mode(make_gateway: Any) -> None:
    gw = make_gateway()
    _, png = released(gw, gw.key("demo", "app"))
    assert verify(gw, gw.key("demo", "app"), png).status_code == 403
    assert verify(gw, {}, png).status_code == 401
    public = make_gateway(provenance_verify_public=True)
    _, png = released(public, public.key("demo", "app"))
    result = verify(public, {}, png).json()
    assert result["verdict"] == "verified"
    assert set(result["audit_entry"]) == {"id", "hash"}  # hashes and the proof, not the tenant's data
    assert "payload" not in result["proof"]["entry"]
