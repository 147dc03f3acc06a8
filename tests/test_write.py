"""Phonetics, rhyme, grids, the planner and the lexicon filler: pure, with the real pronouncing dictionary."""

import pytest

from engine.errors import PlanError
from engine.presets import load_style
from engine.write.fill_lexicon import LexiconFiller
from engine.write.grid import BarGrid, Slot, parse_pattern
from engine.write.phonetics import guess, in_dictionary, pronounce, stresses, syllables, vowels
from engine.write.plan import FillContext
from engine.write.planner import assign_slots, content_words, plan_line, plan_verse
from engine.write.rhyme import coda_class, multisyllabic_match, perfect_rhyme, rhyme_density, rhymes, slant_rhyme

OPPONENT = [
    "You came to the cypher with a borrowed rhyme",
    "your flow is stuck in a different time",
    "I run this city from the block to the stage",
    "you read your verses off a crumpled page",
]


def test_syllables_from_the_dictionary_and_the_fallback():
    assert syllables("city") == 2
    assert syllables("different") in (2, 3)
    assert not in_dictionary("skrrrrtzy")
    assert syllables("skrrrrtzy") >= 1  # unknown words still get vowels
    assert pronounce("mic") == ("M", "AY1", "K")  # the rap override, not the dictionary's "mick"
    assert stresses("hammer") == (1, 0)


def test_rhymes_perfect_slant_and_multisyllabic():
    assert perfect_rhyme(["time"], ["rhyme"])
    assert not perfect_rhyme(["time"], ["time"])  # the same word is no rhyme
    assert slant_rhyme(["time"], ["line"])
    assert not rhymes(["me"], ["seat"])  # an open syllable does not rhyme with every closed one
    assert not rhymes(["stage"], ["city"])
    assert multisyllabic_match(["laptop"], ["crack", "pot"]) == 2


def test_rhyme_density_counts_shared_vowel_runs():
    plain = "the cat sat down on a warm mat today".split()
    dense = "time rhyme mind line sign grind shine climb".split()
    assert rhyme_density(dense) > 0.9
    assert rhyme_density(dense) > rhyme_density(plain)
    assert rhyme_density([]) == 0.0


def test_grid_parses_slots_stresses_and_rhyme():
    slots = parse_pattern("x.xX..R.")
    assert [s.index for s in slots] == [0, 2, 3, 6]
    assert [s.stressed for s in slots] == [False, False, True, True]
    assert slots[-1].rhyme


def test_assign_slots_keeps_the_rhyme_slot():
    grid = BarGrid(0, 16, parse_pattern("x.xxX.xxX.xxR..."))
    for n in (4, grid.budget, grid.budget + 2):
        slots = assign_slots(grid, n)
        assert len(slots) == n
        assert slots[-1] == Slot(12, True, True)
        assert [s.index for s in slots] == sorted({s.index for s in slots})
    with pytest.raises(PlanError):
        assign_slots(grid, 40)


def test_content_words_prefer_nouns():
    words = "you read your verses off a crumpled page".split()
    found = content_words(words)
    assert found[0] == "verses"
    assert "your" not in found and "off" not in found


def test_plan_flips_the_opponents_rhymes_and_takes_up_their_words():
    style = load_style("boom_bap")
    plan = plan_verse(style, 4, OPPONENT)
    assert [line.rhyme_label for line in plan.lines] == ["A0", "A0", "B0", "B0"]
    assert plan.lines[0].rhyme_words[0] == "rhyme"
    assert "stage" in plan.lines[2].rhyme_words
    assert "cypher" in plan.lines[0].answer_words
    assert "city" in plan.lines[2].answer_words
    with pytest.raises(PlanError):
        plan_verse(style, 0, OPPONENT)


def test_lexicon_filler_fits_budget_and_rhyme_chain():
    style = load_style("boom_bap")
    filler = LexiconFiller()
    ctx = FillContext(tuple(OPPONENT))
    for bar in range(4):
        plan = plan_line(style, bar, OPPONENT[: bar + 1], ctx.previous)
        line = filler.fill_line(plan, ctx)
        ctx.previous.append(line)
        assert abs(line.syllable_count - plan.budget) <= 1
        assert rhymes([line.words[-1]], plan.rhyme_words[:1])
        assert plan.answer_words[0] in line.words
    # the second line of each couplet rhymes with what the first line actually ended on
    assert rhymes([ctx.previous[1].words[-1]], [ctx.previous[0].words[-1]])
    assert len({line.text for line in ctx.previous}) == 4


def test_lexicon_filler_never_repeats_a_used_line():
    style = load_style("boom_bap")
    plan = plan_line(style, 0, OPPONENT[:1])
    first = LexiconFiller().fill_line(plan, FillContext(tuple(OPPONENT)))
    again = LexiconFiller().fill_line(plan, FillContext(tuple(OPPONENT), used_lines={first.text}))
    assert again.text != first.text


def test_slant_rhyme_needs_the_vowels_and_a_final_consonant_of_the_same_class():
    assert slant_rhyme(["luck"], ["just"])  # stop / stop
    assert slant_rhyme(["time"], ["line"])  # nasal / nasal
    assert slant_rhyme(["less"], ["chess"])  # same coda: perfect, and slant too
    assert slant_rhyme(["me"], ["tree"])  # open / open
    assert not rhymes(["rule"], ["moved"])  # liquid / stop
    assert not rhymes(["there"], ["less"])  # liquid / fricative
    assert not rhymes(["cat"], ["can"])  # stop / nasal
    assert not rhymes(["fade"], ["day"])  # closed / open
    assert not rhymes(["tree"], ["tree"])
    assert [coda_class(k) for k in (("IY",), ("AY", "M"), ("AH", "K"), ("EH", "S"), ("UW", "L"))] == [
        "open", "nasal", "stop", "fricative", "liquid"]


def test_multi_word_rhymes_share_vowels_across_word_boundaries():
    assert multisyllabic_match(["borrowed", "rhyme"], ["follow", "time"]) == 3
    assert rhymes(["crack", "pot"], ["laptop"])
    assert rhyme_density("a borrowed rhyme and a hollow time".split()) > rhyme_density(
        "a borrowed rhyme and a little time".split())


def test_slang_and_names_get_syllables_stress_and_vowels():
    assert not in_dictionary("drippin") and not in_dictionary("yeet")
    assert syllables("drippin") == 2 and stresses("drippin") == (1, 0)
    assert vowels("drippin") == ("IH", "IH")
    assert vowels("yeet") == ("IY",)
    assert syllables("saturn") == 2 and stresses("saturn") == (1, 0)
    assert pronounce("skrrt") == ("S", "K", "ER1", "T")  # the override wins over any guess
    assert sum(1 for p in guess("skrrt") if p[-1] in "012") == 1  # the model's own guess: one syllable too
    assert rhymes(["drippin"], ["slippin"])


def test_guesses_always_carry_a_stressed_vowel():
    for word in ("zzzz", "brrr", "lituation", "b" * 70, "opp"):
        phones = guess(word)
        assert any(p[-1] in "12" for p in phones if p[:2] in {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER",
                                                              "EY", "IH", "IY", "OW", "OY", "UH", "UW"}), phones
        assert syllables(word) >= 1
