"""Which scorers the gateway builds from its settings, and the interrogator end to end through the real wiring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.scoring import SCORERS, build_scorers, scorer_names
from gateway.settings import Settings


@pytest.mark.parametrize(("mode", "device", "expected"), [
    ("auto", "cpu", False),  # captioning costs seconds per image on a CPU: off unless asked for
    ("auto", "cuda", True),
    ("on", "cpu", True),
    ("off", "cuda", False),
])
def test_the_interrogator_is_off_on_a_cpu_unless_configured(mode: str, device: str, expected: bool) -> None:
    names = scorer_names(Settings(interrogator=mode, score_device=device))  # type: ignore[arg-type]
    assert ("interrogator" in names) is expected
    assert names[:7] == ["perceptual", "brisque", "nsfw", "nudity", "ocr", "brand", "alignment"]


def test_off_wins_over_an_explicit_list_and_unknown_names_are_refused() -> None:
    assert "interrogator" not in scorer_names(Settings(scorers=["perceptual", "interrogator"], interrogator="off"))
    with pytest.raises(ValueError, match="unknown scorers \\['aesthetics'\\]; known: perceptual"):
        scorer_names(Settings(scorers=["perceptual", "aesthetics"]))
    assert set(SCORERS) >= set(Settings().scorers)


def test_a_missing_clip_directory_stops_the_gateway_when_demo_models_are_off(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, scorers=["alignment"], init_demo_models=False,
                        clip_model_dir=tmp_path / "nowhere")
    with pytest.raises(Exception, match="nowhere"):
        build_scorers(settings)


def test_interrogator_caption_and_flavours_reach_the_audit_entry(make_gateway: Any, tmp_path: Path,
                                                                 models_dir: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "flavors.txt").write_text("\n".join(f"{a} {n}" for a in ("misty", "golden", "neon", "grainy")
                                                  for n in ("light", "texture", "mood")) + "\n")
    (labels / "mediums.txt").write_text("a photograph\nan oil painting\na 3D render\n")
    settings = Settings(home=tmp_path / "home", models_dir=models_dir, scorers=["perceptual", "nsfw"],
                        interrogator="on", interrogator_data_dir=labels)
    scorers = build_scorers(settings)  # builds the demo CLIP and BLIP where they are missing, like `serve`
    assert [s.name for s in scorers] == ["perceptual", "nsfw", "interrogator"]
    gw = make_gateway(scorers=scorers)
    app = gw.key()
    body = gw.client.post("/v1/generations", headers=app, json={"prompt": "a lighthouse", "size": "128x128"}).json()
    assert body.get("decision") in ("release", "review"), body
    entry = gw.client.get(f"/v1/audit/entries/{body['audit_entry']}", headers=app).json()["payload"]
    found = entry["images"][0]["card"]["scores"]["interrogator"]
    flavours = (labels / "flavors.txt").read_text().split("\n")
    assert isinstance(found["caption"], str) and len(found["flavors"]) == 3
    assert set(found["flavors"]) <= set(flavours)
    assert found["medium"] in ("a photograph", "an oil painting", "a 3D render")
    assert entry["images"][0]["card"]["versions"]["interrogator"].startswith("clip-interrogator-0.6.0:clip=")
