"""Fitting speech onto the beat grid, syllable by syllable (pure numpy, no I/O).

A duration-driven synthesizer (Piper/VITS) says how many frames each phoneme unit lasts. Here those frame counts
are changed so that every syllable's vowel starts on its target frame: the span between two vowel onsets is
re-allocated among the units inside it. Word gaps absorb slack first, vowels stretch, consonants keep their length
when there is room and shrink towards a minimum when there is not, so nothing vanishes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from enum import IntEnum

import numpy as np

from engine.errors import VoiceError

VOWELS = frozenset("aeiouyæɐɑɒɔəɚɛɜɝɞɪɨʉʊʌʏøœɘɵɤɯɶᵻ")
DIPHTHONGS = frozenset({("a", "ɪ"), ("a", "ʊ"), ("ɔ", "ɪ"), ("e", "ɪ"), ("o", "ʊ"), ("ə", "ʊ"), ("ɪ", "ə"),
                        ("e", "ə"), ("ʊ", "ə")})
PAUSES = frozenset(" ,.;:!?-")
MARKS = frozenset("ˈˌːˑʲʰʷ˞")
SYLLABIC = "\u0329"
VOWEL_STRETCH_MAX = 1.5  # when a word gap can take the rest, a vowel grows to at most this times its length


class Kind(IntEnum):
    """What a phoneme unit is, for deciding how much its length may change."""

    FIXED = 0  # sentence edges: keep the natural length
    PAD = 1  # padding, stress and length marks: may shrink to nothing, never grow
    CONSONANT = 2  # keeps its length when there is room, shrinks to one frame when there is not
    VOWEL = 3  # grows with the slack, shrinks to two frames
    PAUSE = 4  # word gaps and punctuation: absorb slack first, may vanish


MIN_FRAMES = {Kind.PAD: 0, Kind.CONSONANT: 1, Kind.VOWEL: 2, Kind.PAUSE: 0}


def phoneme_kind(phoneme: str) -> Kind:
    """Classify one espeak IPA phoneme (a single code point or a merged cluster)."""
    if phoneme[:1] in VOWELS:
        return Kind.VOWEL
    if phoneme and all(c in PAUSES for c in phoneme):
        return Kind.PAUSE
    if phoneme and all(c in MARKS or unicodedata.combining(c) for c in phoneme):
        return Kind.PAD
    return Kind.CONSONANT


def nucleus_starts(phonemes: Sequence[str]) -> list[int]:
    """Indices of the phonemes that begin a syllable nucleus.

    A nucleus is a run of vowels (diphthongs stay one nucleus; `aɪɚ` is two) or a syllabic consonant (`n̩`).
    Stress and length marks inside a run do not split it.
    """
    starts: list[int] = []
    previous_vowel = ""
    for i, phoneme in enumerate(phonemes):
        kind = phoneme_kind(phoneme)
        if kind == Kind.VOWEL:
            if not previous_vowel or (previous_vowel[-1], phoneme[0]) not in DIPHTHONGS:
                starts.append(i)
            previous_vowel = phoneme
        elif kind == Kind.PAD and previous_vowel and phoneme in "ːˑ":
            continue
        else:
            if kind == Kind.CONSONANT and i + 1 < len(phonemes) and phonemes[i + 1] == SYLLABIC:
                starts.append(i)
            previous_vowel = ""
    return starts


def share(total: int, weights: np.ndarray) -> np.ndarray:
    """Split a non-negative integer total in proportion to weights (largest remainder); zero weights get 0."""
    weights = np.asarray(weights, dtype=np.float64)
    out = np.zeros(len(weights), dtype=np.int64)
    weight_sum = weights.sum()
    if total <= 0 or weight_sum <= 0:
        return out
    exact = total * weights / weight_sum
    out[:] = np.floor(exact)
    rest = total - int(out.sum())
    if rest > 0:
        order = np.argsort(-(exact - out), kind="stable")
        out[order[:rest]] += 1
    return out


def fit_segment(natural_frames: np.ndarray, kinds: np.ndarray, target_total: int) -> np.ndarray:
    """Frame counts for one span of units so they sum to `target_total` frames where the minimums allow.

    Shrinking takes word gaps first, then everything else in proportion to how far it is above its minimum.
    Growing lengthens the vowels (up to VOWEL_STRETCH_MAX when there is a gap) and puts the rest in the gaps;
    a span without a gap puts it all in its vowels (or consonants if it has no vowel).
    """
    natural = np.asarray(natural_frames, dtype=np.int64)
    kinds = np.asarray(kinds, dtype=np.int64)
    out = natural.copy()
    extra = int(target_total) - int(natural.sum())
    pause = kinds == Kind.PAUSE
    vowel = kinds == Kind.VOWEL
    if extra >= 0:
        if pause.any():
            to_vowels = min(extra, int(np.floor((VOWEL_STRETCH_MAX - 1.0) * natural[vowel].sum())))
            out[vowel] += share(to_vowels, natural[vowel])
            out[pause] += share(extra - to_vowels, np.ones(int(pause.sum())))
        else:
            grow = vowel if natural[vowel].sum() > 0 else kinds == Kind.CONSONANT
            if not grow.any():
                grow = np.ones(len(natural), dtype=bool)
            weights = natural[grow].astype(np.float64) + 1e-9
            out[grow] += share(extra, weights)
        return out
    cut = -extra
    from_pauses = min(cut, int(natural[pause].sum()))
    out[pause] -= share(from_pauses, natural[pause])
    cut -= from_pauses
    if cut > 0:
        floors = np.array([natural[i] if k == Kind.FIXED else min(natural[i], MIN_FRAMES[Kind(k)])
                           for i, k in enumerate(kinds)], dtype=np.int64)
        room = np.where(pause, 0, out - floors)
        if cut >= room.sum():
            out = np.where(pause, out, floors)
        else:
            out -= share(cut, room)
    return out


def fit_frames(natural_frames: Sequence[int], kinds: Sequence[int], anchor_units: Sequence[int],
               target_frames: Sequence[float]) -> np.ndarray:
    """New per-unit frame counts so that unit `anchor_units[k]` starts at frame round(`target_frames[k]`).

    Units before the first anchor form the head span, units after the last anchor keep their natural length.
    Where a target cannot be met (its span would go below the minimums) the anchor lands late and the next
    span is fitted from where it really starts, so errors never accumulate.
    """
    natural = np.asarray(natural_frames, dtype=np.int64)
    kind_array = np.asarray(kinds, dtype=np.int64)
    anchors = [int(a) for a in anchor_units]
    if len(natural) != len(kind_array):
        raise VoiceError(f"fit_frames: {len(natural)} durations but {len(kind_array)} kinds; pass one kind per unit")
    if len(anchors) != len(target_frames):
        raise VoiceError(f"fit_frames: {len(anchors)} anchors but {len(target_frames)} targets; pass one each")
    in_range = all(0 <= a < len(natural) for a in anchors)
    if not in_range or any(b <= a for a, b in zip(anchors, anchors[1:])):
        raise VoiceError("fit_frames: anchor units must be strictly increasing indices into the units")
    out = natural.copy()
    position = 0
    start = 0
    for anchor, target in zip(anchors, target_frames):
        span = slice(start, anchor)
        out[span] = fit_segment(natural[span], kind_array[span], int(round(target)) - position)
        position += int(out[span].sum())
        start = anchor
    return out


def best_phase(offsets_frames: Sequence[float], steps: int = 32) -> float:
    """The sub-frame shift in [0, 1) that puts the (fractional) targets closest to whole frames overall."""
    offsets = np.asarray(offsets_frames, dtype=np.float64)
    if offsets.size == 0:
        return 0.0
    phases = np.arange(steps) / steps
    shifted = offsets[None, :] + phases[:, None]
    cost = np.abs(shifted - np.round(shifted)).mean(axis=1)
    return float(phases[int(np.argmin(cost))])


def vowel_targets(word_vowels: Sequence[int], syllables: Sequence[int],
                  onsets_s: Sequence[float]) -> list[float | None]:
    """One target time per synthesized vowel, mapped word by word onto that word's planned onsets.

    `word_vowels[i]` is how many vowels the synthesizer gives word i, `syllables[i]` how many the plan gave it.
    Equal counts map one to one. Otherwise the word's vowels are spread evenly between its first and last
    targets; a word planned as one syllable but spoken with more spreads them over its share of the gap to the
    next word's first target. A word planned with no syllable leaves its vowels free (None).
    """
    if len(word_vowels) != len(syllables):
        raise VoiceError(f"vowel_targets: {len(word_vowels)} vowel counts for {len(syllables)} words")
    if sum(syllables) != len(onsets_s):
        raise VoiceError(f"vowel_targets: {len(onsets_s)} onsets for {sum(syllables)} planned syllables")
    onsets = [float(t) for t in onsets_s]
    gaps = np.diff(onsets)
    typical_gap = float(np.median(gaps)) if gaps.size else 0.2
    targets: list[float | None] = []
    first = 0
    for i, (have, planned) in enumerate(zip(word_vowels, syllables)):
        own = onsets[first:first + planned]
        first += planned
        if not own:
            targets.extend([None] * max(have, 0))
            continue
        if have <= 0:
            continue
        if have == planned:
            targets.extend(own)
        elif len(own) > 1:
            if have == 1:
                targets.append(own[0])
            else:
                targets.extend(np.linspace(own[0], own[-1], have).tolist())
        else:
            following = onsets[first] if first < len(onsets) else own[0] + typical_gap
            step = (following - own[0]) / have
            targets.extend(own[0] + j * step for j in range(have))
    return targets
