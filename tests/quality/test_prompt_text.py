"""Prompt normalisation undoes each known disguise of a word, and leaves benign text in any script alone."""

from __future__ import annotations

import dataclasses
import json
import time
import unicodedata

import pytest

from quality.prompt_text import NormalizedPrompt, fold_text, normalize_prompt, warmup


@pytest.fixture(scope="module", autouse=True)
def _tables_loaded() -> None:
    warmup()  # so the timing tests do not pay for loading the confusables data


def plain(text: str) -> str:
    """What only case and whitespace normalisation would give."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


@pytest.mark.parametrize(
    "char",
    [
        "\u200b", "\u200c", "\u200d", "\u200e", "\u200f",  # zero-width space, non-joiner, joiner, LRM, RLM
        "\u2060", "\u2061", "\u2062", "\u2063", "\u2064",  # word joiner, invisible operators
        "\ufeff", "\u00ad", "\u034f", "\u180e", "\u3164", "\uffa0",  # BOM, soft hyphen, CGJ, MVS, Hangul fillers
        "\ufe0f", "\U000e0101",  # variation selectors
        "\U000e0001", "\U000e0067",  # tag characters
        "\u202e", "\u2066",  # bidi override and isolate
        "\x00", "\x07", "\x1b", "\x7f",  # C0 controls and DEL
    ],
    ids=lambda c: f"U+{ord(c):04X}",
)
def test_invisible_and_control_characters_are_removed(char: str) -> None:
    result = normalize_prompt(f"a photo of g{char}o{char}re")
    assert result.normalized == "a photo of gore"
    assert result.invisible == 2
    assert result.changed


@pytest.mark.parametrize("space", ["\n", "\t", "\r\n", "\u00a0", "\u2003", "\u3000", "\u2028", "  \n\t "])
def test_whitespace_becomes_one_space_and_is_no_change(space: str) -> None:
    result = normalize_prompt(f"  A{space}Cat{space}")
    assert result.normalized == "a cat"
    assert not result.changed
    assert result.invisible == 0


@pytest.mark.parametrize(
    ("raw", "normalized", "changed"),
    [
        ("ｇｏｒｅ ｓｃｅｎｅ", "gore scene", True),  # fullwidth
        ("𝐠𝐨𝐫𝐞", "gore", True),  # mathematical bold
        ("𝕘𝕠𝕣𝕖", "gore", True),  # mathematical double-struck
        ("𝓰𝓸𝓻𝓮", "gore", True),  # mathematical bold script
        ("ⓖⓞⓡⓔ", "gore", True),  # circled letters
        ("ﬁght", "fight", True),  # ligature
        ("wait…", "wait...", False),  # NFKC changed punctuation only: no letter or digit differs
        ("GORE", "gore", False),  # case is not a change
        ("ΣΟΦΊΑ", "σοφία", False),  # nor is it in Greek
    ],
)
def test_nfkc_and_case_folding(raw: str, normalized: str, changed: bool) -> None:
    result = normalize_prompt(raw)
    assert result.normalized == normalized
    assert result.changed is changed


@pytest.mark.parametrize(
    ("raw", "normalized", "folded_letters"),
    [
        ("gоrе", "gore", 2),  # Cyrillic о, е
        ("ѕех tоys", "sex toys", 4),  # a whole word of Cyrillic look-alikes in an English prompt, and a mixed word
        ("раssport photo", "passport photo", 2),  # Cyrillic р, а
        ("сat", "cat", 1),  # Cyrillic с is a c, not the s a transliteration would give
        ("gοοd νibes", "good vibes", 3),  # Greek omicron and nu
        ("ΚΙLL", "kill", 2),  # Greek capital kappa and iota: an upper-case look-alike of l is an I
        ("ΗΕLLΟ", "hello", 3),
        ("g о r е", "g o r e", 2),  # single look-alike letters in a Latin prompt
    ],
)
def test_confusables_are_folded_to_latin(raw: str, normalized: str, folded_letters: int) -> None:
    result = normalize_prompt(raw)
    assert result.normalized == normalized
    assert result.confusables == folded_letters
    assert result.changed


@pytest.mark.parametrize(
    ("raw", "mixed"),
    [
        ("gоre", True),  # Latin + Cyrillic in one word
        ("g\u200bоre", True),  # an invisible character does not hide the mix
        ("ΚΙLL", True),
        ("Москва and London", False),  # two scripts, but each word is in one
        ("Tシャツ", False),  # Latin + Katakana: one Japanese writing system (UTS #39)
        ("東京タワーの夜景", False),  # Han + Katakana + Hiragana
        ("서울 N타워", False),  # Latin + Hangul
        ("a cat", False),
        ("αβγ", False),
    ],
)
def test_mixed_script_is_judged_per_word_before_folding(raw: str, mixed: bool) -> None:
    assert normalize_prompt(raw).mixed_script is mixed


@pytest.mark.parametrize(
    "text",
    [
        "東京タワーの夜景、桜が満開の公園で猫が寝ている",  # Japanese
        "Tシャツを着た猫のイラスト",  # Japanese with a Latin letter inside a word
        "قطة تجلس على سجادة حمراء في غرفة المعيشة",  # Arabic
        "מגדל אייפל בשקיעה",  # Hebrew
        "Η Ακρόπολη της Αθήνας το βράδυ",  # Greek: its ο, ι, ν are look-alikes, but the words are Greek
        "ο ήλιος",  # Greek article: a word made only of look-alikes, in a Greek text
        "Москва ночью, снег и огни",  # Russian
        "сосок",  # a Russian word made only of look-alikes, with no Latin text around it
        "ухо",
        "ताजमहल का सूर्यास्त",  # Hindi (Devanagari with combining vowel signs)
        "서울의 야경",  # Korean
        "一只猫坐在垫子上",  # Chinese
        "แมวนอนบนเสื่อ",  # Thai
        "a photo of the Greek word λόγος carved in stone",  # Greek word with Greek letters that have no look-alike
        "Moscow, also written Москва",
        "the Greek words ο ήλιος on a stone",  # a look-alike-only word beside genuine Greek in an English prompt
    ],
)
def test_other_scripts_are_left_alone(text: str) -> None:
    result = normalize_prompt(text)
    assert result.normalized == plain(text)
    assert result.folded == plain(text)
    assert not result.changed
    assert not result.mixed_script
    assert result.confusables == 0
    assert result.invisible == 0


@pytest.mark.parametrize(
    ("text", "scripts"),
    [("a cat", ("latin",)), ("Tシャツ", ("katakana", "latin")), ("αβγ and сат", ("cyrillic", "greek", "latin")),
     ("2026 !!", ())],
)
def test_scripts_are_listed(text: str, scripts: tuple[str, ...]) -> None:
    assert normalize_prompt(text).scripts == scripts


@pytest.mark.parametrize(
    "text",
    [
        "A cat on a mat",
        "a watercolor painting of a lighthouse, 4k, 35mm, f/1.8, 1920x1080, trending on artstation",
        "e.g. a dog; i.e. a pet. U.S. flag, 3d render of a c++ logo! wow!",
        "“Quoted” text… — with dashes – and ‘quotes’",
        "café crème brûlée, naïve art",
        "❤️ love 👨‍👩‍👧 family 🏳️‍🌈",  # emoji presentation selectors and ZWJ sequences have a job: no change
        "Tシャツ and 東京",
        "x = 2 + 2",
    ],
)
def test_benign_text_is_not_changed(text: str) -> None:
    result = normalize_prompt(text)
    assert not result.changed
    assert not result.mixed_script
    assert result.confusables == 0


def test_emoji_selectors_are_removed_but_not_counted_as_a_change() -> None:
    result = normalize_prompt("❤️ love")
    assert result.normalized == "❤ love"
    assert result.invisible == 1
    assert not result.changed
    # The same selector between ASCII letters, or repeated after an emoji (data smuggling), is a change.
    assert normalize_prompt("lo\ufe0fve").changed
    assert normalize_prompt("❤\ufe0f\ufe0f\ufe0f love").changed


def test_zalgo_marks_on_ascii_letters_are_removed() -> None:
    result = normalize_prompt("g\u0338o\u0338r\u0338e\u0338 z\u0301\u0302\u0303\u0304a\u20dd")
    assert result.normalized == "gore za"
    assert result.changed


def test_accented_letters_stay_in_normalized_and_fold_in_folded() -> None:
    result = normalize_prompt("Café NIÑO kırmızı İstanbul e\u0301")  # the last é is decomposed (NFD)
    assert result.normalized == "café niño kırmızı istanbul é"
    assert result.folded == "cafe nino kirmizi istanbul e"
    assert not result.changed


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("h4ck3r", "hacker"),
        ("pr0n", "pron"),
        ("g0r3", "gore"),
        ("$ex", "sex"),
        ("5ex", "sex"),
        ("@ss", "ass"),
        ("b!tch", "bitch"),
        ("k1ll", "kill"),
        ("n00d|e", "noodle"),
        ("7h3 gr3a7 8ear", "the great bear"),
        ("bl00d +ears", "blood tears"),
        # Left alone: no letter in the token, numbers with units, model names, trailing punctuation.
        ("4 cats", "4 cats"),
        ("2026", "2026"),
        ("4k 8k 1080p 35mm 3d 2d 1st 2nd 90s 1920x1080 60fps", "4k 8k 1080p 35mm 3d 2d 1st 2nd 90s 1920x1080 60fps"),
        ("v6 sd15 mp4 h264", "v6 sd15 mp4 h264"),
        ("wow! c++ hi!! $100 50% @ 5", "wow! c++ hi!! $100 50% @ 5"),
    ],
)
def test_leetspeak_is_folded_inside_words(text: str, folded: str) -> None:
    assert normalize_prompt(text).folded == folded


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("g o r e", "gore"),
        ("g.o.r.e", "gore"),
        ("g-o-r-e", "gore"),
        ("g_o_r_e", "gore"),
        ("g * o * r * e", "gore"),
        ("G . O . R . E scene", "gore scene"),
        ("a s e x toy", "asex toy"),  # the run is joined whole; "a" cannot be told apart from the word
        ("g 0 r 3", "gore"),  # spaced leetspeak
        ("g о r е", "gore"),  # spaced Cyrillic look-alikes
        ("U.S.A. flag", "usa. flag"),
        # Left alone: ordinary single-letter words, abbreviations of two letters, mixed separators, numbers.
        ("a cat on a mat", "a cat on a mat"),
        ("plan b is a plan", "plan b is a plan"),
        ("i.e. a dog", "i.e. a dog"),
        ("e.g. x", "e.g. x"),
        ("a b", "a b"),
        ("1 2 3 4", "1 2 3 4"),
        ("1.2.3", "1.2.3"),
        ("x - y.z", "x - y.z"),
    ],
)
def test_spaced_out_letters_are_joined(text: str, folded: str) -> None:
    assert normalize_prompt(text).folded == folded


@pytest.mark.parametrize(
    "text",
    ["gоrе", "g\u200bo\u200bre", "𝐠𝐨𝐫𝐞 ѕех", "Η Ακρόπολη", "Tシャツ", "z\u0301a\u20dd", "İstanbul", "ﬁ ½ ™", "a  b\tc"],
)
def test_normalisation_is_idempotent(text: str) -> None:
    once = normalize_prompt(text)
    twice = normalize_prompt(once.normalized)
    assert twice.normalized == once.normalized
    assert fold_text(once.folded) == once.folded


def test_as_dict_is_plain_json() -> None:
    result = normalize_prompt("a photo of gоre\u200b")
    data = result.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "normalized": "a photo of gore",
        "folded": "a photo of gore",
        "changed": True,
        "mixed_script": True,
        "invisible": 1,
        "confusables": 1,
        "scripts": ["cyrillic", "latin"],
    }


def test_result_is_frozen() -> None:
    result = normalize_prompt("a cat")
    assert isinstance(result, NormalizedPrompt)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.normalized = "x"  # type: ignore[misc]


def test_lone_surrogates_and_empty_text() -> None:
    assert normalize_prompt("a\ud800b").normalized == "ab"  # would not survive JSON encoding downstream
    assert normalize_prompt("").as_dict()["normalized"] == ""
    assert normalize_prompt("\u200b \n").normalized == ""


def _best_of(runs: int, text: str) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        normalize_prompt(text)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize(
    "text",
    [
        ("a photo of the old harbour at dusk with boats, lanterns and gulls, 4k, 35mm, h4ck3r g o r e " * 25)[:2000],
        ("gоrе ѕех сat 東京タワー \u200b 𝐠𝐨𝐫𝐞 Η Ακρόπολη " * 60)[:2000],
    ],
    ids=["latin", "mixed"],
)
def test_a_long_prompt_takes_milliseconds(text: str) -> None:
    # Measured about 0.1 ms (Latin) and 1-2 ms (mixed scripts) on a 2-core CI machine; the bound leaves room.
    assert _best_of(5, text) < 0.05


@pytest.mark.parametrize(
    "text",
    ["a" * 20000, "a " * 10000, "a." * 10000, "1" * 20000, "a1" * 10000, "$a" * 10000, "a" + "\u0301" * 20000,
     "\u0430" * 20000, "g о " * 5000, "\u200b" * 20000, "a . " * 5000],
    ids=["letters", "spaced", "dotted", "digits", "leet", "symbols", "marks", "cyrillic", "spaced-cyrillic",
         "invisible", "spaced-dots"],
)
def test_adversarial_inputs_stay_linear(text: str) -> None:
    # 20,000 characters, ten times a long prompt: every case measured at or under 20 ms. A regex that backtracks
    # quadratically would take seconds here.
    assert _best_of(2, text) < 0.5
