"""The concept matcher runs the real all-MiniLM-L6-v2 weights: paraphrases score high, benign prompts low, offline."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from quality.concepts import ConceptMatcher, ConceptModelError, default_model_dir, split_segments
from quality.prompt_text import normalize_prompt

REPO_ROOT = Path(__file__).resolve().parents[2]
GORE = {"violence.gore": ["graphic gore", "dismembered bodies", "blood and guts"]}
CATALOGUE = {
    **GORE,
    "self_harm": ["a person cutting their wrists", "someone hanging themselves", "a suicide scene"],
    "extremism.hate": ["nazi propaganda poster", "white supremacist rally with hate symbols"],
}


@pytest.fixture(scope="module")
def matcher() -> ConceptMatcher:
    """One real model per module: loading takes about a second once torch is imported."""
    loaded = ConceptMatcher()
    loaded.warmup()
    return loaded


def test_model_is_the_packaged_one_and_pinned(matcher: ConceptMatcher) -> None:
    weights = default_model_dir() / "model.safetensors"
    assert matcher.model_dir == default_model_dir()
    assert matcher.name == "all-MiniLM-L6-v2"
    assert matcher.revision == "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()[:16]


def test_an_example_phrase_scores_one(matcher: ConceptMatcher) -> None:
    assert matcher.similarities("graphic gore", GORE) == {"violence.gore": 1.0}


# Observed with these three examples: paraphrases 0.48-0.61, benign prompts 0.07-0.19.
PARAPHRASES = [
    "a body cut to pieces, covered in blood",
    "a pile of mangled corpses",
    "intestines spilling out of a torn torso",
    "a zombie eating human flesh, lots of blood",
]
BENIGN = [
    "a bowl of fruit on a table",
    "a cat sleeping on a mat",
    "a sunny beach at sunset",
    "portrait of a businesswoman in an office",
    "a steak dinner with red wine",
    "red paint splattered on a wall",
]


def test_paraphrases_score_clearly_above_benign_prompts(matcher: ConceptMatcher) -> None:
    paraphrases = [matcher.similarities(p, GORE)["violence.gore"] for p in PARAPHRASES]
    benign = [matcher.similarities(p, GORE)["violence.gore"] for p in BENIGN]
    assert min(paraphrases) >= 0.4, paraphrases
    assert max(benign) <= 0.3, benign
    assert min(paraphrases) - max(benign) >= 0.15


def test_each_concept_is_scored_on_its_own_examples(matcher: ConceptMatcher) -> None:
    scores = matcher.similarities("a person cutting their wrists", CATALOGUE)
    assert list(scores) == list(CATALOGUE)  # catalogue order
    assert scores["self_harm"] == 1.0
    assert scores["violence.gore"] < 0.6
    assert scores["extremism.hate"] < 0.3


def test_a_phrase_buried_in_a_long_prompt_still_scores_high(matcher: ConceptMatcher) -> None:
    benign = ("a watercolor painting of a lighthouse on a cliff, soft morning light, seagulls, 4k, highly detailed, "
              "trending on artstation, with a small boat in the harbour")
    buried = benign + " and dismembered bodies on the rocks"
    alone = matcher.similarities("dismembered bodies on the rocks", GORE)["violence.gore"]
    assert "dismembered bodies on the rocks" in split_segments(buried)
    # Observed: 0.81 buried, 0.81 alone, 0.28 without the phrase.
    assert matcher.similarities(buried, GORE)["violence.gore"] == pytest.approx(alone, abs=2e-3)
    assert alone >= 0.7
    assert matcher.similarities(benign, GORE)["violence.gore"] <= 0.35


def test_a_long_clause_without_punctuation_is_read_in_windows(matcher: ConceptMatcher) -> None:
    prompt = ("a serene mountain landscape with a clear lake reflecting snowy peaks where dismembered bodies lie in "
              "the tall grass near the water under a bright blue summer sky")
    segments = split_segments(prompt)
    assert "dismembered bodies lie in the tall grass near" in segments  # a window (clause 1 is the whole text)
    # Observed: 0.68.
    assert matcher.similarities(prompt, GORE)["violence.gore"] >= 0.55


def test_homoglyph_disguise_is_undone_by_normalising_first(matcher: ConceptMatcher) -> None:
    disguised = "grаphiс gоrе"  # Cyrillic а, с, о, е
    raw = matcher.similarities(disguised, GORE)["violence.gore"]
    normalised = matcher.similarities(normalize_prompt(disguised).normalized, GORE)["violence.gore"]
    assert normalised == 1.0
    assert raw < 0.8  # the model sees unknown word pieces, which is why callers pass the normalised text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a cat", ["a cat"]),
        ("a cat, a dog", ["a cat, a dog", "a cat", "a dog"]),
        ("a beach and a storm; night. Rain!", ["a beach and a storm; night. Rain!", "a beach", "a storm", "night",
                                                "Rain"]),
        ("a man with a knife", ["a man with a knife"]),  # "with" binds one picture together
        ("  a   cat\n\n", ["a cat"]),
        ("", []),
        (" , ; ", [", ;"]),
    ],
)
def test_split_segments(text: str, expected: list[str]) -> None:
    assert split_segments(text) == expected


def test_windows_cover_every_word_of_a_long_clause() -> None:
    words = [f"w{i}" for i in range(30)]
    segments = split_segments(" ".join(words))
    windows = [s.split() for s in segments[1:]]
    assert all(len(w) == 8 for w in windows)
    assert {word for w in windows for word in w} == set(words)
    assert windows[-1][-1] == "w29"


def test_empty_catalogue_and_blank_text(matcher: ConceptMatcher) -> None:
    assert matcher.similarities("graphic gore", {}) == {}
    assert matcher.similarities("  \n ", GORE) == {"violence.gore": 0.0}


@pytest.mark.parametrize(
    ("catalogue", "error", "message"),
    [
        ({"c": "graphic gore"}, TypeError, "concept 'c' have to be a list of phrases"),
        ({"c": []}, ValueError, "concept 'c' needs at least one non-empty example"),
        ({"c": ["ok", "  "]}, ValueError, "concept 'c' needs at least one non-empty example"),
    ],
)
def test_bad_catalogues_are_refused(
    matcher: ConceptMatcher, catalogue: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        matcher.similarities("a cat", catalogue)  # type: ignore[arg-type]


def test_example_embeddings_are_cached_per_catalogue_content(matcher: ConceptMatcher) -> None:
    catalogue = {"test.cache": ["a unique phrase for the cache test", "another one"], "other": ["third"]}
    prompt = "a red bicycle, a blue door"  # three segments: whole and two clauses
    before = matcher.texts_encoded
    first = matcher.similarities(prompt, catalogue)
    assert matcher.texts_encoded - before == 3 + 3  # examples and segments, in one batch
    before = matcher.texts_encoded
    second = matcher.similarities(prompt, {k: list(v) for k, v in catalogue.items()})  # equal content, new objects
    assert matcher.texts_encoded - before == 3  # only the prompt
    assert second == pytest.approx(first, abs=2e-4)
    before = matcher.texts_encoded
    matcher.similarities(prompt, {**catalogue, "other": ["third", "fourth"]})  # changed content: encoded again
    assert matcher.texts_encoded - before == 4 + 3


def test_scores_are_rounded_and_deterministic(matcher: ConceptMatcher) -> None:
    first = matcher.similarities("a knight fighting a dragon, blood on the sword", CATALOGUE)
    assert all(round(v, 4) == v and -1.0 <= v <= 1.0 for v in first.values())
    assert matcher.similarities("a knight fighting a dragon, blood on the sword", CATALOGUE) == first


def test_concurrent_calls_give_the_sequential_answers(matcher: ConceptMatcher) -> None:
    prompts = PARAPHRASES + BENIGN
    want = {p: matcher.similarities(p, CATALOGUE) for p in prompts}
    got: dict[str, dict[str, float]] = {}
    errors: list[BaseException] = []

    def work(prompt: str) -> None:
        try:
            got[prompt] = matcher.similarities(prompt, CATALOGUE)
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    for prompt in prompts:
        assert got[prompt] == pytest.approx(want[prompt], abs=2e-4)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-model-here"
    with pytest.raises(ConceptModelError, match=f"{missing} does not exist"):
        ConceptMatcher(missing)


def test_directory_without_model_files_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConceptModelError, match=f"{tmp_path} is missing modules.json"):
        ConceptMatcher(tmp_path)


def _copy_model(target: Path) -> Path:
    """The packaged model's small files copied, the weights linked: a directory the test may break."""
    source = default_model_dir()
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors"))
    (target / "model.safetensors").symlink_to(source / "model.safetensors")
    return target


def test_corrupt_weights_are_a_clear_error(tmp_path: Path) -> None:
    model_dir = _copy_model(tmp_path / "model")
    (model_dir / "model.safetensors").unlink()
    (model_dir / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(ConceptModelError, match=f"could not load the sentence-embedding model from {model_dir}"):
        ConceptMatcher(model_dir)


def test_missing_weights_are_a_clear_error(tmp_path: Path) -> None:
    model_dir = _copy_model(tmp_path / "model")
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ConceptModelError, match=f"{model_dir} has no weights file"):
        ConceptMatcher(model_dir)


def test_a_copied_model_directory_loads_with_its_own_name(tmp_path: Path, matcher: ConceptMatcher) -> None:
    copy = ConceptMatcher(_copy_model(tmp_path / "minilm-copy"))
    assert copy.name == "minilm-copy"
    assert copy.revision == matcher.revision
    assert copy.similarities("graphic gore", GORE) == {"violence.gore": 1.0}


def test_bad_batch_size_is_refused() -> None:
    with pytest.raises(ValueError, match="`batch_size`"):
        ConceptMatcher(batch_size=0)


def test_loading_and_scoring_never_touch_the_network() -> None:
    """A fresh interpreter without the offline switches, and with sockets that refuse to connect."""
    code = (
        "import socket\n"
        "def refuse(*args, **kwargs):\n"
        "    raise OSError('network access attempted')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from quality.concepts import ConceptMatcher\n"
        "m = ConceptMatcher()\n"
        "assert m.similarities('graphic gore', {'g': ['graphic gore']}) == {'g': 1.0}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def test_several_readings_are_scored_in_one_batch_with_shared_pieces_once(matcher: ConceptMatcher) -> None:
    raw = "a quiet street at night, g0ry m3ss on the pavement"
    readings = [normalize_prompt(raw).normalized, normalize_prompt(raw).folded]
    assert readings[1] == "a quiet street at night, gory mess on the pavement"
    matcher.similarities("warm the cache", GORE)
    before = matcher.texts_encoded
    best = matcher.best_similarities(readings, GORE)
    # Whole text and two clauses per reading; the first clause is the same in both.
    assert matcher.texts_encoded - before == 5
    each = [matcher.similarities(r, GORE)["violence.gore"] for r in readings]
    assert best["violence.gore"] == pytest.approx(max(each), abs=2e-4)
    assert each[1] > each[0]  # the folded reading is the one the model understands
    with pytest.raises(TypeError, match="sequence of readings"):
        matcher.best_similarities(raw, GORE)
