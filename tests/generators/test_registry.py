"""The model registry file: checked before anything loads, errors name the entry, real pipelines behind it."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlmodel import Session

from gateway.cli import main
from generators.base import GenerationSpec
from generators.demo import ensure_demo_pipeline
from generators.diffusers_txt2img import directory_revision
from generators.registry import RegistryError, build_registry, load_registry_file, parse_registry

SOURCE = Path("/etc/mediagate/models.yaml")


@pytest.fixture(scope="module")
def demo_pipeline(models_dir: Path) -> Path:
    return ensure_demo_pipeline(models_dir / "demo-tiny")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [unclosed", "not valid YAML"),
        ("models: {}", "`models` is empty"),
        ("other: 1", "one key, `models`"),
        ("models:\n  Bad Name:\n    backend: template", "entry 'Bad Name': names are"),
        ("models:\n  sdxl:\n    backend: onnx\n    path: x", "entry 'sdxl': unknown backend 'onnx'"),
        ("models:\n  sdxl:\n    backend: diffusers-txt2img", "entry 'sdxl': backend 'diffusers-txt2img' needs `path`"),
        ("models:\n  sdxl:\n    backend: template\n    colour: red", "entry 'sdxl': `colour`: Extra inputs"),
        ("models:\n  sdxl:\n    backend: template\n    tier: draft", "entry 'sdxl': `tier`"),
        ("models:\n  m:\n    backend: diffusers-txt2img\n    path: m\n    limits: {max_steps: 4, default_steps: 8}",
         "entry 'm': `limits`: Value error, default_steps 8 is above max_steps 4"),
        ("models:\n  m:\n    backend: diffusers-txt2img\n    path: m\n    limits: {max_width: 100}",
         "entry 'm': `limits.max_width`: Input should be a multiple of 8"),
        ("models:\n  m:\n    backend: diffusers-txt2img\n    path: m\n    limits: {default_size: 2048x512}",
         "entry 'm': `limits`: Value error, default_size 2048x512 must be multiples of 8 within"),
    ],
)
def test_bad_registry_files_are_refused_naming_file_and_entry(text: str, message: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_registry(SOURCE, text)
    assert str(caught.value).startswith(f"model registry {SOURCE}")
    assert message in str(caught.value)


def test_entries_resolve_paths_against_the_file_and_keep_their_limits() -> None:
    specs = parse_registry(SOURCE, """
models:
  sd-turbo:
    backend: diffusers-txt2img
    path: weights/sd-turbo
    tier: preview
    limits: {max_width: 768, max_height: 512, max_steps: 4, default_steps: 1, default_guidance: 0.0,
             default_size: 512x512}
  banners:
    backend: template
""")
    turbo, banners = specs
    assert turbo.path == Path("/etc/mediagate/weights/sd-turbo") and turbo.tier == "preview"
    assert (turbo.limits.max_width, turbo.limits.max_height, turbo.limits.max_steps) == (768, 512, 4)
    assert (turbo.limits.default_width, turbo.limits.default_steps, turbo.limits.default_guidance) == (512, 1, 0.0)
    assert banners.backend == "template" and banners.path is None


def test_a_missing_or_corrupt_model_directory_names_the_entry(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    registry = tmp_path / "models.yaml"
    registry.write_text("models:\n  gone:\n    backend: diffusers-txt2img\n    path: nowhere\n")
    with pytest.raises(RegistryError, match=r"entry 'gone': directory '.*nowhere' does not exist"):
        load_registry_file(registry)
    registry.write_text("models:\n  hollow:\n    backend: diffusers-txt2img\n    path: empty\n")
    with pytest.raises(RegistryError, match=r"entry 'hollow': .* has no model_index.json"):
        load_registry_file(registry)


def test_a_registry_file_loads_real_pipelines_with_their_scheduler(tmp_path: Path, demo_pipeline: Path) -> None:
    registry = tmp_path / "models.yaml"
    registry.write_text(f"""
models:
  tiny-euler:
    backend: diffusers-txt2img
    path: {demo_pipeline}
    dtype: float32
    device: cpu
    scheduler: EulerDiscreteScheduler
    tier: preview
    limits: {{max_width: 256, max_height: 256, max_steps: 4, default_steps: 2, default_guidance: 1.0,
             default_size: 128x128}}
  template:
    backend: template
""")
    loaded = build_registry(load_registry_file(registry), template_dirs=[], source=registry)
    assert loaded.names() == ["template", "tiny-euler"]
    entry = loaded.get("tiny-euler")
    assert entry is not None
    assert entry.generator.revision == directory_revision(demo_pipeline)
    assert type(entry.generator._pipe.scheduler).__name__ == "EulerDiscreteScheduler"  # type: ignore[attr-defined]
    assert entry.describe()["limits"]["max_steps"] == 4 and entry.describe()["tier"] == "preview"


def test_an_unknown_scheduler_names_the_entry(tmp_path: Path, demo_pipeline: Path) -> None:
    registry = tmp_path / "models.yaml"
    registry.write_text(f"models:\n  tiny:\n    backend: diffusers-txt2img\n    path: {demo_pipeline}\n"
                        "    scheduler: NotAScheduler\n")
    with pytest.raises(RegistryError, match=r"entry 'tiny': `scheduler` 'NotAScheduler' is not a diffusers"):
        load_registry_file(registry)


def test_corrupt_weights_leave_the_model_unavailable_and_the_gateway_unready(
    tmp_path: Path, demo_pipeline: Path, make_gateway: Any, make_policy_dir: Any
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(demo_pipeline, broken)
    weights = next((broken / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated, as by a failed copy
    registry = tmp_path / "models.yaml"
    registry.write_text(f"models:\n  good:\n    backend: diffusers-txt2img\n    path: {demo_pipeline}\n"
                        f"  broken:\n    backend: diffusers-txt2img\n    path: {broken}\n"
                        "  template:\n    backend: template\n")
    loaded = build_registry(load_registry_file(registry), template_dirs=[], source=registry)
    assert loaded.unavailable().keys() == {"broken"} and "cannot be loaded from" in loaded.unavailable()["broken"]

    policies = make_policy_dir(tenants={"studio": {"models": ["good", "broken", "template"]}})
    gw = make_gateway(registry=loaded, default_model="good", policy_dir=policies)
    studio = gw.key("studio")
    ready = gw.client.get("/readyz")
    assert ready.status_code == 503 and "broken" in ready.json()["detail"]
    listed = {m["name"]: m for m in gw.client.get("/v1/models", headers=studio).json()["data"]}
    assert listed["broken"]["status"] == "unavailable" and listed["good"]["status"] == "ready"
    before = gw.client.get("/v1/audit/entries", headers=studio).json()
    refused = gw.client.post("/v1/generations", json={"prompt": "a cat", "model": "broken"}, headers=studio)
    assert refused.status_code == 503 and "broken" in refused.json()["detail"]
    assert gw.client.get("/v1/audit/entries", headers=studio).json() == before  # nothing happened
    assert gw.client.post("/v1/generations", json={"prompt": "a cat"}, headers=studio).status_code == 200


def test_serve_refuses_to_start_on_a_bad_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.yaml").write_text("models:\n  sdxl:\n    backend: onnx\n    path: x\n")
    monkeypatch.setenv("MEDIAGATE_HOME", str(home))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "entry 'sdxl': unknown backend 'onnx'" in err and str(home / "models.yaml") in err


def test_models_lists_what_the_tenants_policy_allows(gateway: Any) -> None:
    demo = gateway.client.get("/v1/models", headers=gateway.key("demo")).json()["data"]
    assert [m["name"] for m in demo] == ["demo-tiny", "demo-tiny-img2img", "demo-tiny-preview", "template"]
    assert [m["tier"] for m in demo] == ["final", "final", "preview", "final"]
    assert demo[1]["backend"] == "diffusers-img2img"
    tiny = demo[0]
    assert tiny["backend"] == "diffusers-txt2img" and tiny["revision"].startswith("sha256:")
    assert tiny["limits"]["max_width"] == 1024 and tiny["limits"]["default_size"] == "128x128"
    restricted = gateway.client.get("/v1/models", headers=gateway.key("restricted")).json()["data"]
    assert [m["name"] for m in restricted] == ["template"]
    assert gateway.client.get("/v1/models").status_code == 401


def test_requested_steps_reach_the_pipeline_and_the_audit_entry(gateway: Any) -> None:
    resp = gateway.client.post("/v1/generations", json={"prompt": "a red bicycle", "steps": 1, "seed": 5},
                               headers=gateway.key())
    assert resp.status_code == 200, resp.text
    default = gateway.client.post("/v1/generations", json={"prompt": "a red bicycle", "seed": 5},
                                  headers=gateway.key())
    rt = gateway.runtime
    with Session(rt.db) as s:
        stepped = rt.audit.get(s, resp.json()["audit_entry"])
        plain = rt.audit.get(s, default.json()["audit_entry"])
    assert stepped.payload["request"]["steps"] == 1
    assert plain.payload["request"]["steps"] == rt.registry.get("demo-tiny").spec.limits.default_steps
    # the edge hands the value to the generator, which renders it: same seed, other steps, other pixels
    generator = rt.registry.get("demo-tiny").generator
    spec = GenerationSpec(model="demo-tiny", width=128, height=128, prompt="a red bicycle", seed=5, steps=1)
    one, again = (np.asarray(generator.generate(spec)[0].image) for _ in range(2))
    two = np.asarray(generator.generate(dataclasses.replace(spec, steps=2))[0].image)
    assert np.array_equal(one, again) and not np.array_equal(one, two)
