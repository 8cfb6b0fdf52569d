"""The demo pipeline builds offline, reloads through ``from_pretrained(local_dir)`` and is byte-reproducible."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline
from transformers import CLIPTokenizer

from generators.demo import (
    BOS_TOKEN,
    EOS_TOKEN,
    MAX_TOKENS,
    build_demo_pipeline,
    bytes_to_unicode,
    demo_vocab,
    ensure_demo_pipeline,
)


@pytest.fixture(scope="module", autouse=True)
def _offline() -> Iterator[None]:
    """Any attempt to reach the hub fails loudly instead of hanging or downloading."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_pipeline(tmp_path_factory.mktemp("models") / "demo-tiny", seed=0)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_build_writes_a_stable_diffusion_layout_with_safetensors(demo_dir: Path) -> None:
    index = json.loads((demo_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None]
    assert index["requires_safety_checker"] is False
    files = set(_files(demo_dir))
    assert {"unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
            "text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt"} <= files
    assert not any(name.endswith(".bin") for name in files)
    assert not [p.name for p in demo_dir.parent.iterdir() if p.name.startswith(".")], "staging dir left behind"


def test_reloads_offline_through_from_pretrained(demo_dir: Path) -> None:
    pipe = DiffusionPipeline.from_pretrained(str(demo_dir), local_files_only=True)
    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe.safety_checker is None
    assert pipe.vae_scale_factor == 8
    assert pipe.tokenizer.model_max_length == MAX_TOKENS
    assert pipe.text_encoder.config.vocab_size == len(pipe.tokenizer)
    assert pipe.text_encoder.config.eos_token_id == pipe.tokenizer.eos_token_id


def test_vocab_holds_every_byte_bare_and_word_final() -> None:
    vocab, merges = demo_vocab()
    alphabet = set(bytes_to_unicode().values())
    assert len(alphabet) == 256
    assert all(ch in vocab and ch + "</w>" in vocab for ch in alphabet)
    assert {BOS_TOKEN, EOS_TOKEN} <= set(vocab)
    assert sorted(vocab.values()) == list(range(len(vocab)))
    assert all("".join(m.split(" ")) in vocab for m in merges)


@pytest.mark.parametrize(
    "prompt",
    ["the cat and the dog", "кошка на крыше", "🐈‍⬛ 🎉", "日本語のテキスト", "Ünïcödé, punctuation!?"],
    ids=["latin", "cyrillic", "emoji", "cjk", "mixed"],
)
def test_tokenizer_encodes_any_script_without_unknown_tokens(demo_dir: Path, prompt: str) -> None:
    tokenizer = CLIPTokenizer.from_pretrained(demo_dir / "tokenizer", local_files_only=True)
    ids = tokenizer(prompt).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    # The unknown token is <|endoftext|>, so "no unknowns" means no eos before the end.
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == prompt.lower().replace(" ", "")


def test_merges_are_applied(demo_dir: Path) -> None:
    tokenizer = CLIPTokenizer.from_pretrained(demo_dir / "tokenizer", local_files_only=True)
    assert tokenizer.tokenize("the cat") == ["the</w>", "cat</w>"]


def test_same_seed_gives_identical_files_and_leaves_global_rng_alone(
    demo_dir: Path, tmp_path: Path
) -> None:
    rng_before = torch.get_rng_state()
    again = build_demo_pipeline(tmp_path / "again", seed=0)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert _files(again) == _files(demo_dir)


def test_other_seed_gives_other_weights_but_same_configs(demo_dir: Path, tmp_path: Path) -> None:
    base, other = _files(demo_dir), _files(build_demo_pipeline(tmp_path / "other", seed=1))
    assert base.keys() == other.keys()
    for name in base:
        if name.endswith(".safetensors"):
            assert base[name] != other[name], name
        else:
            assert base[name] == other[name], name


def test_ensure_builds_only_when_model_index_is_missing(demo_dir: Path, tmp_path: Path) -> None:
    stamp = (demo_dir / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert ensure_demo_pipeline(demo_dir) == demo_dir
    assert (demo_dir / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp

    half_built = tmp_path / "half"
    (half_built / "unet").mkdir(parents=True)
    (half_built / "unet" / "stale.txt").write_text("left over from a crashed build")
    assert ensure_demo_pipeline(half_built) == half_built
    assert (half_built / "model_index.json").is_file()
    assert _files(half_built).keys() == _files(demo_dir).keys()
