"""The lexicon filler: no model, only phrase templates, the pronouncing dictionary and a common-word list.

Each line is opener (taking up an opponent word) + link + lead-in + a rhyme word, chosen so the syllables sum to
the budget exactly. Plain, but always on the grid and on the rhyme: the fallback for machines without the model.
"""

from __future__ import annotations

import itertools
import random

import pronouncing

from engine.write.phonetics import syllables, tokenize
from engine.write.plan import FilledLine, FillContext, LinePlan
from engine.write.rhyme import perfect_rhyme, rhymes

OPENERS = (
    "you talk about {w}", "your {w} is weak", "I flip your {w}", "forget your {w}", "they heard your {w}",
    "you brought the {w}", "keep your {w}", "I took your {w}", "all that {w}", "you call it {w}",
)
LINKS = ("", "and", "but", "so", "while I", "and now", "but I", "yeah I")
LEADS = (
    "", "I own the", "I'm in my", "you lost the", "I run the", "I came to", "I never", "you never",
    "I'm on the", "you fell off the", "I broke the", "watch me", "I hold the",
)
COMMON_WORDS = tuple(
    """time rhyme mind line sign grind shine climb crime dime prime design behind
    stage page rage cage age gauge wage
    day way stay play pay say weigh fade away today display okay
    night light fight right sight flight tight bright mic write ice price nice
    steel deal real feel wheel heal reveal appeal
    game name fame flame same claim frame aim
    street beat heat seat feet meet sheet defeat complete
    crowd loud proud cloud allowed out doubt shout route about
    block clock lock shock rock stock knock talk walk
    flow show go know slow glow throw below
    crown down town sound ground round pound found
    pen ten again men when then
    gold cold told hold bold sold old
    king ring thing sing bring swing everything
    fire higher wire choir liar entire
    bars stars cars scars ours
    heart art start part smart apart
    war floor door more four score before
    deep sleep keep cheap street sweep
    win in begin skin spin within
    lost cost boss across toss
    fall wall all call hall small tall
    dream team scheme stream seem extreme
    run sun done one gun fun son none ton
    back track stack black attack
    up cup
    hit bit fit spit split
    top stop drop shop
    way
    city pity gritty
    man plan can hand stand land band
    less mess chess dress press bless
    trap map rap snap clap gap
    luck stuck truck duck
    moved proved improved
    free me tree see key degree
    gone dawn on upon
    holes goals souls rolls roles
    torn born worn horn morn
    bread head said dead instead red
    money honey funny
    """.split()
)


def _dictionary_rhymes(target: list[str], taken: set[str]) -> list[str]:
    """Short plain words the pronouncing dictionary rhymes with the target, for rhyme classes the word list lacks."""
    if not target:
        return []
    found = pronouncing.rhymes(target[0].lower())
    fit = [w for w in found if w.isalpha() and 2 < len(w) <= 7 and w not in taken and rhymes([w], target)]
    return sorted(fit, key=lambda w: (len(w), w))[:12]


class LexiconFiller:
    """Fills lines from templates and a word list, exactly on the syllable budget and the planned rhyme."""

    name = "lexicon"

    def fill_line(self, line: LinePlan, context: FillContext) -> FilledLine:
        """Words for one line: the budget met exactly where the templates allow, ending on a rhyme word."""
        rng = random.Random(f"{context.seed}:{line.bar}:{line.rhyme_words}")
        taken = {w for prev in context.previous for w in prev.words[-1:]}
        target = list(line.rhyme_words[:1])
        rhyme_pool = [w for w in COMMON_WORDS if w not in taken and w not in line.rhyme_words and rhymes([w], target)]
        perfect = [w for w in rhyme_pool if perfect_rhyme([w], target)]
        pool = perfect or rhyme_pool or _dictionary_rhymes(target, taken) or [w for w in COMMON_WORDS if w not in taken]
        ends = rng.sample(pool, min(4, len(pool)))
        answer = line.answer_words[0] if line.answer_words else "mic"
        best: tuple[int, list[str]] | None = None
        options = list(itertools.product(OPENERS, LINKS, LEADS, ends))
        rng.shuffle(options)
        for opener, link, lead, end in options:
            words = tokenize(" ".join((opener.format(w=answer), link, lead, end)))
            text = " ".join(words)
            if any(a == b for a, b in zip(words, words[1:])) or text in context.used_lines or any(text == p.text for p in context.previous):
                continue
            miss = abs(sum(syllables(w) for w in words) - line.budget)
            if best is None or miss < best[0]:
                best = (miss, words)
                if miss == 0:
                    break
        assert best is not None  # options is never empty: COMMON_WORDS is
        words = best[1]
        return FilledLine(line, tuple(words), tuple(max(1, syllables(w)) for w in words))
