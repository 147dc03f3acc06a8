"""The lexicon filler: no model, only phrase frames, a word bank tagged by part of speech and a common-word list.

A line is one to three clauses joined by conjunctions. The first takes up an opponent word ("your queen is weak",
"I took your queen"); the last ends on the planned rhyme; in longer lines the first or a middle clause ends on
another word of the same rhyme (an internal rhyme). Each frame agrees with the word it ends on: a noun after "the",
a verb after "watch me", an adjective after "I stay"; praise goes to us and insults to the opponent.

End words come from the word bank (presets/words/bank.toml) when it has a rhyme for the planned sound, else from
the most common words that rhyme (presets/words/common.txt), their part of speech guessed from the spelling.
Of many candidate lines that meet the syllable budget exactly, the one that raises the verse's rhyme density
(DopeLearning: vowel runs shared with the words just said) most wins, with a small seeded jitter for variety.
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from engine.errors import PlanError, PresetError
from engine.presets import PRESETS_DIR
from engine.write.phonetics import in_dictionary, pronounce, syllables, tokenize
from engine.write.plan import FillContext, FilledLine, LinePlan
from engine.write.rhyme import DensityScorer, coda_class, rhyme_density, rhyme_key, vowel_key

BANK_PATH = PRESETS_DIR / "words" / "bank.toml"
COMMON_PATH = PRESETS_DIR / "words" / "common.txt"
BANK_SCHEMA = 1
END_WORDS = 8  # rhyme words tried per line
CANDIDATES = 300  # lines sampled from those that meet the budget, then scored
PERFECT_BONUS = 0.15  # score for ending on a perfect rather than a slant rhyme
BANK_BONUS = 0.1  # score for ending on a word-bank word rather than a guessed common word
REPEAT_PENALTY = 0.1  # per word pair already said in this verse
REUSE_PENALTY = 0.15  # per word (not a function word or the answer word) already said in this verse
MAX_MISS = 32  # syllables off the budget the filler will go, looking for any line at all
JITTER = 0.05  # seeded randomness, so that close candidates vary with the seed

Phrase = tuple[str, ...]

# Clauses ending on the rhyme word {E}, by the end word's tag. {T}/{Tp}: what I do to a thing (base/past), {L}/{Lp}:
# what the opponent does to a thing, {R}/{Rp}: what I do, {S}/{Sp}: what the opponent does, {P}: praise.
CLAUSES: dict[str, tuple[str, ...]] = {
    "thing": (
        "I {T} the {E}", "I {Tp} the {E}", "I {T} your {E}", "I {Tp} your {E}", "I still {T} the {E}",
        "I'm gonna {T} your {E}", "you {L} the {E}", "you {Lp} the {E}", "you {Lp} your {E}",
        "you're gonna {L} the {E}", "I got the {P} {E}",
    ),
    "idea": (
        "I {T} the {E}", "I {Tp} the {E}", "I {T} your {E}", "I {Tp} your {E}", "I still {T} the {E}",
        "I'm gonna {T} your {E}", "you {L} the {E}", "you {Lp} the {E}", "you {Lp} your {E}",
        "you're gonna {L} your {E}", "you got no {E}", "I got the {E}", "I got {E}", "you lost {E}",
    ),
    "joke": ("you're a {E}", "you're just a {E}", "you look like a {E}", "you rap like a {E}"),
    "praise": (
        "I stay {E}", "I'm too {E}", "I keep it {E}", "I'm so {E}", "you ain't {E}", "I'm still {E}", "I been {E}",
    ),
    "insult": ("you look {E}", "you sound {E}", "you're so {E}", "you're too {E}", "you stay {E}", "you're just {E}"),
    "rise": (
        "watch me {E}", "I was born to {E}", "I came to {E}", "let me {E}", "I {E}", "I still {E}", "you can't {E}",
        "you'll never {E}",
    ),
    "sink": ("you {E}", "you always {E}", "watch you {E}", "you're gonna {E}", "I made you {E}", "I'll make you {E}"),
    "rise_past": ("I {E}", "I just {E}", "I already {E}"),
    "sink_past": ("you {E}", "you just {E}", "you already {E}"),
    "past": ("I just {E}", "you never {E}"),
    "gerund": ("I keep {E}", "I been {E}", "you keep {E}"),
}

CLAUSES["noun"] = tuple(f for f in CLAUSES["thing"] if "{E}" in f and (" the {E}" in f or " your {E}" in f))

# Clauses with the opponent's word {A} as subject, ending on {E}. {be}/{has}/{looks} agree with {A}.
ANSWER_CLAUSES: dict[str, tuple[str, ...]] = {
    "joke": ("your {A} {be} a {E}", "your {A} {be} like a {E}", "your {A} {be} just a {E}"),
    "thing": ("your {A} {Lp} the {E}", "your {A} {Lp} my {E}"),
    "idea": ("your {A} got no {E}", "your {A} {has} no {E}", "your {A} {Lp} the {E}"),
    "insult": ("your {A} {be} {E}", "your {A} {be} so {E}", "your {A} {be} too {E}", "your {A} {looks} {E}",
               "your {A} went {E}"),
    "praise": ("your {A} ain't {E}",),
    "sink": ("your {A} will {E}", "your {A} {be} gonna {E}"),
    "rise": ("your {A} can't {E}", "your {A} will never {E}"),
    "sink_past": ("your {A} {E}", "your {A} just {E}"),
    "past": ("your {A} never {E}",),
}

ANSWER_CLAUSES["noun"] = ANSWER_CLAUSES["thing"]

# Openers that take up the opponent's word {A} and end on it: for a noun, and for any other word (quoted).
NOUN_OPENERS = ("your {A} {be} {I}", "I {Tp} your {A}", "I {T} your {A}", "forget your {A}", "you talk about your {A}",
                "you and your {A}", "look at your {A}")
WORD_OPENERS = ("you said {A}", "you keep saying {A}", "you claim {A}")
CALLBACK_OPENERS = ("remember your {A}", "back to your {A}")
CONJUNCTIONS: tuple[Phrase, ...] = ((), ("and",), ("but",), ("so",), ("while",), ("now",), ("cause",), ("and", "now"))
DETERMINERS = frozenset("a an the my your his her our their this that every".split())
FUNCTION_WORDS = frozenset("i i'm you you're your the a my and but so while now cause to like no is are".split())


@dataclass(frozen=True)
class WordBank:
    """Words the filler ends lines on, by part of speech, and common words by rank for rhymes the bank lacks."""

    things: tuple[str, ...]
    ideas: tuple[str, ...]
    jokes: tuple[str, ...]
    praise: tuple[str, ...]
    insults: tuple[str, ...]
    take: tuple[tuple[str, str], ...]  # (base, past)
    lack: tuple[tuple[str, str], ...]
    rise: tuple[tuple[str, str], ...]
    sink: tuple[tuple[str, str], ...]
    common: tuple[str, ...]

    table: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)  # bank word -> its tags
    # vowel key -> (word, rhyme key, coda class) of every bank and common word with a frame, bank words first
    sounds: dict[tuple[str, ...], list[tuple[str, tuple[str, ...], str]]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        table: dict[str, list[str]] = {}
        for tag, words in (("thing", self.things), ("idea", self.ideas), ("joke", self.jokes),
                           ("praise", self.praise), ("insult", self.insults)):
            for w in words:
                table.setdefault(w, []).append(tag)
        for tag, verbs in (("rise", self.rise), ("sink", self.sink), ("take", self.take), ("lack", self.lack)):
            for base, past in verbs:
                table.setdefault(base, [])
                table.setdefault(past, [])
                if tag in ("rise", "sink"):
                    table[base].append(tag)
                    if past != base:
                        table[past].append(f"{tag}_past")
        for w in self.things:  # plurals of things: "I own the floors", "you lost your doors"
            plural = w + ("es" if w.endswith(("s", "x", "ch", "sh")) else "s")
            if plural not in table and in_dictionary(plural):
                table[plural] = ["noun"]
        self.table.update({w: tuple(dict.fromkeys(t)) for w, t in table.items()})
        for w in dict.fromkeys((*self.end_words(), *self.common)):
            if self.tags(w):
                pron = pronounce(w)
                key = rhyme_key(pron)
                self.sounds.setdefault(vowel_key(pron), []).append((w, key, coda_class(key)))

    def tags(self, word: str) -> tuple[str, ...]:
        """What a word can end a clause as (keys of CLAUSES). Words outside the bank are guessed from the spelling:
        -ed a past verb, -ing a gerund, -ly nothing (no frame fits an adverb), anything else a noun (after "the")."""
        if word in self.table:
            return self.table[word]
        if word.endswith("ed"):
            return ("past",)
        if word.endswith("ing"):
            return ("gerund",)
        return () if word.endswith("ly") else ("noun",)

    def known(self, word: str) -> bool:
        """Whether the word is in the bank at all (any list)."""
        return word in self.table

    def end_words(self) -> tuple[str, ...]:
        """Bank words a line can end on (those with a clause frame)."""
        return tuple(w for w, t in self.table.items() if t)


def _words(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(text.split()))


def _verbs(text: str, key: str, path: Path) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in text.split():
        base, sep, past = item.partition(":")
        if not sep or not base or not past:
            raise PresetError(f"{path}: {key} entry {item!r} must be base:past (like hold:held); fix the word bank")
        pairs.append((base, past))
    return tuple(dict.fromkeys(pairs))


@lru_cache(maxsize=4)
def load_bank(bank_path: Path = BANK_PATH, common_path: Path = COMMON_PATH) -> WordBank:
    """Read the word bank and the common-word list (cached). PresetError names the file when one is missing or
    malformed."""
    try:
        data = tomllib.loads(Path(bank_path).read_text())
        common = tuple(ln.strip() for ln in Path(common_path).read_text().splitlines()
                       if ln.strip() and not ln.startswith("#"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PresetError(f"the lexicon's word lists cannot be read ({exc}); restore presets/words/ from the "
                          "repository") from exc
    if data.get("schema") != BANK_SCHEMA:
        raise PresetError(f"{bank_path}: schema must be {BANK_SCHEMA}, got {data.get('schema')!r}")
    keys = ("things", "ideas", "jokes", "praise", "insults", "take", "lack", "rise", "sink")
    bad = [k for k in keys if not isinstance(data.get(k), str) or not data[k].split()]
    if bad:
        raise PresetError(f"{bank_path}: {', '.join(bad)} must be non-empty strings of words")
    return WordBank(
        *(_words(data[k]) for k in ("things", "ideas", "jokes", "praise", "insults")),
        *(_verbs(data[k], k, bank_path) for k in ("take", "lack", "rise", "sink")), common)


def _plural(word: str) -> bool:
    return word.endswith("s") and not word.endswith(("ss", "us", "is"))


def _expand(frame: str, bank: WordBank, end: str, answer: str) -> Iterator[Phrase]:
    """Every phrase of a frame: its one verb or adjective slot filled with each word that fits."""
    plural = _plural(answer)
    agree = {"{be}": "are" if plural else "is", "{has}": "have" if plural else "has",
             "{looks}": "look" if plural else "looks"}
    if plural and ("{be} a " in frame or "{be} just a " in frame):
        return
    text = frame.replace("{E}", end).replace("{A}", answer)
    for key, value in agree.items():
        text = text.replace(key, value)
    slots = {"{T}": [b for b, _ in bank.take], "{Tp}": [p for _, p in bank.take], "{L}": [b for b, _ in bank.lack],
             "{Lp}": [p for _, p in bank.lack], "{R}": [b for b, _ in bank.rise], "{Rp}": [p for _, p in bank.rise],
             "{S}": [b for b, _ in bank.sink], "{Sp}": [p for _, p in bank.sink], "{P}": list(bank.praise),
             "{I}": list(bank.insults)}
    slot = next((k for k in slots if k in text), None)
    if slot is None:
        yield tuple(text.split())
        return
    for word in dict.fromkeys(slots[slot]):
        if word != end and word != answer:
            yield tuple(text.replace(slot, word).split())


def _count(phrase: Phrase) -> int:
    return sum(max(1, syllables(w)) for w in phrase)


def _by_count(phrases: Sequence[tuple[Phrase, str]]) -> dict[int, list[tuple[Phrase, str]]]:
    out: dict[int, list[tuple[Phrase, str]]] = {}
    for item in phrases:
        out.setdefault(_count(item[0]), []).append(item)
    return out


def is_noun(word: str, heard: Sequence[str], bank: WordBank) -> bool:
    """Whether an opponent word reads as a noun: the bank says so, or they said it after a determiner, or the bank
    knows it as nothing else."""
    tags = bank.tags(word)
    if {"thing", "idea", "joke", "noun"} & set(tags):
        return True
    lines = [ln.lower().split() for ln in heard]
    if any(w == word and i and ln[i - 1] in DETERMINERS for ln in lines for i, w in enumerate(ln)):
        return True
    return not bank.known(word) and not word.endswith(("ed", "ing", "ly"))


def end_candidates(target: Sequence[str], taken: set[str], bank: WordBank) -> list[tuple[str, bool, bool]]:
    """Words to end on, best first, as (word, perfect rhyme, from the bank): perfect rhymes from the bank, then from
    the common words (most common first); then slant rhymes the same way. Empty when nothing rhymes."""
    if not target:
        return []
    # groups: bank words, then common words whose part of speech the spelling shows (-ed, -ing), then the other
    # common words (read as nouns: a guess that can go wrong, so they come last); perfect rhymes before slant
    # (the same test as rhymes(): the same vowels, and the same rhyme key or final consonant class)
    groups: list[list[tuple[str, bool, bool]]] = [[] for _ in range(6)]
    pron = pronounce(target[-1])
    key, last = rhyme_key(pron), target[-1].lower()
    for w, w_key, w_coda in bank.sounds.get(vowel_key(pron), []) if key else []:
        perfect = w_key == key
        if w in taken or w == last or not (perfect or w_coda == coda_class(key)):
            continue
        in_bank = bank.known(w)
        rank = 0 if in_bank else 2 if bank.tags(w) in (("past",), ("gerund",)) else 4
        groups[rank + (not perfect)].append((w, perfect, in_bank))
    return [item for group in groups for item in group]


@dataclass(frozen=True)
class _Pieces:
    """The phrases one line is built from, each indexed by its syllable count."""

    openers: dict[int, list[tuple[Phrase, str]]]  # end on the answer word
    answer_ends: dict[int, list[tuple[Phrase, str]]]  # the answer word as subject, ending on a rhyme word
    clauses: dict[int, list[tuple[Phrase, str]]]  # ending on a rhyme word
    conjunctions: dict[int, list[tuple[Phrase, str]]]
    joins: dict[int, list[tuple[Phrase, str]]]  # conjunctions that are words: between the second and third clause


def _pieces(bank: WordBank, ends: Sequence[str], answer: str, noun: bool, callback: bool) -> _Pieces:
    openers = [f for f in (NOUN_OPENERS if noun else WORD_OPENERS)]
    if callback:
        openers = [*CALLBACK_OPENERS, *openers] if noun else ["remember when you said {A}"]
    opener_phrases = [(p, "") for f in openers for p in _expand(f, bank, "", answer)]
    answer_ends = [(p, e) for e in ends for tag in bank.tags(e) if noun
                   for f in ANSWER_CLAUSES.get(tag, ()) for p in _expand(f, bank, e, answer)]
    clauses = [(p, e) for e in ends for tag in bank.tags(e) for f in CLAUSES[tag] for p in _expand(f, bank, e, "")]
    return _Pieces(_by_count(opener_phrases), _by_count(answer_ends), _by_count(clauses),
                   _by_count([(c, "") for c in CONJUNCTIONS]), _by_count([(c, "") for c in CONJUNCTIONS if c]))


def _shapes(pieces: _Pieces) -> list[tuple[dict[int, list[tuple[Phrase, str]]], ...]]:
    """The line forms, as the sequence of piece tables each is built from."""
    p = pieces
    return [
        (p.answer_ends,),
        (p.openers, p.conjunctions, p.clauses),
        (p.answer_ends, p.conjunctions, p.clauses),
        (p.openers, p.conjunctions, p.clauses, p.joins, p.clauses),
        (p.answer_ends, p.conjunctions, p.clauses, p.joins, p.clauses),
    ]


def _splits(tables: Sequence[dict[int, list]], budget: int) -> list[tuple[int, ...]]:
    """Syllable counts per piece that sum to `budget` exactly."""
    if not tables:
        return [()] if budget == 0 else []
    return [(n, *rest) for n in tables[0] if n <= budget for rest in _splits(tables[1:], budget - n)]


def _sample(pieces: _Pieces, budget: int, rng: random.Random, count: int) -> list[tuple[Phrase, tuple[str, ...]]]:
    """Up to `count` lines of exactly `budget` syllables (or, where none can, the nearest budget), each as its
    words and the rhyme words its clauses end on (the last is the end rhyme)."""
    options: list[tuple[tuple[dict[int, list[tuple[Phrase, str]]], ...], tuple[int, ...]]] = []
    for miss in range(MAX_MISS + 1):
        options = [(tables, split) for tables in _shapes(pieces)
                   for target in dict.fromkeys((budget - miss, budget + miss)) if target > 0
                   for split in _splits(tables, target)]
        if options:
            break
    out = []
    for _ in range(count):
        tables, split = options[rng.randrange(len(options))]
        chosen = [tables[i][n][rng.randrange(len(tables[i][n]))] for i, n in enumerate(split)]
        words = tuple(w for phrase, _ in chosen for w in phrase)
        out.append((words, tuple(e for _, e in chosen if e)))
    return out


def _pick_ends(ranked: list[tuple[str, bool, bool]], rng: random.Random) -> list[tuple[str, bool, bool]]:
    """Up to END_WORDS end words, the best kinds first (bank before common, perfect before slant), drawn at random
    within a kind so the seed varies the verse."""
    kinds: dict[tuple[bool, bool], list[tuple[str, bool, bool]]] = {}
    for item in ranked:
        kinds.setdefault((item[2], item[1]), []).append(item)
    out: list[tuple[str, bool, bool]] = []
    for group in kinds.values():
        out += rng.sample(group, min(END_WORDS - len(out), len(group)))
    return out


class LexiconFiller:
    """Fills lines from phrase frames and a tagged word bank, on the syllable budget and the planned rhyme, choosing
    the line that adds most to the verse's rhyme density."""

    name = "lexicon"

    def __init__(self, bank: WordBank | None = None) -> None:
        self.bank = bank if bank is not None else load_bank()

    def fill_line(self, line: LinePlan, context: FillContext) -> FilledLine:
        """Words for one line: the budget met exactly where the frames allow, ending on a rhyme word."""
        rng = random.Random(f"{context.seed}:{line.bar}:{line.rhyme_words}")
        bank = self.bank
        taken = {w.lower() for prev in context.previous for w in prev.words[-1:]} | set(line.rhyme_words)
        taken |= {toks[-1] for toks in map(tokenize, context.opponent_lines) if toks}  # flip their rhyme, not echo it
        ranked = end_candidates(list(line.rhyme_words[:1]), taken, bank)
        if not ranked:  # nothing rhymes: any bank noun, and the line says what it can
            nouns = [w for w in bank.things if w not in taken]
            ranked = [(w, False, True) for w in rng.sample(nouns, min(END_WORDS, len(nouns)))]
        ends = _pick_ends(ranked, rng)
        quality = {w: PERFECT_BONUS * perfect + BANK_BONUS * in_bank for w, perfect, in_bank in ends}
        answer = line.answer_words[0] if line.answer_words else "mic"
        heard = context.opponent_lines
        pieces = _pieces(bank, [w for w, _, _ in ends], answer, is_noun(answer, heard, bank), bool(line.callback))
        said = [w.lower() for prev in context.previous for w in prev.words]
        said_pairs = set(zip(said, said[1:]))
        said_words = {w for w in said if w not in FUNCTION_WORDS}
        base = rhyme_density(said) * len(said)
        scorer = DensityScorer(said)
        used = context.used_lines | {p.text for p in context.previous}
        best: tuple[float, Phrase] | None = None
        for words, rhymed in _sample(pieces, line.budget, rng, CANDIDATES):
            text = " ".join(words)
            content = [w.lower() for w in words if w.lower() not in FUNCTION_WORDS]
            if text in used or len(set(rhymed)) < len(rhymed) or len(set(content)) < len(content):
                continue
            lower = [w.lower() for w in words]
            gain = scorer.gain(lower)
            repeats = sum(1 for pair in zip(lower, lower[1:]) if pair in said_pairs)
            reused = sum(1 for w in content if w in said_words and w != answer)
            score = ((base + gain) / (len(said) + len(words)) + quality[rhymed[-1]] - REPEAT_PENALTY * repeats - REUSE_PENALTY * reused
                     - abs(_count(words) - line.budget) + JITTER * rng.random())
            if best is None or score > best[0]:
                best = (score, words)
        if best is None:  # every sampled line was said before (a tiny budget, a long battle): the first one again
            found = _sample(pieces, line.budget, rng, 1)
            if not found:
                raise PlanError(f"the lexicon has no line within {MAX_MISS} syllables of a budget of {line.budget}")
            best = (0.0, found[0][0])
        words = best[1]
        return FilledLine(line, words, tuple(max(1, syllables(w)) for w in words))
