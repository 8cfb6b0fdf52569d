"""What the ``ocr`` scorer makes of the text an image shows: the match with what was asked, the tenant's banned
words, and the "diffusion gibberish" that generated signs are known for. Pure functions on the lines the recogniser
read (``quality.ocr`` does the reading); nothing here loads a model.

The recogniser's alphabet is Chinese, Latin letters, digits and symbols plus a handful of Greek, Cyrillic and kana
letters (see ``quality.ocr``): other scripts come out as Latin-looking junk. So an expected text is *checked*
(``text_checked``) only when at least ``READABLE_SHARE`` of its letters and digits are in the alphabet; others are
left out of ``text_match`` and ``missing_texts``, and ``garbled`` is not judged for that image.

``garbled`` is the share of the image's text, by box length, that is unreadable or implausible as words: lines
read with little confidence, boxes with few characters read, and words judged by :func:`word_garbled` against the
whole words of CLIP's BPE vocabulary (:func:`lexicon`) and the words of the prompt and the expected texts.
"""

from __future__ import annotations

import difflib
import gzip
import importlib.util
import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from quality.base import ImageContext, ScoreContext, ScoreValue
from quality.prompt_text import normalize_prompt

_LEXICON_MODULE, _LEXICON_FILE = "open_clip", "bpe_simple_vocab_16e6.txt.gz"

INFERRED_SPACE = "\u200b"  # ZERO WIDTH SPACE: a word break the recogniser did not rank first, outside its alphabet
TEXT_CONFIDENCE = 0.5  # a line read with less is not text we trust (RapidOCR's own default cut-off)
MATCH_THRESHOLD = 0.8  # an expected text scoring less is missing: one wrong letter in five
READABLE_SHARE = 0.9  # share of an expected text's letters and digits the recogniser must know to check it
MIN_WORD = 3  # shorter letter runs are not judged as words: "of", "Mr", OCR crumbs
NEAR_MISS_MIN = 4  # shorter words have too many one-edit neighbours to call a misspelling
CHARS_PER_HEIGHT = 0.5  # clean Latin lines read 1.3-2.1 characters per box height, Chinese about 1
MIN_LINE_LENGTH = 2.0  # boxes narrower than two heights: one glyph-sized mark, not a word
MIN_TEXT_LENGTH = 6.0  # about one short line: the least amount of text ``garbled`` is a share of


@dataclass(frozen=True)
class Line:
    """One detected text line: what the recogniser read, its mean confidence, and the box's width in heights.

    ``text`` marks the word breaks ``quality.ocr.SpacedCTCDecode`` inferred with ``INFERRED_SPACE``: ``spaced``
    reads them as spaces, ``plain`` as nothing (the recogniser's own reading).
    """

    text: str
    confidence: float
    length: float = 1.0

    @property
    def spaced(self) -> str:
        return self.text.replace(INFERRED_SPACE, " ")

    @property
    def plain(self) -> str:
        return self.text.replace(INFERRED_SPACE, "")


def lexicon_path() -> Path:
    """The BPE vocabulary file inside the installed ``open_clip`` package, found without importing it (and torch)."""
    spec = importlib.util.find_spec(_LEXICON_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the word list needs the {_LEXICON_MODULE} package (open_clip_torch)")
    path = Path(spec.submodule_search_locations[0]) / _LEXICON_FILE
    if not path.is_file():
        raise FileNotFoundError(f"the word list {_LEXICON_FILE!r} is missing from {path.parent}")
    return path


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2/CLIP byte-level BPE: the printable character that stands for each byte, inverted."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return {chr(c): b for c, b in [*((b, b) for b in printable), *((256 + i, b) for i, b in enumerate(extra))]}


_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_CONFUSIONS = (("i", "l"), ("l", "i"), ("rn", "m"), ("m", "rn"), ("vv", "w"), ("cl", "d"), ("c", "e"), ("e", "c"),
               ("u", "v"), ("v", "u"))
_ROMAN = re.compile(r"m{0,3}(cm|cd|d?c{0,3})(xc|xl|l?x{0,3})(ix|iv|v?i{0,3})")
_TRIPLED = re.compile(r"(.)\1\1")


def near_miss(word: str, known: Collection[str]) -> bool:
    """Whether ``word`` (folded) is one edit from a known word of ``NEAR_MISS_MIN`` letters or more: a letter added,
    dropped or changed, or two neighbours swapped (Damerau; the candidates of Norvig's spelling corrector)."""
    if len(word) < NEAR_MISS_MIN - 1:
        return False
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    candidates = {a + b[1:] for a, b in splits if b}
    candidates |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    candidates |= {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    candidates |= {a + c + b for a, b in splits for c in _LETTERS}
    candidates.discard(word)
    return any(len(c) >= NEAR_MISS_MIN and c in known for c in candidates)


@cache
def lexicon() -> frozenset[str]:
    """Whole words of CLIP's byte-level BPE vocabulary (Radford et al. 2021), about 33k, folded by :func:`fold_word`.

    The merges were learnt from web image captions, so their complete words are what signs, posters and packaging
    say, common brand names included. Read from the file ``open_clip`` ships, without importing it (or torch).
    """
    decoder = _byte_decoder()
    lines = gzip.decompress(lexicon_path().read_bytes()).decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]  # as CLIP's SimpleTokenizer reads the file
    words: set[str] = set()
    for merge in merges:
        token = merge.replace(" ", "")
        if not token.endswith("</w>"):
            continue
        try:
            word = bytes(decoder[c] for c in token[:-4]).decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            continue
        if word.isalpha() and not _TRIPLED.search(word):  # "mmmm", "soooo": chat, not what a sign says
            words.add(fold_word(word))
    return frozenset(words)


def fold_word(text: str) -> str:
    """Case and diacritics folded (``Größe`` -> ``grosse``), the form words are compared in."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def match_form(text: str) -> str:
    """Letters and digits only, folded, look-alike letters in mixed words as Latin: what text matching compares."""
    return "".join(c for c in fold_word(normalize_prompt(text).normalized) if c.isalnum())


def similarity(expected: str, read: str) -> float:
    """How well ``expected`` occurs in ``read`` (0..1), both in :func:`match_form`: the best
    ``difflib`` ratio of ``expected`` against a window of ``read`` as long as it, at each alignment difflib finds
    (the "partial ratio" of fuzzywuzzy). Spaces and punctuation do not count: OCR drops and invents them."""
    if not expected:
        return 1.0
    if not read:
        return 0.0
    if len(read) <= len(expected):
        return difflib.SequenceMatcher(None, expected, read, autojunk=False).ratio()
    best = 0.0
    for block in difflib.SequenceMatcher(None, expected, read, autojunk=False).get_matching_blocks():
        start = max(0, min(block.b - block.a, len(read) - len(expected)))
        window = read[start:start + len(expected)]
        best = max(best, difflib.SequenceMatcher(None, expected, window, autojunk=False).ratio())
        if best == 1.0:
            break
    return best


def words(text: str) -> str:
    """``text`` as the release and pre policies see words (``lib.words``): case folded, every run of characters
    that are not letters or digits one space, padded with a space at each end."""
    return " " + " ".join("".join(c if c.isalnum() else " " for c in text.casefold()).split()) + " "


def banned_found(texts: Iterable[str], terms: Iterable[str]) -> list[str]:
    """The banned terms that occur as whole words in any of ``texts``, each in three readings: as read, normalised
    (NFKC, invisible characters, homoglyphs towards Latin) and folded (leetspeak, spaced letters; see
    ``quality.prompt_text``). So "G0RE" and "gоre" with a Cyrillic "о" count; "gorgeous" does not."""
    readings = []
    for text in texts:
        reading = normalize_prompt(text)
        readings += [words(text), words(reading.normalized), words(reading.folded)]
    found = []
    for term in dict.fromkeys(terms):
        needle = words(term)
        if needle.strip() and any(needle in r for r in readings):
            found.append(term)
    return found


def is_wide(char: str) -> bool:
    """Whether ``char`` is East Asian wide or fullwidth (CJK): such text has no spaces and is not judged as words."""
    return unicodedata.east_asian_width(char) in ("W", "F")


def word_garbled(token: str, lexicon: Collection[str], known: Collection[str] = ()) -> float | None:
    """How garbled one run of letters is: None when not judged (shorter than ``MIN_WORD``, or not Latin), 0 for a
    known word (the lexicon, or ``known``: the words of the prompt and the expected texts), 1 when implausible as a
    word, 0.5 when unknown but plausible (a name, a foreign word).

    Known also: ``www``, Roman numerals, and a word one common OCR confusion (i/l, rn/m, vv/w, cl/d, c/e, u/v)
    away from a known word: the reader's slip, not the image's. Implausible: Latin mixed with CJK in one word, no
    vowel (``y`` counts), four consonants in a row, one letter three times in a row, case soup (a capital after a
    small letter twice, as in ``xQzKt``), or one edit from a known word (``COFEFE``, ``BAKKERY``), the commonest way
    generated signs go wrong.
    """
    folded = fold_word(token)
    if any(is_wide(c) for c in folded):
        return 1.0 if any(c.isascii() for c in folded) else None
    if len(folded) < MIN_WORD or not folded.isascii():
        return None
    if folded in lexicon or folded in known or folded == "www" or _ROMAN.fullmatch(folded):
        return 0.0
    if any(variant in lexicon or variant in known for variant in _misreads(folded)):
        return 0.0
    vowels = [c in "aeiouy" for c in folded]
    run = longest = 0
    for vowel in vowels:
        run = 0 if vowel else run + 1
        longest = max(longest, run)
    tripled = _TRIPLED.search(folded) is not None
    case_switches = sum(a.islower() and b.isupper() for a, b in zip(token, token[1:], strict=False))
    if not any(vowels) or longest >= 4 or tripled or case_switches >= 2 or near_miss(folded, lexicon):
        return 1.0
    return 0.5


def _misreads(word: str) -> set[str]:
    return {word[:i] + b + word[i + len(a):] for a, b in _CONFUSIONS for i in range(len(word)) if word.startswith(a, i)}


def _letter_runs(text: str) -> list[str]:
    return "".join(c if c.isalpha() else " " for c in text).split()


def _marked_runs(text: str) -> list[tuple[str, list[str]]]:
    """Each run of letters as the recogniser read it, with its parts between inferred word breaks."""
    runs = "".join(c if c.isalpha() or c == INFERRED_SPACE else " " for c in text).split()
    return [(run.replace(INFERRED_SPACE, ""), [p for p in run.split(INFERRED_SPACE) if p]) for run in runs]


def _run_garbled(run: str, parts: list[str], lexicon: Collection[str], known: Collection[str]) -> float | None:
    """A run with inferred word breaks is judged split there ("SUMMER", "SALE"), unless it is a known word whole (a
    false break in small print: "Te rms"). Parts too short to judge are clean beside a known word ("NO", "GORE"),
    and otherwise keep the whole run's verdict ("MM", "WW")."""
    whole = word_garbled(run, lexicon, known)
    if not whole or len(parts) < 2:
        return whole
    verdicts = [word_garbled(part, lexicon, known) for part in parts]
    short = 0.0 if 0.0 in verdicts else whole
    return sum((short if v is None else v) * len(part) for v, part in zip(verdicts, parts, strict=True)) / len(run)


def line_garbled(line: Line, lexicon: Collection[str], known: Collection[str] = ()) -> float:
    """Share of one line that is garbled. All of it when the recogniser's confidence is under ``TEXT_CONFIDENCE``;
    else the part it could not read (fewer than ``CHARS_PER_HEIGHT`` characters per box height read) plus, of the
    part it read, the judged words' :func:`word_garbled` weighted by length, over all the letters and digits."""
    if line.confidence < TEXT_CONFIDENCE:
        return 1.0
    read = sum(not c.isspace() for c in line.plain)
    coverage = min(1.0, read / (CHARS_PER_HEIGHT * max(line.length, 1.0)))
    total = sum(c.isalnum() for c in line.plain)
    verdicts = ((_run_garbled(run, parts, lexicon, known), len(run)) for run, parts in _marked_runs(line.text))
    bad = sum(verdict * length for verdict, length in verdicts if verdict)
    return 1.0 - coverage * (1.0 - (min(1.0, bad / total) if total else 0.0))


def garbled(lines: Sequence[Line], lexicon: Collection[str], known: Collection[str] = ()) -> float:
    """Share of the image's text that is garbled: :func:`line_garbled` weighted by each box's width in heights
    (about its number of characters, whatever was read from it). Boxes under ``MIN_LINE_LENGTH`` heights (a
    glyph-sized mark) are left out, and the total counts as at least ``MIN_TEXT_LENGTH``, so that a stray mark in a
    photograph cannot make the whole image garbled. No text: 0."""
    judged = [line for line in lines if line.length >= MIN_LINE_LENGTH]
    total = sum(line.length for line in judged)
    bad = sum(line.length * line_garbled(line, lexicon, known) for line in judged)
    return bad / max(total, MIN_TEXT_LENGTH)


def fold_char(char: str) -> str:
    """One character in lower case without diacritics; unlike case folding, ``ß`` stays one letter."""
    return "".join(c for c in unicodedata.normalize("NFKD", char.lower()) if not unicodedata.combining(c))


def readable_share(text: str, alphabet: frozenset[str]) -> float:
    """Share of the letters and digits of ``text`` that the recogniser's alphabet has, case and diacritics aside
    (1.0 for a text without any)."""
    chars = [fold_char(c) for c in unicodedata.normalize("NFKC", text) if c.isalnum()]
    return sum(c in alphabet for c in chars) / len(chars) if chars else 1.0


def analyse(lines: Sequence[Line], image: ImageContext, context: ScoreContext, *, alphabet: frozenset[str],
            lexicon: Collection[str]) -> dict[str, ScoreValue]:
    """The scorer's answer for one image from its OCR lines (in reading order) and what the request asked for."""
    trusted = [line for line in lines if line.confidence >= TEXT_CONFIDENCE and line.plain.strip()]
    text = "\n".join(line.spaced.strip() for line in trusted)
    expected = [t for t in image.expected_texts if match_form(t)]
    checkable = [t for t in expected if readable_share(t, alphabet) >= READABLE_SHARE]
    read = match_form(text)
    scores = {t: similarity(match_form(t), read) for t in checkable}
    known = {fold_word(w) for source in (*expected, context.prompt or "") for w in _letter_runs(source)}
    found = banned_found([text, "\n".join(line.plain for line in trusted)], context.banned_terms)
    return {
        "text": text,
        "lines": len(trusted),
        "confidence": float(np.mean([line.confidence for line in trusted])) if trusted else 1.0,
        "expected": bool(expected),
        "text_checked": bool(expected) and len(checkable) == len(expected),
        "text_match": min(scores.values(), default=1.0),
        "missing_texts": [t for t, s in scores.items() if s < MATCH_THRESHOLD],
        "banned_words": len(found),
        "banned_found": found,
        # Text the recogniser cannot read looks garbled to it: no verdict rather than a false one.
        "garbled": garbled(lines, lexicon, known) if len(checkable) == len(expected) else 0.0,
    }
