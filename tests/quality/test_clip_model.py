"""ClipModel loads open_clip's local-dir / hf-hub format (the tiny seeded CLIP goes through the production path),
encodes batches exactly as one-by-one, caches texts, and says clearly what is wrong with a bad directory."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from quality.clip_model import (
    CONFIG_FILE,
    TINY_CLIP_CONFIG,
    WEIGHT_FILES,
    ClipModel,
    ClipModelError,
    build_tiny_clip,
    resolve_device,
    write_clip_dir,
)

ImageFactory = Callable[..., Image.Image]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny", seed=0)


@pytest.fixture(scope="module")
def model(clip_dir: Path) -> ClipModel:
    return ClipModel(clip_dir, device="cpu")


@pytest.fixture
def make_image() -> ImageFactory:
    """Factory: a noise image from ``seed`` of ``size``, in ``mode``."""

    def make(seed: int = 0, size: tuple[int, int] = (96, 64), mode: str = "RGB") -> Image.Image:
        pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        return Image.fromarray(pixels, mode="RGB").convert(mode)

    return make


@pytest.fixture
def copy_clip(clip_dir: Path, tmp_path: Path) -> Callable[[], Path]:
    """Factory: a private copy of the tiny model directory, for tests that break it."""

    def make() -> Path:
        return Path(shutil.copytree(clip_dir, tmp_path / f"copy{len(list(tmp_path.iterdir()))}"))

    return make


def test_directory_is_open_clips_hf_hub_format(clip_dir: Path) -> None:
    config = json.loads((clip_dir / CONFIG_FILE).read_text())
    assert config["model_cfg"] == TINY_CLIP_CONFIG
    assert set(config["preprocess_cfg"]) == {"mean", "std", "interpolation", "resize_mode"}
    assert (clip_dir / "open_clip_model.safetensors").is_file()


def test_open_clip_itself_loads_the_directory_with_the_same_weights(clip_dir: Path, model: ClipModel) -> None:
    reference, _, _ = open_clip.create_model_and_transforms(f"local-dir:{clip_dir}")
    ours = model.model.state_dict()
    theirs = reference.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_same_seed_same_bytes_other_seed_other_revision(tmp_path: Path, model: ClipModel) -> None:
    again = ClipModel(build_tiny_clip(tmp_path / "again", seed=0), device="cpu")
    other = ClipModel(build_tiny_clip(tmp_path / "other", seed=1), device="cpu")
    assert again.revision == model.revision
    assert other.revision != model.revision


def test_revision_is_the_weights_sha256(clip_dir: Path, model: ClipModel) -> None:
    digest = hashlib.sha256((clip_dir / WEIGHT_FILES[0]).read_bytes()).hexdigest()
    assert model.revision == digest[:12]
    assert model.weights_path == clip_dir / WEIGHT_FILES[0]


def test_build_leaves_the_callers_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_clip(tmp_path / "m", seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_tokenizer_is_clips_bpe_with_the_config_context(model: ClipModel) -> None:
    assert isinstance(model.tokenizer, open_clip.SimpleTokenizer)
    assert model.tokenizer.context_length == 77
    texts = ["a red fox in the snow", "ein Fuchs"]
    assert torch.equal(model.tokenizer(texts), open_clip.tokenize(texts))


def test_preprocessing_is_the_models_image_size(model: ClipModel, make_image: ImageFactory) -> None:
    assert model.image_size == (32, 32)
    assert model.preprocess(make_image(size=(512, 300))).shape == (3, 32, 32)


def test_loads_on_cpu_in_eval_mode_with_the_models_temperature(model: ClipModel) -> None:
    assert model.device == torch.device("cpu")
    assert model.precision == "fp32"
    assert not model.model.training
    assert model.logit_scale == pytest.approx(1 / 0.07, rel=1e-5)  # open_clip's initial CLIP temperature


def test_image_embeddings_are_unit_float32_rows(model: ClipModel, make_image: ImageFactory) -> None:
    vectors = model.encode_images([make_image(i) for i in range(3)])
    assert vectors.shape == (3, TINY_CLIP_CONFIG["embed_dim"])
    assert vectors.dtype == torch.float32 and vectors.device.type == "cpu"
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert not vectors.requires_grad and not vectors.is_inference()


def test_image_embeddings_are_the_models_own(model: ClipModel, make_image: ImageFactory) -> None:
    images = [make_image(i, size=(200, 120)) for i in range(2)]
    with torch.no_grad():
        direct = model.model.encode_image(torch.stack([model.preprocess(im) for im in images]))
    assert torch.allclose(model.encode_images(images), F.normalize(direct, dim=-1), atol=1e-6)


def test_batches_match_one_by_one(model: ClipModel, make_image: ImageFactory) -> None:
    images = [make_image(i) for i in range(5)]
    batched = model.encode_images(images, batch_size=2)  # chunks of 2, 2, 1
    single = torch.cat([model.encode_images([im]) for im in images])
    assert torch.allclose(batched, single, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1], atol=1e-3)  # distinct images, distinct embeddings


def test_any_image_mode_is_read_as_rgb(model: ClipModel, make_image: ImageFactory) -> None:
    rgb = make_image(3)
    rgba = rgb.copy()
    rgba.putalpha(255)
    assert torch.allclose(model.encode_images([rgba]), model.encode_images([rgb]), atol=1e-6)
    assert model.encode_images([make_image(3, mode="L")]).shape == (1, TINY_CLIP_CONFIG["embed_dim"])


def test_empty_inputs_give_empty_matrices(model: ClipModel) -> None:
    assert model.encode_images([]).shape == (0, TINY_CLIP_CONFIG["embed_dim"])
    assert model.encode_texts([]).shape == (0, TINY_CLIP_CONFIG["embed_dim"])


def test_text_embeddings_are_the_models_own(model: ClipModel) -> None:
    texts = ["a cat", "a dog on a sofa"]
    with torch.no_grad():
        direct = F.normalize(model.model.encode_text(open_clip.tokenize(texts)), dim=-1)
    vectors = model.encode_texts(texts)
    assert torch.allclose(vectors, direct, atol=1e-6)
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(2), atol=1e-6)


def test_repeated_texts_come_from_the_cache(clip_dir: Path) -> None:
    fresh = ClipModel(clip_dir, device="cpu")
    first = fresh.encode_texts(["bold", "calm", "bold"])
    assert fresh.texts_encoded == 2  # a duplicate inside one call is encoded once
    again = fresh.encode_texts(["calm", "bold"])
    assert fresh.texts_encoded == 2 and fresh.text_cache_hits == 2
    assert torch.equal(again, first[[1, 0]])


def test_text_cache_is_lru_and_bounded(clip_dir: Path) -> None:
    fresh = ClipModel(clip_dir, device="cpu", text_cache_size=2)
    fresh.encode_texts(["a", "b"])
    fresh.encode_texts(["a"])  # "a" is now the most recently used
    fresh.encode_texts(["c"])  # evicts "b"
    assert fresh.texts_encoded == 3
    fresh.encode_texts(["a", "c"])
    assert fresh.texts_encoded == 3
    fresh.encode_texts(["b"])
    assert fresh.texts_encoded == 4


def test_a_cache_smaller_than_one_call_still_answers_every_text(clip_dir: Path) -> None:
    fresh = ClipModel(clip_dir, device="cpu", text_cache_size=1, batch_size=2)
    vectors = fresh.encode_texts(["x", "y", "z"])
    assert torch.allclose(vectors, ClipModel(clip_dir, device="cpu").encode_texts(["x", "y", "z"]), atol=1e-6)


def test_texts_must_be_a_sequence_not_a_string(model: ClipModel) -> None:
    with pytest.raises(TypeError, match="not a string"):
        model.encode_texts("a cat")


def test_warmup_runs(clip_dir: Path) -> None:
    fresh = ClipModel(clip_dir, device="cpu")
    fresh.warmup()
    assert fresh.texts_encoded == 0  # warm-up text is not cached as if a request had asked for it


def test_loading_never_reaches_a_hub(clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to download")

    monkeypatch.setattr(open_clip.factory, "download_pretrained_from_hf", refuse)
    monkeypatch.setattr(open_clip.factory, "download_pretrained", refuse)
    assert ClipModel(clip_dir, device="cpu").revision


def test_open_clips_random_init_notice_is_not_logged(clip_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        ClipModel(clip_dir, device="cpu")
    assert not [r for r in caplog.records if "initialized randomly" in r.getMessage()]


def _drop_weights(d: Path) -> None:
    (d / WEIGHT_FILES[0]).unlink()


def _drop_config(d: Path) -> None:
    (d / CONFIG_FILE).unlink()


def _bad_json(d: Path) -> None:
    (d / CONFIG_FILE).write_text("{not json")


def _no_model_cfg(d: Path) -> None:
    (d / CONFIG_FILE).write_text(json.dumps({"preprocess_cfg": {}}))


def _incomplete_model_cfg(d: Path) -> None:
    (d / CONFIG_FILE).write_text(json.dumps({"model_cfg": {"embed_dim": 32, "vision_cfg": {}}}))


def _garbage_weights(d: Path) -> None:
    (d / WEIGHT_FILES[0]).write_bytes(b"\x00" * 100)


def _other_architecture(d: Path) -> None:
    config = json.loads((d / CONFIG_FILE).read_text())
    config["model_cfg"]["embed_dim"] = 48
    (d / CONFIG_FILE).write_text(json.dumps(config))


def _unknown_architecture(d: Path) -> None:
    config = json.loads((d / CONFIG_FILE).read_text())
    config["model_cfg"]["vision_cfg"]["no_such_option"] = 1
    (d / CONFIG_FILE).write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (_drop_weights, "has no weights file"),
        (_drop_config, f"has no {CONFIG_FILE}"),
        (_bad_json, "is not valid JSON"),
        (_no_model_cfg, "has no `model_cfg`"),
        (_incomplete_model_cfg, "lacks text_cfg"),
        (_garbage_weights, "could not load the CLIP weights"),
        (_other_architecture, "could not load the CLIP weights"),
        (_unknown_architecture, "could not build the CLIP model"),
    ],
)
def test_a_broken_directory_is_named_with_what_is_wrong(
    copy_clip: Callable[[], Path], breakage: Callable[[Path], None], message: str
) -> None:
    directory = copy_clip()
    breakage(directory)
    with pytest.raises(ClipModelError, match=message) as info:
        ClipModel(directory, device="cpu")
    assert str(directory) in str(info.value)


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ClipModelError, match=f"{tmp_path / 'nope'} does not exist"):
        ClipModel(tmp_path / "nope")


def test_the_bin_format_loads_too(copy_clip: Callable[[], Path], model: ClipModel, make_image: ImageFactory) -> None:
    from safetensors.torch import load_file

    directory = copy_clip()
    torch.save(load_file(str(directory / WEIGHT_FILES[0])), directory / "open_clip_pytorch_model.bin")
    (directory / WEIGHT_FILES[0]).unlink()
    loaded = ClipModel(directory, device="cpu")
    assert loaded.weights_path.name == "open_clip_pytorch_model.bin"
    assert torch.allclose(loaded.encode_images([make_image()]), model.encode_images([make_image()]), atol=1e-6)


def test_write_clip_dir_builds_any_config(tmp_path: Path) -> None:
    config = json.loads(json.dumps(TINY_CLIP_CONFIG))
    config["vision_cfg"]["image_size"] = 64
    loaded = ClipModel(write_clip_dir(tmp_path / "m64", config, seed=3), device="cpu")
    assert loaded.image_size == (64, 64)


@pytest.mark.parametrize(("bad", "name"), [({"batch_size": 0}, "batch_size"), ({"text_cache_size": -1},
                                                                                  "text_cache_size")])
def test_bad_arguments_are_named(clip_dir: Path, bad: dict[str, int], name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        ClipModel(clip_dir, device="cpu", **bad)


def test_auto_device_follows_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="`device`"):
        resolve_device("tpu-ish")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_runs_half_precision_close_to_cpu(clip_dir: Path, model: ClipModel, make_image: ImageFactory) -> None:
    gpu = ClipModel(clip_dir, device="auto")
    assert gpu.device.type == "cuda" and gpu.precision == "fp16" and gpu.device_preprocess
    images = [make_image(i) for i in range(4)] + [make_image(9, size=(700, 300), mode="RGBA")]
    assert torch.allclose(gpu.encode_images(images), model.encode_images(images), atol=2e-2)
    assert torch.allclose(gpu.encode_texts(["a cat"]), model.encode_texts(["a cat"]), atol=2e-2)


def _photo_like(seed: int, size: tuple[int, int]) -> Image.Image:
    """Smooth gradients with a few edges: what a resize sees in a real picture (noise is its worst case)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]] / max(size)
    channels = [np.sin(x * rng.uniform(2, 9) + rng.uniform(0, 6)) * np.cos(y * rng.uniform(2, 9)) for _ in range(3)]
    pixels = (np.stack(channels, -1) * 0.5 + 0.5) * 255
    pixels[size[1] // 3: size[1] // 2, size[0] // 4: size[0] // 2] = rng.integers(0, 256, 3)  # a hard-edged block
    return Image.fromarray(pixels.astype(np.uint8), mode="RGB")


@pytest.mark.parametrize("image_size", [32, 224])
def test_tensor_preprocessing_follows_the_pil_transform(tmp_path: Path, image_size: int) -> None:
    """The device path (resize, crop, normalise as tensor ops; on by default on CUDA, forced here on the CPU) sees
    the pixels the PIL transform gives, up to the two resize filters' small differences, and the same embeddings."""
    cfg = json.loads(json.dumps(TINY_CLIP_CONFIG))
    cfg["vision_cfg"]["image_size"] = image_size
    directory = write_clip_dir(tmp_path / "clip", cfg, seed=3)
    pil, tensor = ClipModel(directory, device="cpu"), ClipModel(directory, device="cpu", device_preprocess=True)
    assert not pil.device_preprocess and tensor.device_preprocess
    sizes = [(512, 512), (512, 512), (700, 300), (299, 701), (image_size, image_size), (image_size + 7, 50)]
    images = [_photo_like(i, size) for i, size in enumerate(sizes)]
    images[2] = images[2].convert("RGBA")
    images[3] = images[3].convert("L")
    expected, got = pil._pixels(images), tensor._pixels(images)
    assert got.shape == expected.shape == (len(images), 3, image_size, image_size)
    difference = (got - expected).abs()  # normalised units: 1.0 is about 0.27 of the full 0..255 range
    assert difference.mean() < 0.01 and difference.max() < 0.2
    cosines = (pil.encode_images(images) * tensor.encode_images(images)).sum(-1)
    assert cosines.min() > 0.999


def test_a_transform_the_tensor_path_cannot_follow_is_refused(tmp_path: Path, clip_dir: Path) -> None:
    squash = write_clip_dir(tmp_path / "squash", TINY_CLIP_CONFIG, seed=1,
                            preprocess_cfg={"resize_mode": "squash", "interpolation": "bicubic"})
    assert not ClipModel(squash, device="cpu").device_preprocess  # auto on a CPU: the PIL path, which can
    with pytest.raises(ClipModelError, match="cannot run as tensor operations"):
        ClipModel(squash, device="cpu", device_preprocess=True)
