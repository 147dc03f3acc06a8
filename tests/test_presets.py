"""Presets load, validate and fail with messages that name the file and the key."""

from pathlib import Path

import pytest

from engine.errors import PresetError
from engine.presets import PRESETS_DIR, available_styles, load_style, load_style_file

GOOD = (Path(__file__).resolve().parent.parent / "presets" / "boom_bap.toml").read_text()


def test_shipped_styles_load():
    assert "boom_bap" in available_styles()
    for name in available_styles():
        style = load_style(name)
        assert style.name == name
        assert style.tempo_range_bpm[0] <= style.tempo_bpm <= style.tempo_range_bpm[1]
        assert all(p.count("R") == 1 for p in style.flow.patterns)


def test_unknown_style_lists_the_shipped_ones():
    with pytest.raises(PresetError, match="unknown style 'nope'.*boom_bap"):
        load_style("nope")


def assert_broken(path, text: str, old: str, new: str, message: str) -> None:
    """`text` with `old` replaced by `new`, written to `path`, fails to load with `message` naming the file."""
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(PresetError, match=message) as info:
        load_style_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("tempo_bpm = 90", "tempo_bpm = 5000", r"'tempo_bpm' = 5000.0 is outside the allowed range 20..999"),
        ('"x.xxX.xxX.xxR...",', '"x.xxX.xxX.xx....",', r"exactly one 'R'"),
        ('"x.xxX.xxX.xxR...",', '"x.xx",', r"'patterns' must be 16 characters"),
        ('rhyme_scheme = "AABB"', 'rhyme_scheme = "ZZZ"', r"'rhyme_scheme' must be one of"),
        ('type = "reverb"', 'type = "flanger9000"', r"\[\[fx\]\] #5: 'type' must be one of"),
        ("number = 21", "number = 300", r"\[\[controls\]\] #1: key 'number' = 300.0 is outside"),
        ("schema = 1", "schema = 2", r"'schema' must be 1"),
        ('backend = "piper"', "backend = 3", r"'backend' must be str"),
    ],
)
def test_broken_preset_names_file_and_key(tmp_path, old, new, message):
    assert_broken(tmp_path / "broken.toml", GOOD, old, new, message)


def test_not_toml(tmp_path):
    path = tmp_path / "junk.toml"
    path.write_text("schema = = 1\n[")
    with pytest.raises(PresetError, match="not valid TOML"):
        load_style_file(path)


# ----- the five styles ---------------------------------------------------------------------------------------
import argparse  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402

import numpy as np  # noqa: E402

from rich.console import Console  # noqa: E402

from engine import cli_presets  # noqa: E402
from engine.synth import drum_hits, synth_beat  # noqa: E402
from engine.timebase import PPQN, TICKS_PER_BAR, ticks_to_samples  # noqa: E402
from engine.write.fill_lexicon import LexiconFiller  # noqa: E402
from engine.write.plan import FillContext  # noqa: E402
from engine.write.grid import flow_grid  # noqa: E402
from engine.write.phonetics import tokenize  # noqa: E402
from engine.write.planner import assign_slots, plan_line, syllables_per_word  # noqa: E402
from engine.write.rhyme import rhymes  # noqa: E402

STYLES = {name: load_style(name) for name in available_styles()}
TRAP = (PRESETS_DIR / "trap.toml").read_text()
OPPONENT = [
    "You came to the cypher with a borrowed rhyme",
    "your flow is stuck in a different time",
    "I run this city from the block to the stage",
    "you read your verses off a crumpled page",
]
LEXICON_MAX_SYLLABLES = 12  # the lexicon's templates fill a line exactly up to about this many syllables


def syllables_per_second(style):
    return style.syllables_per_bar * style.tempo_bpm / 240.0


def test_five_styles_ship_and_every_pair_differs_in_several_ways():
    assert {"boom_bap", "trap", "chopper", "grime", "drill"} <= set(STYLES)
    for a, b in itertools.combinations(STYLES.values(), 2):
        differences = [
            abs(a.tempo_bpm - b.tempo_bpm) >= 5,
            a.flow.slots_per_bar != b.flow.slots_per_bar,
            abs(a.syllables_per_bar - b.syllables_per_bar) >= 1.0,
            a.rhyme_scheme != b.rhyme_scheme,
            (a.beat.kick, a.beat.snare, a.beat.hat) != (b.beat.kick, b.beat.snare, b.beat.hat),
            [f.type for f in a.fx] != [f.type for f in b.fx],
        ]
        assert sum(differences) >= 3, (a.name, b.name, differences)
        assert a.voice != b.voice, (a.name, b.name)


def test_each_style_has_its_signature():
    boom, trap, chopper, grime, drill = (STYLES[n] for n in ("boom_bap", "trap", "chopper", "grime", "drill"))
    assert 85 <= boom.tempo_bpm <= 95 and boom.flow.slots_per_bar == 16 and boom.beat.swing > 0
    # trap: 140, eighth-note triplet flow, half-time snare (beat 3 only), triplet hats
    assert trap.tempo_bpm == 140 and trap.flow.slots_per_bar % 3 == 0
    snares = [h for h in drum_hits(trap.beat, trap.tempo_bpm, 1, 48000) if h.instrument == "snare"]
    assert [h.position_samples for h in snares] == [ticks_to_samples(2 * PPQN, trap.tempo_bpm, 48000)]
    assert len(trap.beat.hat) % 3 == 0
    # chopper: the densest by far, in syllables per second, on a 32-slot grid
    rates = {name: syllables_per_second(style) for name, style in STYLES.items()}
    assert max(rates, key=rates.get) == "chopper" and rates["chopper"] >= 1.5 * rates["boom_bap"]
    assert chopper.flow.slots_per_bar == 32
    # grime: 140, syllables on eighth notes only, the sparsest flow
    assert 135 <= grime.tempo_bpm <= 145 and grime.rhyme_scheme in ("ABAB", "AAAA")
    eighth = grime.flow.slots_per_bar // 8
    assert all(ch == "." for p in grime.flow.patterns for i, ch in enumerate(p) if i % eighth)
    assert min(STYLES.values(), key=lambda s: s.syllables_per_bar).name == "grime"
    # drill: 140-145, the darkest voice, a low-pass in its chain, rhymes landing after beat 4
    assert 138 <= drill.tempo_bpm <= 146
    assert min(STYLES.values(), key=lambda s: s.voice.pitch_semitones).name == "drill"
    assert "lowpass" in [f.type for f in drill.fx]
    assert all(p.index("R") > 12 for p in drill.flow.patterns)


def test_program_changes_0_to_4_select_the_five_styles_from_any_style():
    bank = {0: "boom_bap", 1: "trap", 2: "chopper", 3: "grime", 4: "drill"}
    for style in STYLES.values():
        programs = {c.number: c.value for c in style.controls if c.kind == "program" and c.target == "style"}
        assert programs == bank, style.name
        ccs = [c.number for c in style.controls if c.kind == "cc"]
        assert len(ccs) == len(set(ccs)) >= 4
        assert {c.target for c in style.controls if c.kind == "cc"} == {"energy", "wet", "aggression", "density"}


@pytest.mark.parametrize("name", sorted(STYLES))
def test_every_style_plans_and_fills_real_lines_on_its_grid(name):
    style = STYLES[name]
    context = FillContext(tuple(OPPONENT))
    for bar in range(len(style.flow.patterns)):
        plan = plan_line(style, bar, OPPONENT, context.previous)
        line = LexiconFiller().fill_line(plan, context)
        context.previous.append(line)
        assert rhymes([line.words[-1]], plan.rhyme_words[:1]), (bar, line.text, plan.rhyme_words)
        if plan.budget <= LEXICON_MAX_SYLLABLES:
            assert abs(line.syllable_count - plan.budget) <= 1, (bar, line.text, plan.budget)
        else:  # denser than the lexicon's templates: it writes its longest line and the grid drops slots
            assert LEXICON_MAX_SYLLABLES - 1 <= line.syllable_count <= plan.budget, (bar, line.text)
        slots = assign_slots(plan.grid, line.syllable_count)
        rhyme_slot = style.flow.patterns[bar].index("R")
        assert len(slots) == line.syllable_count
        assert slots[-1].index == rhyme_slot and slots[-1].rhyme
        indices = [s.index for s in slots]
        assert indices == sorted(set(indices)) and 0 <= indices[0]
        # every syllable starts on an exact tick of the style's grid
        step_ticks = TICKS_PER_BAR // style.flow.slots_per_bar
        assert TICKS_PER_BAR % style.flow.slots_per_bar == 0
        assert [plan.grid.slot_ticks(s) for s in slots] == [i * step_ticks for i in indices]
    labels = [line.plan.rhyme_label[0] for line in context.previous]
    assert "".join(labels) == style.rhyme_scheme


@pytest.mark.parametrize("name", sorted(STYLES))
def test_every_grid_has_room_for_long_lines_and_the_opponents_verse(name):
    """A filler may write a line two syllables long and the opponent raps the shipped verse on the same grid."""
    style = STYLES[name]
    verse = (PRESETS_DIR / "examples" / f"opponent_{name}.txt")
    verse = verse if verse.exists() else PRESETS_DIR / "examples" / "opponent_boom_bap.txt"
    longest = max(sum(syllables_per_word(tokenize(line))) for line in verse.read_text().splitlines() if line.strip())
    for bar, pattern in enumerate(style.flow.patterns):
        grid = flow_grid(style.flow, bar + 1)[bar]
        for count in (grid.budget + 2, longest):
            slots = assign_slots(grid, count)
            assert len(slots) == count and slots[-1].index == pattern.index("R")
    code, out = presets_cli("check", str(style.source))
    assert code == 0 and "note" not in out


def test_triplet_hats_land_on_triplet_ticks_and_stay_straight():
    trap = STYLES["trap"]
    rate = 48000
    hats = [h for h in drum_hits(trap.beat, trap.tempo_bpm, 2, rate) if h.instrument == "hat"]
    steps = len(trap.beat.hat)
    expected = [ticks_to_samples(bar * TICKS_PER_BAR + step * TICKS_PER_BAR // steps, trap.tempo_bpm, rate)
                for bar in range(2) for step, ch in enumerate(trap.beat.hat) if ch == "x"]
    assert [h.position_samples for h in hats] == expected
    audio = synth_beat(trap.beat, trap.tempo_bpm, 2, rate)
    roll = expected[len(expected) // 2 - 1]  # the last hat of the first bar's roll
    assert np.max(np.abs(audio[roll:roll + 200])) > 10 * np.max(np.abs(audio[roll - 300:roll - 100]))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("slots_per_bar = 24", "slots_per_bar = 10",
         r"\[flow\]: key 'slots_per_bar' = 10 is not allowed; use 8, 12, 16, 24 or 32"),
        ("slots_per_bar = 24", "slots_per_bar = 24.0", r"\[flow\]: key 'slots_per_bar' must be int"),
        ("slots_per_bar = 24", "slots_per_bar = 16", r"\[flow\]: 'patterns' must be 16 characters"),
        ('hat   = "x..x..x..x..x..x..xxxxxx"', 'hat   = "x..x..x..x..x..x..xx"',
         r"\[beat\]: 'hat' must be 8, 12, 16, 24 or 32 characters of '.x'.*\(20 characters\)"),
        ('snare = "........x......."', 'snare = "........o......."', r"\[beat\]: 'snare' must be"),
        ('description = "half-time', 'description = 3\nx = "half-time', r"key 'description' must be str"),
        ("number = 26", "number = 25", r"\[\[controls\]\] #4: key 'number' = 25: cc 25 is already mapped by "
                                       r"\[\[controls\]\] #3"),
        ('value = "drill"', 'value = ""', r"\[\[controls\]\] #9: a style switch needs key 'value'"),
    ],
)
def test_broken_new_keys_name_file_key_and_what_is_allowed(tmp_path, old, new, message):
    assert_broken(tmp_path / "trap.toml", TRAP, old, new, message)


def test_fx_and_controls_must_be_arrays_of_tables(tmp_path):
    path = tmp_path / "trap.toml"
    without_fx = "\n".join(part for part in TRAP.split("\n\n") if "[[fx]]" not in part)
    path.write_text(without_fx.replace("schema = 1", 'schema = 1\nfx = "reverb"', 1))
    with pytest.raises(PresetError, match=f"{path}: 'fx' must be an array of tables"):
        load_style_file(path)
    without_controls = "\n".join(part for part in TRAP.split("\n\n") if "[[controls]]" not in part)
    path.write_text(without_controls.replace("schema = 1", "schema = 1\ncontrols = 5", 1))
    with pytest.raises(PresetError, match=f"{path}: 'controls' must be an array of tables"):
        load_style_file(path)


def test_a_folder_is_not_a_preset(tmp_path):
    with pytest.raises(PresetError, match="is a folder"):
        load_style_file(tmp_path)


# ----- cypher presets check / list ---------------------------------------------------------------------------
def presets_cli(*argv):
    parser = argparse.ArgumentParser(prog="cypher")
    cli_presets.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["presets", *argv])
    out = io.StringIO()
    code = args.run(args, Console(file=out, width=400, color_system=None))
    return code, out.getvalue()


def test_check_with_no_files_checks_every_shipped_preset():
    code, out = presets_cli("check")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == len(STYLES) + 1 and lines[-1] == f"{len(STYLES)} of {len(STYLES)} presets ok"
    trap_line = next(line for line in lines if "trap.toml" in line)
    assert trap_line.startswith("ok") and "140 BPM (130-150), 24 slots/bar" in trap_line
    assert "AAAA" in trap_line and "5 fx" in trap_line


def test_check_a_good_and_a_broken_file(tmp_path):
    good = tmp_path / "trap.toml"
    good.write_text(TRAP)
    broken = tmp_path / "grime.toml"
    broken.write_text((PRESETS_DIR / "grime.toml").read_text().replace("slots_per_bar = 16", "slots_per_bar = 9"))
    code, out = presets_cli("check", str(good))
    assert code == 0 and out.startswith(f"ok   {good}: Trap: 140 BPM")
    code, out = presets_cli("check", str(good), str(broken))
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[0].startswith("ok")
    assert lines[1] == (f"FAIL {broken} [flow]: key 'slots_per_bar' = 9 is not allowed; use 8, 12, 16, 24 or 32 "
                        "(steps per 4/4 bar: 16 sixteenths, 12 eighth triplets, 24 sixteenth triplets, 32 double time)")
    assert lines[2] == "1 of 2 presets ok"
    code, out = presets_cli("check", str(tmp_path))  # a folder: its .toml files
    assert code == 1 and out.count("ok   ") == 1 and out.count("FAIL") == 1


def test_check_builds_the_effects_and_resolves_style_switches(tmp_path):
    bad_fx = tmp_path / "trap.toml"
    bad_fx.write_text(TRAP.replace("ratio = 6.0", "ratio = 6.0\nknee_db = 3.0", 1))
    code, out = presets_cli("check", str(bad_fx))
    assert code == 1 and "FAIL" in out and "[[fx]] #2" in out and "unknown key 'knee_db'" in out
    bad_switch = tmp_path / "drill.toml"
    bad_switch.write_text((PRESETS_DIR / "drill.toml").read_text().replace('value = "grime"', 'value = "polka"'))
    code, out = presets_cli("check", str(bad_switch))
    assert code == 1 and "[[controls]] #8: key 'value' = 'polka' is not a style here" in out
    renamed = tmp_path / "my_trap.toml"
    renamed.write_text(TRAP)
    code, out = presets_cli("check", str(renamed))
    assert code == 0 and "note" in out and "differs from the file name 'my_trap'" in out
    cramped = tmp_path / "grime.toml"
    grime = (PRESETS_DIR / "grime.toml").read_text().replace("slots_per_bar = 16", "slots_per_bar = 8")
    for spread in ("X.x.X.x.X.x.R...", "..x.X.x.X.x.R...", "X.x.X...X.x.R...", "X.x.X.x.X.x.X.R."):
        grime = grime.replace(f'"{spread}"', f'"{spread[::2]}"', 1)  # the same flow on an 8-slot grid
    cramped.write_text(grime)
    code, out = presets_cli("check", str(cramped))
    assert code == 0 and out.count("note") == 4
    assert "pattern #1 has room for 7 syllables up to its rhyme and plans 7" in out
    code, out = presets_cli("check", str(tmp_path / "missing.toml"))
    assert code == 1 and "no such preset file" in out


def test_list_shows_every_style_with_its_program():
    code, out = presets_cli("list")
    assert code == 0
    for name, program in (("boom_bap", 0), ("trap", 1), ("chopper", 2), ("grime", 3), ("drill", 4)):
        row = next(line for line in out.splitlines() if f" {name} " in line)
        assert f" {program} " in row and f"{STYLES[name].tempo_bpm:g}" in row
    code, out = presets_cli()
    assert code == 2 and "check or list" in out


def test_a_preset_edited_into_nonsense_mid_set_leaves_the_last_good_version_playing(tmp_path):
    import shutil

    from engine.presets import StyleBook

    for name in ("boom_bap", "grime"):
        shutil.copy(PRESETS_DIR / f"{name}.toml", tmp_path / f"{name}.toml")
    told = []
    book = StyleBook(tmp_path, on_error=lambda name, message: told.append((name, message)))
    good = book.get("grime")
    path = tmp_path / "grime.toml"
    text = path.read_text()
    path.write_text(text.replace("slots_per_bar = 16", "slots_per_bar = 17"))
    for _ in range(3):  # asked for again on every turn and switch: the same style, told once
        assert book.get("grime") == good
    assert len(told) == 1 and told[0][0] == "grime"
    assert "grime.toml" in told[0][1] and "slots_per_bar" in told[0][1] and "as it was before" in told[0][1]
    path.write_text(text.replace('display_name = "Grime"', 'display_name = "Grime 2"'))  # fixed: the edit plays
    assert book.get("grime").display_name == "Grime 2"
    path.write_text("schema = 1\nname = [")  # broken again, differently: told again
    assert book.get("grime").display_name == "Grime 2" and len(told) == 2
    with pytest.raises(PresetError, match="unknown style 'drill'"):
        book.get("drill")  # never good: nothing to fall back on
