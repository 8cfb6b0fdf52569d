"""Prompt normalisation: the readings of a prompt that the pre-generation policy checks banned terms against.

Word lists are evaded in a few known ways: invisible characters inside a word (``go\\u200bre``), look-alike letters
from another script or a styled alphabet (``gоre`` with a Cyrillic ``о``, ``𝐠𝐨𝐫𝐞``, ``ｇｏｒｅ``), zalgo marks,
leetspeak (``g0r3``) and spaced-out letters (``g o r e``). ``normalize_prompt`` undoes them in two readings, so the
policy can tell how far it had to go:

- ``normalized`` undoes what is invisible or visually the same: Unicode NFKC (UAX #15), Default_Ignorable_Code_Point
  and format/control characters (UAX #44), UTS #39 confusables towards Latin, case and whitespace.
- ``folded`` also undoes typed disguises: Latin diacritics and Latin look-alikes (``ı``, ``ɑ``), spaced-out
  letters and leetspeak. It folds more than a person would ("gpt4" reads "gpta"); whole-word rules rarely care.

Latin letters stacked with marks Unicode has no precomposed letter for (zalgo text, overlays) lose all their marks;
so do rare orthographies such as Yoruba tone marks on dotted vowels, which then count as changed.

Other scripts are left alone. A confusable letter is folded to Latin only inside a word that mixes scripts (UTS #39
section 5.1 "Highly Restrictive", which allows Latin with Han/Hiragana/Katakana, Han/Bopomofo or Han/Hangul), or in
a word made wholly of Latin look-alikes (``ѕех``) when the prompt has Latin letters and no genuine letter of that
word's script. So a Greek or Russian sentence keeps its words, while a lone disguised word in an English prompt
does not. The confusables and script data come from ``confusable-homoglyphs`` (Unicode confusables.txt, Scripts.txt).
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

_LATIN = "LATIN"
_NEUTRAL = frozenset({"COMMON", "INHERITED"})
_NOT_FOREIGN = _NEUTRAL | {_LATIN}
# UTS #39 5.1: script sets that make up one writing system, so a word using them together is not "mixed".
_WRITING_SYSTEMS = (
    frozenset({_LATIN, "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({_LATIN, "HAN", "BOPOMOFO"}),
    frozenset({_LATIN, "HAN", "HANGUL"}),
)

# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties.txt): rendered as nothing, so any of them inside a
# word hides the word from a list without changing what a person (or a text encoder) reads.
_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F),
    (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)
_IGNORABLE_STARTS = [start for start, _ in _IGNORABLE]

# Invisible characters with a legitimate job, not counted as a change: a joiner between two non-ASCII characters
# (Persian and Indic orthography, emoji ZWJ sequences) and one variation selector after a non-ASCII character
# (emoji presentation, CJK ideographic variants). Between ASCII letters, or repeated, they are an evasion signal.
_BENIGN_INVISIBLE = re.compile(
    "(?<=[^\\x00-\\x7f])(?:[\u200c\u200d](?=[^\\x00-\\x7f])"
    "|[\ufe00-\ufe0f\U000e0100-\U000e01ef](?![\ufe00-\ufe0f\U000e0100-\U000e01ef]))"
)

# Leetspeak, applied only inside ASCII tokens that have a letter. Symbols are folded only before a later letter or
# digit of the token, so "wow!" and "c++" keep theirs.
_LEET_DIGITS = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b"}
_LEET_SYMBOLS = {"@": "a", "$": "s", "!": "i", "|": "l", "+": "t"}
# Anchored at the token's start, so a long token is scanned once, not once per starting position.
_LEET_TOKEN = re.compile(r"(?<![0-9a-z@$!|+])[a-z]*+[0-9@$!|+][0-9a-z@$!|+]*+")
# Tokens that are numbers with a unit or model/version names, not leetspeak: 4k, 1080p, 35mm, 1st, 1920x1080, v6.
_NOT_LEET = re.compile(
    r"\d+(?:st|nd|rd|th|s|k|p|d|x|px|mm|cm|fps|hz|mp|yo|yrs?|am|pm|gb|mb|kb|ms)?|\d+x\d+|[a-z]{1,2}\d+"
)
# Three or more single letters (or leet characters) with the same separator between them: "g o r e", "g.o.r.e",
# "g - o - r - e". A unit is a single character and separators are not units, so matching is linear.
_SPACED = re.compile(r"(?<![\w@$!|+])[a-z0134578@$](?P<sep>[ ._*~/\\·•-]{1,3})[a-z0134578@$](?:(?P=sep)[a-z0134578@$])+"
                     r"(?![\w@$!|+])")
_HAS_LETTER = re.compile(r"[a-z]")
_SEPARATORS = re.compile(r"[ ._*~/\\·•-]+")


@dataclass(frozen=True)
class NormalizedPrompt:
    """The readings of one prompt and the evasion signals found on the way.

    ``changed``: normalisation did more than fold case and whitespace (a confusable letter, an invisible character
    without a legitimate job, zalgo marks, or an NFKC change to letters or digits). ``mixed_script``: a word mixes
    scripts (UTS #39), judged before folding. ``invisible``: characters removed as invisible or control,
    ``confusables``: letters folded to Latin in ``normalized``, ``scripts``: the scripts of the prompt's letters.
    """

    normalized: str
    folded: str
    changed: bool
    mixed_script: bool
    invisible: int = 0
    confusables: int = 0
    scripts: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types, the shape of ``input.features`` in the pre-generation policy."""
        return {
            "normalized": self.normalized,
            "folded": self.folded,
            "changed": self.changed,
            "mixed_script": self.mixed_script,
            "invisible": self.invisible,
            "confusables": self.confusables,
            "scripts": list(self.scripts),
        }


@dataclass(frozen=True)
class _Unicode:
    """Script ranges and the confusable-to-Latin map, built once from the library's data."""

    starts: list[int]
    ends: list[int]
    scripts: list[str]
    to_latin: dict[str, str]


@functools.cache
def _unicode() -> _Unicode:
    from confusable_homoglyphs import categories, confusables  # ~30 ms of JSON: loaded on first use, not at import

    aliases = categories.categories_data["iso_15924_aliases"]
    ranges = categories.categories_data["code_points_ranges"]
    to_latin: dict[str, str] = {}
    for char, homoglyphs in confusables.confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        for glyph in homoglyphs:
            # "ł" -> "l̸": the prototype may carry a mark; what counts is the ASCII letter or digit under it.
            base = "".join(c for c in unicodedata.normalize("NFD", glyph["c"]) if not unicodedata.combining(c))
            if len(base) == 1 and base.isascii() and base.isalnum():
                # The prototype of I, l, 1 and | is "l"; an upper-case look-alike (Greek Ι, Cyrillic І) is an I.
                to_latin[char] = "I" if base == "l" and char.isupper() else base
                break
    return _Unicode([r[0] for r in ranges], [r[1] for r in ranges], [aliases[r[2]] for r in ranges], to_latin)


def warmup() -> None:
    """Load the confusables and script tables now (about 50 ms), not on the first prompt with non-ASCII text."""
    _unicode()


@functools.lru_cache(maxsize=8192)
def _script(char: str) -> str:
    data = _unicode()
    i = bisect.bisect_right(data.starts, ord(char)) - 1
    return data.scripts[i] if i >= 0 and ord(char) <= data.ends[i] else "UNKNOWN"


class _CleanMap(dict[int, int | None]):
    """``str.translate`` table, filled on demand: whitespace to a space, invisible and control characters removed."""

    def __missing__(self, code: int) -> int | None:
        char = chr(code)
        value: int | None = code
        if char.isspace():
            value = 0x20
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs") or _is_ignorable(code):
            value = None
        if len(self) < 1 << 16:  # bounded: a prompt of rare characters must not grow it without limit
            self[code] = value
        return value


def _is_ignorable(code: int) -> bool:
    i = bisect.bisect_right(_IGNORABLE_STARTS, code) - 1
    return i >= 0 and code <= _IGNORABLE[i][1]


_CLEAN = _CleanMap()


def _alnum(text: str) -> str:
    return "".join(c for c in text if c.isalnum())


def _is_mixed(scripts: set[str]) -> bool:
    return len(scripts) > 1 and not any(scripts <= system for system in _WRITING_SYSTEMS)


@dataclass
class _Word:
    start: int
    end: int
    scripts: set[str]
    all_foldable: bool = True


def _fold_scripts(text: str) -> tuple[str, int, int, bool, tuple[str, ...]]:
    """Drop zalgo marks, fold confusable words to Latin. Returns text, marks dropped, letters folded, mixed, scripts."""
    data = _unicode()
    out: list[str] = []
    words: list[_Word] = []
    word: _Word | None = None
    marks = 0
    genuine: set[str] = set()  # scripts with a letter that has no Latin look-alike: the prompt really uses them
    for char in text:
        if char.isascii():
            if char.isalnum():
                if word is None:
                    word = _Word(len(out), len(out), set())
                    words.append(word)
                word.end = len(out) + 1
                if char.isalpha():
                    word.scripts.add(_LATIN)
            else:
                word = None
            out.append(char)
            continue
        if unicodedata.category(char)[0] == "M" and out and out[-1].isalpha():
            # A mark NFKC could not compose onto a Latin letter (zalgo, overlays): the letter loses all its marks.
            base = out[-1] if out[-1].isascii() else unicodedata.normalize("NFD", out[-1])[0]
            if base.isascii():
                out[-1] = base
                marks += 1
                continue
        if not char.isalnum():
            word = None
            out.append(char)
            continue
        if word is None:
            word = _Word(len(out), len(out), set())
            words.append(word)
        out.append(char)
        word.end = len(out)
        script = _script(char)
        if script in _NEUTRAL:
            continue
        word.scripts.add(script)
        if script != _LATIN and char not in data.to_latin:
            word.all_foldable = False
            genuine.add(script)
    latin_context = any(_LATIN in w.scripts for w in words)
    folded = 0
    for w in words:
        foreign = w.scripts - {_LATIN}
        if not foreign:
            continue
        mixed = _is_mixed(w.scripts)
        if (mixed and (_LATIN in w.scripts or w.all_foldable)) or (
            not mixed and w.all_foldable and latin_context and not foreign & genuine
        ):
            for i in range(w.start, w.end):
                char = out[i]
                if not char.isascii() and char in data.to_latin and _script(char) not in _NOT_FOREIGN:
                    out[i] = data.to_latin[char]
                    folded += 1
    mixed_script = any(_is_mixed(w.scripts) for w in words)
    scripts = tuple(sorted({s.lower() for w in words for s in w.scripts}))
    return "".join(out), marks, folded, mixed_script, scripts


def _latin_fold(char: str) -> str:
    """A Latin letter with diacritics or a Latin look-alike (ı, ɑ, ł) as its ASCII letter; anything else unchanged."""
    if char.isascii() or not char.isalpha() or _script(char) != _LATIN:
        return char
    base = unicodedata.normalize("NFD", char)[0]
    if base.isascii():
        return base.lower()
    return _unicode().to_latin.get(char, char).lower()


def _join_spaced(match: re.Match[str]) -> str:
    letters = _SEPARATORS.sub("", match.group(0))
    return letters if sum(c.isalpha() for c in letters) >= 2 else match.group(0)


def _unleet(match: re.Match[str]) -> str:
    token = match.group(0)
    if not _HAS_LETTER.search(token) or _NOT_LEET.fullmatch(token):
        return token
    last = max(i for i, c in enumerate(token) if c.isalnum())
    return "".join(
        _LEET_DIGITS.get(c, c) if c.isdigit() else _LEET_SYMBOLS[c] if c in _LEET_SYMBOLS and i < last else c
        for i, c in enumerate(token)
    )


def fold_text(normalized: str) -> str:
    """The ``folded`` reading of an already normalised text: Latin diacritics, spaced letters and leetspeak undone."""
    text = normalized if normalized.isascii() else "".join(_latin_fold(c) for c in normalized)
    text = _SPACED.sub(_join_spaced, text)
    return " ".join(_LEET_TOKEN.sub(_unleet, text).split())


def normalize_prompt(text: str) -> NormalizedPrompt:
    """Normalise one prompt (see the module docstring). Linear in the length of ``text``; no regex backtracks."""
    cleaned = text.translate(_CLEAN)
    removed = len(text) - len(cleaned)
    counted = removed - (len(_BENIGN_INVISIBLE.findall(text)) if removed else 0)
    if cleaned.isascii():
        marks = folded = 0
        mixed = False
        scripts: tuple[str, ...] = ("latin",) if any(c.isalpha() for c in cleaned) else ()
        nfkc_changed = False
        body = cleaned
    else:
        body = unicodedata.normalize("NFKC", cleaned)
        nfkc_changed = body != cleaned and _alnum(body) != _alnum(unicodedata.normalize("NFC", cleaned))
        body, marks, folded, mixed, scripts = _fold_scripts(body)
    body = body.casefold()
    if not body.isascii():
        # Case folding can denormalise (NFKC_Casefold repeats NFKC); Turkish İ folds to i + combining dot above.
        body = unicodedata.normalize("NFKC", body).replace("i\u0307", "i")
    normalized = " ".join(body.split())
    return NormalizedPrompt(
        normalized=normalized,
        folded=fold_text(normalized),
        changed=bool(counted > 0 or marks or folded or nfkc_changed),
        mixed_script=mixed,
        invisible=removed,
        confusables=folded,
        scripts=scripts,
    )
