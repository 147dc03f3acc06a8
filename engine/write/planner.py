"""The planner (pure): from what the opponent said and the style, a `VersePlan` — per bar the syllable slots,
the rhyme chain and which of the opponent's words to take up — before a single word is written."""

from __future__ import annotations

from collections.abc import Sequence

from engine.errors import PlanError
from engine.presets import Style
from engine.write.grid import BarGrid, Slot, flow_grid
from engine.write.phonetics import in_dictionary, syllables, tokenize
from engine.write.plan import FilledLine, LinePlan, VersePlan
from engine.write.rhyme import word_rhyme_key

MAX_BARS = 32
MIN_TURN_BARS = 2  # a line is written once the opponent's bar in the same place is heard: one bar behind

STOPWORDS = frozenset(
    """a an the and or but so if of to in on at by for with from up down out off over into onto about as is am are
    was were be been being do does did done have has had i me my mine you your yours he him his she her it its we us
    our they them their this that these those there here what who whom which when where why how all any some no not
    never ever just like got get gets go goes going gone come came take took make made say said tell told know knew
    can could will would shall should may might must than then too very now one ones every each yeah yo uh oh""".split()
)

DETERMINERS = frozenset("a an the my your his her our their this that every".split())


def content_words(words: Sequence[str]) -> list[str]:
    """Words worth answering: not function words, known to the dictionary, at least three letters.

    Likely nouns (after a determiner) come first, then the rest, each group in the order heard.
    """
    seen: set[str] = set()
    nouns: list[str] = []
    others: list[str] = []
    for i, w in enumerate(words):
        lw = w.lower()
        if lw in STOPWORDS or len(lw) < 3 or lw in seen or not in_dictionary(lw):
            continue
        seen.add(lw)
        (nouns if i and words[i - 1].lower() in DETERMINERS else others).append(lw)
    return nouns + others


def end_words(lines: Sequence[str]) -> list[str]:
    """The last word of every non-empty line."""
    return [toks[-1] for toks in (tokenize(line) for line in lines) if toks]


def _anchor_for(bar: int, heard_lines: Sequence[str]) -> tuple[str, ...]:
    """The opponent's end word to flip for a bar: the end of the line heard in the same place (or the latest
    one), with the other heard end words that rhyme with it perfectly."""
    ends = end_words(heard_lines)
    if not ends:
        return DEFAULT_ANCHORS[bar % len(DEFAULT_ANCHORS)]
    word = ends[min(bar, len(ends) - 1)]
    key = word_rhyme_key(word)
    mates = [w for w in ends if w != word and key and word_rhyme_key(w) == key]
    return (word, *dict.fromkeys(mates))


CALLBACK_EVERY = 4  # the last line of every four calls back to an earlier round
DEFAULT_ANCHORS = (("time", "rhyme"), ("stage", "page"), ("night", "light"), ("game", "name"))


def plan_line(
    style: Style,
    bar: int,
    heard_lines: Sequence[str],
    written: Sequence[FilledLine] = (),
    earlier_answers: Sequence[str] = (),
    earlier_heard: Sequence[str] = (),
    answer_count: int = 2,
) -> LinePlan:
    """Plan bar `bar` of an answer from the opponent's lines heard so far and our lines already written.

    The rhyme chain follows the style's scheme: the first line of a rhyme group flips the end word of the
    opponent's line in the same place; later lines of the group rhyme with what we actually wrote. Answer words
    (`answer_count` of them) come from the opponent's line in the same place (likely nouns first), not yet taken
    up by an earlier line. The last line of every four takes up a word of an earlier round (`earlier_heard`, the
    opponent's lines of the rounds before, latest first) when there is one: a callback.
    """
    if answer_count < 1:
        raise PlanError(f"answer_count must be at least 1, got {answer_count}")
    if not 0 <= bar < MAX_BARS:
        raise PlanError(f"bar must be between 0 and {MAX_BARS - 1}, got {bar}")
    scheme = style.rhyme_scheme
    period, pos = divmod(bar, len(scheme))
    label = f"{scheme[pos]}{period}"
    group = [w for w in written if w.plan.rhyme_label == label and w.words]
    if group:
        rhyme_words: tuple[str, ...] = (group[0].words[-1], *group[0].plan.rhyme_words)
    else:
        rhyme_words = _anchor_for(bar, heard_lines)
    taken = {w for line in written for w in line.plan.answer_words}
    taken |= {w for line in earlier_answers for w in tokenize(line)}
    same_place = heard_lines[min(bar, len(heard_lines) - 1)] if heard_lines else ""
    pool = [w for w in content_words(tokenize(same_place)) if w not in taken]
    if not pool:
        pool = [w for w in content_words([t for line in heard_lines for t in tokenize(line)]) if w not in taken]
    grid = flow_grid(style.flow, bar + 1)[bar]
    answer = tuple(pool[:answer_count])
    callback = ""
    if bar % CALLBACK_EVERY == CALLBACK_EVERY - 1 and earlier_heard:
        now = set(content_words([t for line in heard_lines for t in tokenize(line)]))
        earlier = [w for w in content_words([t for line in earlier_heard for t in tokenize(line)])
                   if w not in taken and w not in now]
        if earlier:
            callback = earlier[0]
            answer = (callback, *answer[: answer_count - 1])
    return LinePlan(bar, grid, label, tuple(dict.fromkeys(rhyme_words)), answer, callback)


def plan_verse(
    style: Style,
    bars: int,
    opponent_lines: Sequence[str],
    earlier_answers: Sequence[str] = (),
) -> VersePlan:
    """Plan `bars` bars answering the whole of `opponent_lines` at once (one string per heard bar or line)."""
    if not 1 <= bars <= MAX_BARS:
        raise PlanError(f"bars must be between 1 and {MAX_BARS}, got {bars}")
    heard = [w for line in opponent_lines for w in tokenize(line)]
    lines = tuple(plan_line(style, bar, opponent_lines, (), earlier_answers) for bar in range(bars))
    return VersePlan(style.name, lines, tuple(opponent_lines), tuple(content_words(heard)))


def assign_slots(grid: BarGrid, syllable_count: int) -> tuple[Slot, ...]:
    """Put `syllable_count` syllables on a bar's grid, the last one on the rhyme slot.

    Fewer syllables than planned drop unstressed slots first; more fill the rests between slots (never after the
    rhyme), so the end rhyme keeps its place whatever the filler wrote.
    """
    if syllable_count <= 0:
        return ()
    planned = list(grid.slots)
    rhyme = planned[-1]
    body = planned[:-1]
    need = syllable_count - 1
    while len(body) > need:
        unstressed = [i for i, s in enumerate(body) if not s.stressed]
        body.pop(unstressed[-1] if unstressed else -1)
    if len(body) < need:
        used = {s.index for s in body}
        free = [i for i in range(rhyme.index) if i not in used]
        # Prefer rests that sit right after a sung slot, so added syllables run on rather than jump.
        free.sort(key=lambda i: (i - 1 not in used, -i))
        for i in free[: need - len(body)]:
            body.append(Slot(i, False, False))
        body.sort(key=lambda s: s.index)
        if len(body) < need:
            raise PlanError(f"{syllable_count} syllables do not fit in one bar of {grid.slots_per_bar} slots")
    return (*body, rhyme)


def syllables_per_word(words: Sequence[str]) -> tuple[int, ...]:
    """Syllable count per word, at least one each."""
    return tuple(max(1, syllables(w)) for w in words)


def spoken_line(plan: LinePlan, words: Sequence[str], allow_unfit: bool = False) -> FilledLine:
    """A filler's words as a line on the plan's grid: the spoken words only (punctuation-only tokens dropped), their
    syllables and the slots they land on. PlanError when they do not fit the grid, or, with `allow_unfit`, a line
    without slots."""
    spoken = tuple(w for w in words if tokenize(w))
    counts = syllables_per_word(spoken)
    try:
        slots = assign_slots(plan.grid, sum(counts))
    except PlanError:
        if not allow_unfit:
            raise
        slots = ()
    return FilledLine(plan, spoken, counts, slots)
