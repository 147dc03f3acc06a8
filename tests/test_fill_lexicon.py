"""The lexicon filler: frames that agree with their end word, common fallback rhymes, rhyme density, the budget.

Real pronouncing dictionary, real word bank (presets/words), real planner; no fakes."""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import pytest

from engine.errors import PresetError
from engine.presets import load_style
from engine.write.fill_lexicon import (
    ANSWER_CLAUSES,
    BANK_PATH,
    CLAUSES,
    LexiconFiller,
    _expand,
    end_candidates,
    load_bank,
)
from engine.write.plan import FillContext, FilledLine
from engine.write.planner import plan_line
from engine.write.rhyme import DensityScorer, density_gain, perfect_rhyme, rhyme_density, rhymes

VERSES = Path(__file__).resolve().parent.parent / "presets" / "examples" / "verses"


def verse(name: str) -> list[str]:
    return [ln.strip() for ln in (VERSES / name).read_text().splitlines() if ln.strip()]


def answer(style_name: str, opponent: list[str], seed: int = 0, bars: int = 8) -> list[FilledLine]:
    """Bar by bar, as the live writer and the benchmark do: each bar planned from what was heard so far."""
    style = load_style(style_name)
    filler = LexiconFiller()
    ctx = FillContext(opponent_lines=(), seed=seed)
    for bar in range(bars):
        ctx.opponent_lines = tuple(opponent[: bar + 1])
        plan = plan_line(style, bar, ctx.opponent_lines, ctx.previous)
        ctx.previous.append(filler.fill_line(plan, ctx))
    return ctx.previous


def test_density_scorer_adds_up_to_rhyme_density():
    words = " ".join(verse("01_chess.txt") + verse("19_drip.txt")).lower().split()
    rng = random.Random(3)
    for _ in range(300):
        n, k = rng.randrange(0, 50), rng.randrange(1, 14)
        seq = [rng.choice(words) for _ in range(n + k)]
        history, new = seq[:n], seq[n:]
        assert rhyme_density(seq) * len(seq) == pytest.approx(rhyme_density(history) * n + density_gain(history, new))
    scorer = DensityScorer(["I", "hold", "the", "crown"])
    assert scorer.gain(["you", "fold", "the", "gown"]) > scorer.gain(["you", "lost", "a", "shoe"])


@pytest.mark.parametrize(("name", "style"), [("01_chess.txt", "boom_bap"), ("19_drip.txt", "trap"),
                                             ("06_boxing.txt", "grime"), ("13_detective.txt", "drill")])
def test_every_line_ends_on_a_frame_that_agrees_with_its_end_word(name, style):
    """The words before the end word are one of the frames for that word's part of speech: never "you never dime"
    (a noun where a verb belongs) or "watch me proved"."""
    bank = load_bank()
    for line in answer(style, verse(name)):
        end = line.words[-1]
        frames = [f for tag in bank.tags(end) for f in (*CLAUSES[tag], *ANSWER_CLAUSES.get(tag, ()))]
        answers = [*line.plan.answer_words, "mic"]
        endings = {p for f in frames for a in answers for p in _expand(f, bank, end, a)}
        assert any(line.words[-len(p):] == p for p in endings), (line.text, bank.tags(end))


def test_budget_rhyme_and_reference_hold_on_every_shipped_verse_and_density_rises():
    densities = []
    exact = 0
    for path in sorted(VERSES.glob("*.txt"))[:6]:
        lines = answer("boom_bap", verse(path.name))
        for line in lines:
            assert abs(line.syllable_count - line.plan.budget) <= 1, line.text
            exact += line.syllable_count == line.plan.budget
            assert rhymes([line.words[-1]], line.plan.rhyme_words[:1]), (line.text, line.plan.rhyme_words)
            assert line.plan.answer_words[0] in line.words
        assert len({line.text for line in lines}) == len(lines)
        densities.append(rhyme_density([w.lower() for line in lines for w in line.words]))
    assert exact >= 0.9 * 6 * 8  # exact where the frames allow: a long answer word can leave no exact sum
    # the template filler before this one measured 0.71 on the benchmark's verses
    assert statistics.fmean(densities) >= 1.0, densities


def test_lines_carry_internal_rhymes():
    """Longer lines end a first or middle clause on another word of the planned rhyme."""
    lines = answer("chopper", verse("01_chess.txt"), bars=4)
    inner = 0
    for line in lines:
        target = line.words[-1]
        inner += any(w != target and rhymes([w], [target]) for w in line.words[:-1])
    assert inner >= 3, [line.text for line in lines]


def test_end_words_come_from_the_bank_first_then_common_words():
    bank = load_bank()
    moved = end_candidates(["moved"], set(), bank)
    assert moved[0][1:] == (True, True) and perfect_rhyme([moved[0][0]], ["moved"])  # a perfect bank rhyme first
    # "cologne": nothing in the bank ends in -ogne, but the bank has perfect rhymes (throne, stone, phone)
    assert {w for w, perfect, _ in end_candidates(["cologne"], set(), bank) if perfect} >= {"throne", "stone"}
    # "masterpieces": the bank has no perfect rhyme (a slant one, "beaches"); the most common words that rhyme
    # perfectly are the next choice, in frequency order
    found = end_candidates(["masterpieces"], set(), bank)
    assert found[0] == ("beaches", False, True)
    assert [x for x in found if x[1]][0][1:] == (True, False)
    common = [w for w, perfect, in_bank in found if not in_bank and perfect]
    assert common and common == sorted(common, key=bank.common.index)
    assert end_candidates(["poison"], set(), bank) == []
    assert all(w != "moved" for w, _, _ in moved)
    assert "improved" not in [w for w, _, _ in end_candidates(["moved"], {"improved"}, bank)]


def test_seeded_and_never_repeating():
    opponent = verse("03_ocean.txt")
    first = [line.text for line in answer("boom_bap", opponent, seed=1, bars=4)]
    assert first == [line.text for line in answer("boom_bap", opponent, seed=1, bars=4)]
    assert first != [line.text for line in answer("boom_bap", opponent, seed=2, bars=4)]
    style = load_style("boom_bap")
    plan = plan_line(style, 0, opponent[:1])
    used: set[str] = set()
    for _ in range(6):
        line = LexiconFiller().fill_line(plan, FillContext(tuple(opponent[:1]), used_lines=set(used)))
        assert line.text not in used and line.syllable_count == plan.budget
        used.add(line.text)


def test_a_line_is_written_fast_enough_to_stand_in_for_the_model():
    opponent = verse("02_kitchen.txt")
    answer("boom_bap", opponent, bars=1)  # the word bank loads once
    took = []
    for seed in range(3):
        start = time.perf_counter()
        answer("boom_bap", opponent, seed=seed, bars=4)
        took.append((time.perf_counter() - start) / 4)
    assert statistics.median(took) < 0.25, took


@pytest.mark.parametrize(("text", "message"), [
    ("schema = 2\n", "schema must be 1"),
    ("schema = 1\nthings = 'crown'\n", "must be non-empty strings"),
    ("schema = [\n", "cannot be read"),
])
def test_a_broken_word_bank_is_one_clear_error(tmp_path, text, message):
    bank = tmp_path / "bank.toml"
    bank.write_text(text)
    (tmp_path / "common.txt").write_text("time\n")
    with pytest.raises(PresetError, match=message):
        load_bank(bank, tmp_path / "common.txt")


def test_a_verb_without_its_past_is_named(tmp_path):
    good = BANK_PATH.read_text()
    bank = tmp_path / "bank.toml"
    bank.write_text(good.replace("hold:held", "hold"))
    (tmp_path / "common.txt").write_text("time\n")
    with pytest.raises(PresetError, match="take entry 'hold' must be base:past"):
        load_bank(bank, tmp_path / "common.txt")
    with pytest.raises(PresetError, match="restore presets/words"):
        load_bank(tmp_path / "missing.toml", tmp_path / "common.txt")
