"""Brand kits through the gateway: a request naming a brand is scored against the tenant's kit, and audited with it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gateway.cli import main

BANNER = {"template": "product-square", "fields": {"headline": "Autumn boots", "cta": "Shop now"}}


def write_kit(brands_dir: Path, tenant: str = "demo", brand: str = "autumn", **extra: str) -> Path:
    kit = brands_dir / tenant / brand
    kit.mkdir(parents=True)
    Image.new("RGB", (64, 64), (200, 90, 30)).save(kit / "ref.png")
    lines = ['palette: ["#c85a1e", "#ffffff", "#1d3557"]', "palette_max_delta_e: 15", "references: [ref.png]",
             "descriptors: [warm autumn colours, bold product banner]", "off_brand: [grainy dark photograph]",
             *(f"{k}: {v}" for k, v in extra.items())]
    (kit / "brand.yaml").write_text("\n".join(lines) + "\n")
    return kit


def test_a_generation_naming_a_brand_is_scored_against_the_kit_and_audited_with_it(
        make_gateway: Any, tmp_path: Path) -> None:
    brands = tmp_path / "brands"
    write_kit(brands)
    gw = make_gateway(brands_dir=brands)
    app = gw.key()
    body = gw.client.post("/v1/generations", headers=app, json={**BANNER, "brand": "autumn"}).json()
    entry = gw.client.get(f"/v1/audit/entries/{body['audit_entry']}", headers=app).json()["payload"]
    assert entry["request"]["brand"] == "autumn"
    kit = gw.runtime.scoring.brands.get("demo", "autumn")
    assert entry["brand_kit"] == {"brand": "autumn", "revision": kit.revision}
    brand_scores = entry["images"][0]["card"]["scores"]["brand"]
    assert 0.0 <= brand_scores["score"] <= 1.0 and 0.0 <= brand_scores["palette_compliance"] <= 1.0
    # without a brand, the brand scorer does not apply
    plain = gw.client.post("/v1/generations", headers=app, json=BANNER).json()
    plain_entry = gw.client.get(f"/v1/audit/entries/{plain['audit_entry']}", headers=app).json()["payload"]
    assert plain_entry["images"][0]["card"]["scores"]["brand"] == {} and "brand_kit" not in plain_entry


def test_the_palette_decides_through_the_brand_thresholds(make_gateway: Any, tmp_path: Path) -> None:
    """acme's kit "acme-premium" gets the bundle's brand thresholds (min_palette_compliance 0.3): an upload in the
    palette passes that rule, one far from it is held naming it."""
    brands = tmp_path / "brands"
    write_kit(brands, tenant="acme", brand="acme-premium")
    gw = make_gateway(brands_dir=brands)
    app = gw.key("acme")

    def score(colour: tuple[int, int, int]) -> Any:
        out = io.BytesIO()
        Image.new("RGB", (96, 96), colour).save(out, format="PNG")
        return gw.client.post("/v1/score", headers=app, data={"brand": "acme-premium"},
                              files=[("image", ("x.png", out.getvalue()))]).json()

    on, off = score((200, 90, 30)), score((40, 220, 40))
    assert on["images"][0]["card"]["scores"]["brand"]["palette_compliance"] == 1.0
    assert off["images"][0]["card"]["scores"]["brand"]["palette_compliance"] == 0.0
    assert "brand.palette_below_min" not in on["codes"]
    assert "brand.palette_below_min" in off["codes"] and off["decision"] == "review"


def test_unknown_or_foreign_brands_are_refused_before_anything_runs(make_gateway: Any, tmp_path: Path) -> None:
    brands = tmp_path / "brands"
    write_kit(brands, tenant="acme", brand="acme-premium")
    gw = make_gateway(brands_dir=brands)
    resp = gw.client.post("/v1/generations", headers=gw.key("demo"), json={**BANNER, "brand": "acme-premium"})
    assert resp.status_code == 422 and resp.json()["rule"] == "known_brand"  # another tenant's kit
    assert "none" in resp.json()["detail"]
    resp = gw.client.post("/v1/generations", headers=gw.key("acme"), json={**BANNER, "brand": "nope"})
    assert resp.status_code == 422 and "acme-premium" in resp.json()["detail"]


def test_serve_refuses_a_broken_brand_kit_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    brands = tmp_path / "brands"
    write_kit(brands, palette_max_delta_e="-3")
    monkeypatch.setenv("MEDIAGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MEDIAGATE_BRANDS_DIR", str(brands))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "brand.yaml" in err and "palette_max_delta_e" in err
