"""Rhyme: keys, perfect and slant rhymes, multi-word rhymes, and the DopeLearning rhyme density."""

from __future__ import annotations

from collections.abc import Sequence

from engine.write.phonetics import Pron, is_vowel, pronounce, vowels

DENSITY_WINDOW_WORDS = 15


def _phrase_pron(words: Sequence[str]) -> Pron:
    return tuple(p for w in words for p in pronounce(w))


def rhyme_key(pron: Pron) -> tuple[str, ...]:
    """Phones from the last stressed vowel to the end, stress digits dropped (the perfect-rhyme part)."""
    idx = [i for i, p in enumerate(pron) if is_vowel(p)]
    if not idx:
        return ()
    stressed = [i for i in idx if pron[i][-1] in "12"]
    start = stressed[-1] if stressed else idx[-1]
    return tuple(p[:2] if is_vowel(p) else p for p in pron[start:])


def vowel_key(pron: Pron) -> tuple[str, ...]:
    """Only the vowels of the perfect-rhyme part: what a slant rhyme must match."""
    return tuple(p for p in rhyme_key(pron) if p in _VOWEL_SET)


_VOWEL_SET = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())


def word_rhyme_key(word: str) -> tuple[str, ...]:
    """Perfect-rhyme key of a word."""
    return rhyme_key(pronounce(word))


def word_vowel_key(word: str) -> tuple[str, ...]:
    """Slant-rhyme (vowel) key of a word."""
    return vowel_key(pronounce(word))


def perfect_rhyme(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two phrases rhyme perfectly (same phones from the last stressed vowel), and are not the same."""
    ka, kb = rhyme_key(_phrase_pron(a)), rhyme_key(_phrase_pron(b))
    return bool(ka) and ka == kb and [w.lower() for w in a][-1:] != [w.lower() for w in b][-1:]


CONSONANT_CLASSES: dict[str, str] = {
    **dict.fromkeys("P B T D K G".split(), "stop"),
    **dict.fromkeys("M N NG".split(), "nasal"),
    **dict.fromkeys("F V TH DH S Z SH ZH HH CH JH".split(), "fricative"),  # affricates end in friction
    **dict.fromkeys("L R".split(), "liquid"),
    **dict.fromkeys("W Y".split(), "glide"),
}


def coda_class(key: Sequence[str]) -> str:
    """How a rhyme key closes: 'open' when it ends on a vowel, else the manner class of its final consonant
    (stop, nasal, fricative, liquid, glide)."""
    if not key or key[-1] in _VOWEL_SET:
        return "open"
    return CONSONANT_CLASSES.get(key[-1], key[-1])


def slant_rhyme(a: Sequence[str], b: Sequence[str]) -> bool:
    """Slant rhyme: the same vowels from the last stressed vowel to the end, and a final consonant of the same
    manner class (stop/stop as in 'luck'/'just', nasal/nasal as in 'time'/'line', fricative/fricative,
    liquid/liquid), or both open ('me'/'tree'). The same last word is no rhyme.

    So 'rule' (liquid) does not rhyme with 'moved' (stop), nor 'there' with 'less', nor an open syllable with a
    closed one.
    """
    pa, pb = _phrase_pron(a), _phrase_pron(b)
    ka, kb = rhyme_key(pa), rhyme_key(pb)
    if not ka or not kb or vowel_key(pa) != vowel_key(pb):
        return False
    if [w.lower() for w in a][-1:] == [w.lower() for w in b][-1:]:
        return False
    return coda_class(ka) == coda_class(kb)


def rhymes(a: Sequence[str], b: Sequence[str]) -> bool:
    """Perfect or slant rhyme between two phrases (last words compared, multi-word phrases allowed)."""
    return perfect_rhyme(a, b) or slant_rhyme(a, b)


def multisyllabic_match(a: Sequence[str], b: Sequence[str]) -> int:
    """How many vowels two phrases share counting back from their ends ('laptop' / 'crack pot' → 2)."""
    va = [v for w in a for v in vowels(w)]
    vb = [v for w in b for v in vowels(w)]
    n = 0
    while n < min(len(va), len(vb)) and va[-1 - n] == vb[-1 - n]:
        n += 1
    return n


def rhyme_density(words: Sequence[str], window: int = DENSITY_WINDOW_WORDS) -> float:
    """DopeLearning rhyme density: for each word, the longest vowel sequence ending at it that also ends at one
    of the previous `window` words (other words than itself), averaged over the words that have vowels."""
    counted = sum(1 for w in words if vowels(w))
    return DensityScorer((), window).gain(words) / counted if counted else 0.0



class DensityScorer:
    """Scores candidate continuations of what was already said by what they add to the DopeLearning sum.

    `rhyme_density(history + new) * n == rhyme_density(history) * m + DensityScorer(history).gain(new)`, with n
    and m the words with vowels in each; the history's vowels are worked out once for all candidates.
    """

    def __init__(self, history: Sequence[str], window: int = DENSITY_WINDOW_WORDS) -> None:
        self.window = window
        spoken = [(w.lower(), vowels(w)) for w in history]
        spoken = [(w, vs) for w, vs in spoken if vs]
        self._words = [w for w, _ in spoken]
        self._seq: list[str] = []
        self._ends: list[int] = []
        for _, vs in spoken:  # all of it: a shared vowel run can reach back past the window
            self._seq.extend(vs)
            self._ends.append(len(self._seq) - 1)
        self._vowels: dict[str, tuple[str, ...]] = {}

    def gain(self, new: Sequence[str]) -> int:
        """For each new word, the longest vowel run ending at it that also ends at one of the `window` words before
        it (another word than itself), summed."""
        seq = list(self._seq)
        ends = list(self._ends)
        keep = list(self._words)
        first = len(ends)
        for w in new:
            lw = w.lower()
            vs = self._vowels.get(lw)
            if vs is None:
                vs = self._vowels[lw] = vowels(lw)
            if not vs:
                continue
            seq.extend(vs)
            ends.append(len(seq) - 1)
            keep.append(lw)
        total = 0
        for i in range(first, len(ends)):
            end_i = ends[i]
            best = 0
            for j in range(max(0, i - self.window), i):
                if keep[j] == keep[i]:
                    continue
                end_j = ends[j]
                n = 0
                while end_j - n >= 0 and end_i - n > end_j and seq[end_i - n] == seq[end_j - n]:
                    n += 1
                if n > best:
                    best = n
            total += best
        return total


def density_gain(history: Sequence[str], new: Sequence[str], window: int = DENSITY_WINDOW_WORDS) -> int:
    """What `new` words, said right after `history`, add to the DopeLearning sum (see DensityScorer)."""
    return DensityScorer(history, window).gain(new)
