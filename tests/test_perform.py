"""The knobs shape the next verse (density, energy, aggression, wet) and the battle remembers earlier rounds.

Real planner, lexicon filler, Piper voice, pedalboard effects and aubio pitch; no fakes."""

import math

import numpy as np
import pytest

from conftest import median_f0

from engine.line import LineJob, LineWriter, VoiceCache
from engine.perform import Knobs, KnobError, shape_pattern, shape_style
from engine.presets import available_styles, load_style
from engine.voice.fx import apply_chain, build_chain
from engine.write.fill_lexicon import LexiconFiller
from engine.write.grid import parse_pattern
from engine.write.memory import BattleMemory
from engine.write.phonetics import tokenize
from engine.write.planner import plan_line

RATE = 48000
ROUND_1 = ["you came to the cypher with a borrowed rhyme", "your flow is stuck in a different time",
           "i run this city and i run it on time", "your verses are little like a dollar and a dime"]
ROUND_2 = ["the crown on my head is heavy as stone", "you sit in the back on a borrowed phone",
           "my name on the wall and it's carved in chrome", "go back to the bench and rap alone"]


def test_the_defaults_play_the_preset_as_written() -> None:
    style = load_style("boom_bap")
    assert shape_style(style, Knobs()) is style
    assert Knobs.of({"energy": 0.5, "aggression": 0.5, "density": 0.5, "wet": 1.0, "temperature": 0.8}) == Knobs()
    with pytest.raises(KnobError, match="density must be within 0..1"):
        Knobs(density=1.5)


@pytest.mark.parametrize("name", available_styles())
def test_density_empties_and_fills_slots_keeping_stresses_and_the_end_rhyme(name: str) -> None:
    style = load_style(name)
    sparse, dense = (shape_style(style, Knobs(density=d)) for d in (0.0, 1.0))
    assert sparse.syllables_per_bar < style.syllables_per_bar
    if any("." in p[: p.rfind("R")] for p in style.flow.patterns):  # rests between syllables to fill
        assert dense.syllables_per_bar > style.syllables_per_bar
    for shaped in (sparse, dense):
        for old, new in zip(style.flow.patterns, shaped.flow.patterns):
            assert len(new) == len(old)
            kept = {s.index: s for s in parse_pattern(new)}
            for slot in parse_pattern(old):
                if slot.stressed:
                    assert kept[slot.index] == slot  # stresses and the end rhyme stay where they were
            assert new[old.rfind("R") + 1:] == old[old.rfind("R") + 1:]  # the breath after the rhyme stays


def test_sparse_density_empties_the_weakest_positions_first() -> None:
    # sixteenths: a quarter of the way down empties a quarter of the 10 syllables (rounded: 3), off-sixteenths
    # (odd steps) before eighths, the latest first; filling takes the strongest rests first, the earliest first
    assert shape_pattern("xxxxXxxxXxxxR...", 16, 0.25) == "xxxxXxx.X.x.R..."
    assert shape_pattern("xxxxXxxxXxxxR...", 16, 0.0) == "xxx.X.x.X.x.R..."  # at 0: half of them
    assert shape_pattern("x...X...X...R...", 16, 1.0) == "xxxxX.x.X.x.R..."  # half-beats first
    assert shape_pattern("x.x.X.x.X.x.R...", 16, 1.0) == "xxxxXxx.X.x.R..."


def test_the_lexicon_fills_the_shaped_budget() -> None:
    style = load_style("boom_bap")
    counts = {}
    for density in (0.0, 0.5, 1.0):
        shaped = shape_style(style, Knobs(density=density))
        writer = LineWriter(LexiconFiller(), VoiceCache(RATE))
        plans = [plan_line(shaped, bar, ROUND_1) for bar in range(4)]
        ctx = writer.context(LineJob(0, 0, shaped, tuple(ROUND_1), 90.0, math.nan))
        lines = [writer.filler.fill_line(plan, ctx) for plan in plans]
        for plan, line in zip(plans, lines):
            assert abs(line.syllable_count - plan.budget) <= 1
        counts[density] = sum(line.syllable_count for line in lines)
    assert counts[0.0] < counts[0.5] < counts[1.0]


def test_aggression_takes_up_more_of_the_opponents_words() -> None:
    style = load_style("boom_bap")
    for aggression, count in ((0.0, 1), (0.5, 2), (1.0, 3)):
        assert Knobs(aggression=aggression).answer_words == count
        plan = plan_line(style, 0, ROUND_1, answer_count=Knobs(aggression=aggression).answer_words)
        assert len(plan.answer_words) == count
        assert set(plan.answer_words) <= set(tokenize(ROUND_1[0]))


def test_aggression_drives_the_saturation_harder() -> None:
    style = load_style("boom_bap")
    t = np.arange(RATE // 2) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)

    def harmonics_share(aggression: float) -> float:
        shaped = shape_style(style, Knobs(aggression=aggression, wet=0.0))
        out = apply_chain(build_chain(shaped.fx, 90.0, RATE), tone, RATE)[RATE // 10:]
        spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
        fundamental = spectrum[int(220.0 * len(out) / RATE) - 3: int(220.0 * len(out) / RATE) + 4].sum()
        return float((spectrum.sum() - fundamental) / spectrum.sum())

    assert harmonics_share(1.0) > 1.5 * harmonics_share(0.0)


def test_wet_zero_leaves_no_delay_or_reverb_tail() -> None:
    style = load_style("boom_bap")
    click = np.zeros(RATE, dtype=np.float32)
    click[:480] = np.hanning(480).astype(np.float32)

    def tail_rms(wet: float) -> float:
        shaped = shape_style(style, Knobs(wet=wet))
        out = apply_chain(build_chain(shaped.fx, 90.0, RATE), click, RATE)
        return float(np.sqrt(np.mean(out[RATE // 10:] ** 2)))  # 100 ms on: only echoes and reverb

    assert tail_rms(0.0) < 0.05 * tail_rms(1.0)


@pytest.mark.models
def test_energy_lifts_the_voice() -> None:
    style = load_style("boom_bap")
    voices = VoiceCache(RATE)
    made = {energy: LineWriter(LexiconFiller(), voices).write(LineJob(0, 0, style, (ROUND_1[0],), 90.0, math.nan,
                                                                      knobs=Knobs(energy=energy, wet=0.0)))
            for energy in (0.0, 1.0)}
    assert made[0.0].line.words == made[1.0].line.words
    low, high = (median_f0(made[e].audio) for e in (0.0, 1.0))
    assert 2 ** (2.0 / 12) < high / low < 2 ** (4.0 / 12)  # 3 semitones apart (1.5 either side)


@pytest.mark.models
def test_a_battle_never_repeats_a_line_and_calls_back_to_an_earlier_round() -> None:
    style = load_style("boom_bap")
    writer = LineWriter(LexiconFiller(), VoiceCache(RATE))
    said: dict[int, list[str]] = {}
    plans = {}
    for turn, heard in ((0, ROUND_1), (1, ROUND_2), (2, ROUND_1)):  # round 3: the opponent says round 1 again
        for index in range(4):
            made = writer.write(LineJob(turn, index, style, tuple(heard[: index + 1]), 90.0, math.nan, seed=0))
            said.setdefault(turn, []).append(made.line.text)
            plans[turn, index] = made.line.plan
    every = [line for lines in said.values() for line in lines]
    assert len(set(every)) == len(every)  # same seed, same opponent lines: still never said twice
    assert plans[0, 3].callback == ""  # nothing earlier to call back to
    for turn in (1, 2):
        callback = plans[turn, 3].callback
        assert callback and callback in plans[turn, 3].answer_words
        earlier = {w for t in range(turn) for line in (ROUND_1, ROUND_2)[t % 2] for w in tokenize(line)}
        now = {w for line in (ROUND_1, ROUND_2)[turn % 2] for w in tokenize(line)}
        assert callback in earlier - now
    assert all(plans[t, i].callback == "" for t in range(3) for i in range(3))


def test_the_battle_memory_is_bounded() -> None:
    memory = BattleMemory(kept_lines=3, kept_rounds=2)
    for turn in range(5):
        memory.hear(turn, (f"line of round {turn}",))
        memory.say(f"our line {turn}")
    assert memory.said() == {"our line 2", "our line 3", "our line 4"}
    assert memory.heard_before(5) == ("line of round 4", "line of round 3")
    assert memory.heard_before(4) == ("line of round 3",)
