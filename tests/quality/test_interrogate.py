"""The interrogator scorer runs tiny seeded CLIP and BLIP models loaded from local directories: it answers a caption
and flavours from the label tables, is deterministic and batch-invariant, caches the table embeddings per CLIP
revision, and never opens a network connection."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from quality.base import ScoreContext, Scorer, score_images
from quality.caption_model import CaptionModel, CaptionModelError, build_tiny_blip, load_caption_model
from quality.interrogate import DEFAULT_DATA_PATH, InterrogatorError, InterrogatorScorer, cache_key

ScorerFactory = Callable[..., InterrogatorScorer]
FLAVORS = [f"{adjective} {noun}" for adjective in ("dark", "bright", "misty", "golden", "neon", "pastel", "grainy")
           for noun in ("lighting", "colors", "atmosphere", "texture", "mood", "palette")]
MEDIUMS = ["a photograph", "an oil painting", "a pencil sketch", "a 3D render", "a watercolor painting"]
# A tiny open_clip CLIP: the shipped BPE tokenizer's vocabulary and context length, 32-wide one-layer towers.
TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module", autouse=True)
def no_network() -> Iterator[None]:
    """The whole module, model building and loading included, runs with outgoing connections impossible: any
    download attempt fails loudly (autouse: set up before the module's other fixtures)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        patch.setattr(socket, "create_connection", refuse)
        yield


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run hundreds of microsecond-sized ops per caption; on a busy machine each multi-threaded op waits
    for a descheduled worker thread (measured: 10 ms per op, 5 s per batch), so this module uses one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_tiny_clip(directory: Path, seed: int = 0) -> Path:
    """A seeded tiny CLIP in open_clip's ``local-dir:`` layout (``open_clip_config.json`` + safetensors weights)."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(TINY_CLIP_CFG["embed_dim"], TINY_CLIP_CFG["vision_cfg"], TINY_CLIP_CFG["text_cfg"])
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CFG, "preprocess_cfg": {}}))
    save_file(model.state_dict(), str(directory / "open_clip_model.safetensors"))
    return directory


@pytest.fixture(scope="module")
def clip_parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any]:
    """(model, preprocess, tokenizer) loaded through open_clip's local-directory path, as the gateway loads CLIP."""
    directory = write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{directory}")
    return model.eval(), preprocess, open_clip.get_tokenizer(f"local-dir:{directory}")


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("blip") / "tiny-blip")


@pytest.fixture(scope="module")
def captioner(blip_dir: Path) -> CaptionModel:
    return load_caption_model(blip_dir)


@pytest.fixture
def make_labels(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a label directory with the package's file names and small tables (``flavors`` / ``mediums``)."""

    def make(flavors: list[str] = FLAVORS, mediums: list[str] = MEDIUMS, name: str = "labels") -> Path:
        directory = tmp_path / name
        directory.mkdir()
        (directory / "flavors.txt").write_text("\n".join(flavors) + "\n")
        (directory / "mediums.txt").write_text("\n".join(mediums) + "\n")
        return directory

    return make


@pytest.fixture
def make_scorer(clip_parts: tuple[Any, Any, Any], captioner: CaptionModel, make_labels: Callable[..., Path],
                tmp_path: Path) -> ScorerFactory:
    """Factory: a scorer over the tiny models and the small tables, caching into ``tmp_path/cache``."""
    labels = make_labels()

    def make(**overrides: Any) -> InterrogatorScorer:
        model, preprocess, tokenizer = clip_parts
        options: dict[str, Any] = {"clip_revision": "tiny-clip-r1", "caption": captioner, "caption_max_length": 12,
                                   "cache_dir": tmp_path / "cache", "data_path": labels, **overrides}
        return InterrogatorScorer(model, preprocess, tokenizer, **options)

    return make


def make_image(seed: int, size: tuple[int, int] = (512, 512)) -> Image.Image:
    """A drawing (background, a box and a disc) whose colours and positions follow ``seed``."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(2):
        x, y = (int(v) for v in rng.integers(0, size[0] // 2, 2))
        draw.rectangle((x, y, x + size[0] // 3, y + size[1] // 4), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw.ellipse((y, x, y + size[0] // 4, x + size[1] // 4), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def test_scorer_follows_the_protocol_and_pins_both_models(make_scorer: ScorerFactory,
                                                          captioner: CaptionModel) -> None:
    scorer = make_scorer()
    assert isinstance(scorer, Scorer)
    assert scorer.name == "interrogator"
    assert dict(scorer.fields) == {"caption": "str", "flavors": "list[str]", "medium": "str"}
    assert "clip=tiny-clip-r1" in scorer.version
    assert f"caption={captioner.revision}" in scorer.version
    assert captioner.revision.startswith("sha256:")


def test_answers_a_caption_and_flavours_from_the_tables(make_scorer: ScorerFactory) -> None:
    scorer = make_scorer()
    images = [make_image(seed) for seed in range(3)]
    answers = scorer.score(images, ScoreContext())
    assert len(answers) == 3
    for answer in answers:
        assert isinstance(answer["caption"], str)
        flavors = answer["flavors"]
        assert isinstance(flavors, list) and len(flavors) == 3 and len(set(flavors)) == 3
        assert set(flavors) <= set(FLAVORS)
        assert answer["medium"] in MEDIUMS
    assert any(answer["caption"] for answer in answers)  # the tiny BLIP says something about these drawings
    cards = score_images([scorer], images)
    assert all(card.complete for card in cards)  # the runner accepts the answer against the declared fields


@pytest.mark.parametrize(("count", "expected"), [(1, 1), (5, 5), (len(FLAVORS) + 10, len(FLAVORS))])
def test_flavour_count_is_honoured_and_capped_by_the_table(make_scorer: ScorerFactory, count: int,
                                                           expected: int) -> None:
    answer = make_scorer(flavor_count=count).score([make_image(0)], ScoreContext())[0]
    flavors = answer["flavors"]
    assert isinstance(flavors, list) and len(flavors) == expected


def test_same_image_same_answer(make_scorer: ScorerFactory) -> None:
    scorer = make_scorer()
    assert scorer.score([make_image(7)], ScoreContext()) == scorer.score([make_image(7)], ScoreContext())


def test_a_batch_answers_what_one_by_one_answers(make_scorer: ScorerFactory) -> None:
    scorer = make_scorer(max_batch=2)  # 5 images: batches of 2, 2 and 1
    images = [make_image(seed) for seed in range(5)]
    one_by_one = [scorer.score([image], ScoreContext())[0] for image in images]
    assert scorer.score(images, ScoreContext()) == one_by_one
    assert len({json.dumps(answer, sort_keys=True) for answer in one_by_one}) > 1  # the answers depend on the image


# The library's ranking wraps CLIP in torch.cuda.amp.autocast(), which warns on a CPU-only torch.
@pytest.mark.filterwarnings(r"ignore:`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated:FutureWarning")
@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")
def test_flavours_are_the_ones_the_library_ranks_first(make_scorer: ScorerFactory) -> None:
    scorer = make_scorer(flavor_count=4)
    image = make_image(3)
    features = scorer.interrogator.image_to_features(image)
    answer = scorer.score([image], ScoreContext())[0]
    assert answer["flavors"] == scorer.interrogator.flavors.rank(features, 4)
    assert answer["medium"] == scorer.interrogator.mediums.rank(features, 1)[0]


def test_the_second_start_reads_the_cache_and_another_revision_does_not(make_scorer: ScorerFactory,
                                                                        tmp_path: Path) -> None:
    first = make_scorer()
    assert first.labels_embedded == len(FLAVORS) + len(MEDIUMS)
    key = cache_key("clip", "tiny-clip-r1")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        f"{key}_flavors.safetensors", f"{key}_mediums.safetensors"]

    second = make_scorer()
    assert second.labels_embedded == 0  # nothing went through the CLIP text tower again
    image = make_image(1)
    assert second.score([image], ScoreContext()) == first.score([image], ScoreContext())

    other = make_scorer(clip_revision="tiny-clip-r2")
    assert other.labels_embedded == len(FLAVORS) + len(MEDIUMS)
    assert len(list((tmp_path / "cache").iterdir())) == 4
    assert "clip=tiny-clip-r2" in other.version


def test_changed_tables_are_embedded_again(make_scorer: ScorerFactory, make_labels: Callable[..., Path]) -> None:
    make_scorer()
    changed = make_labels(flavors=[*FLAVORS, "crimson glow"], name="changed")
    scorer = make_scorer(data_path=changed)
    assert scorer.labels_embedded == len(FLAVORS) + 1  # the flavour table's hash changed; the media table is reused


@pytest.mark.parametrize(("a", "b"), [("r1", "r2"), ("a/b", "a_b"), ("sha256:ab", "sha256_ab"), ("x@1", "x_1")])
def test_cache_keys_never_collide(a: str, b: str) -> None:
    assert cache_key("clip", a) != cache_key("clip", b)
    assert all(c.isalnum() or c in "._-" for c in cache_key("ViT-B-32/openai", a))


def test_the_caption_model_loads_from_its_directory(blip_dir: Path, make_scorer: ScorerFactory) -> None:
    scorer = make_scorer(caption=blip_dir)  # a directory: loaded on the CLIP model's device
    assert scorer.caption_model.directory == blip_dir
    captions = scorer.caption_model.caption([make_image(0), make_image(1)], max_new_tokens=5)
    assert len(captions) == 2 and all(isinstance(c, str) and len(c.split()) <= 5 for c in captions)


def test_tiny_blip_is_reproducible_from_its_seed(tmp_path: Path, captioner: CaptionModel) -> None:
    assert load_caption_model(build_tiny_blip(tmp_path / "same", seed=0)).revision == captioner.revision
    assert load_caption_model(build_tiny_blip(tmp_path / "other", seed=1)).revision != captioner.revision


def test_missing_or_broken_caption_directories_are_named(tmp_path: Path) -> None:
    with pytest.raises(CaptionModelError, match="does not exist") as missing:
        load_caption_model(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(missing.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptionModelError, match="missing config.json"):
        load_caption_model(tmp_path / "empty")
    (tmp_path / "no-weights").mkdir()
    (tmp_path / "no-weights" / "config.json").write_text("{}")
    with pytest.raises(CaptionModelError, match="has no weights"):
        load_caption_model(tmp_path / "no-weights")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CaptionModelError, match=r"could not load a BLIP captioning model from .*broken"):
        load_caption_model(tmp_path / "broken")


def test_bad_label_directories_fail_closed(make_scorer: ScorerFactory, make_labels: Callable[..., Path],
                                           tmp_path: Path) -> None:
    with pytest.raises(InterrogatorError, match=r"missing flavors\.txt, mediums\.txt"):
        make_scorer(data_path=tmp_path / "nowhere")
    with pytest.raises(InterrogatorError, match=r"mediums\.txt is empty"):
        make_scorer(data_path=make_labels(mediums=[""], name="no-media"))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"clip_revision": " "}, "`clip_revision` has to name the CLIP weights"),
    ({"flavor_count": 0}, "`flavor_count` has to be at least 1 but is 0"),
    ({"max_batch": 0}, "`max_batch` has to be at least 1 but is 0"),
])
def test_bad_options_are_refused(make_scorer: ScorerFactory, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_scorer(**overrides)


def test_the_network_guard_is_armed() -> None:
    with pytest.raises(AssertionError, match="network access attempted"):
        socket.create_connection(("huggingface.co", 443))


@pytest.mark.slow
def test_the_shipped_tables_work_with_a_tiny_clip(make_scorer: ScorerFactory, tmp_path: Path) -> None:
    """Embeds all ~100k shipped flavours once (about 30 s on 2 CPU cores with the tiny text tower)."""
    full_tables_cache = tmp_path / "full-cache"
    scorer = make_scorer(data_path=None, cache_dir=full_tables_cache, flavor_count=5)
    flavors = (DEFAULT_DATA_PATH / "flavors.txt").read_text().splitlines()
    assert scorer.labels_embedded > 100_000
    answer = scorer.score([make_image(0)], ScoreContext())[0]
    found = answer["flavors"]
    assert isinstance(found, list) and len(found) == 5 and set(found) <= set(flavors)
    assert make_scorer(data_path=None, cache_dir=full_tables_cache).labels_embedded == 0
