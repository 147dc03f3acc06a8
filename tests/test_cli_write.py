"""`cypher write`: the answer to a shipped opponent verse, one line a bar or as JSON with its plan, and every bad
input answered with one clear message and an exit status (never a traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.presets import PRESETS_DIR, available_styles, load_style
from engine.write.phonetics import in_dictionary, syllables, tokenize
from engine.write.rhyme import rhymes

REPO = Path(__file__).resolve().parents[1]
VERSES = PRESETS_DIR / "examples" / "verses"
CHESS = VERSES / "01_chess.txt"


def write(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `cypher write ARGS` in this process: exit status, stdout, stderr."""
    code = main(["write", *args])
    out, err = capsys.readouterr()
    return code, out, err


def write_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = write(capsys, *args, "--json")
    assert code == 0, out + err
    return json.loads(out)


def cypher(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real `cypher` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], input=stdin, capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, **(env or {})})


def verse_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def one_syllable_style(tmp_path: Path) -> Path:
    """boom_bap with a flow of one syllable a bar: a budget no line of the lexicon's templates can meet."""
    text = (PRESETS_DIR / "boom_bap.toml").read_text()
    start = text.index("patterns = [")
    end = text.index("]", start)
    path = tmp_path / "tiny.toml"
    path.write_text(text[:start] + 'patterns = ["..R............."' + text[end:])
    return path


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["write", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for phrase in ("--opponent", "--words", "examples:", "empty text is refused", "relaxed", "rhyme_landed"):
        assert phrase in out


@pytest.mark.parametrize(("verse", "style"), [("01_chess.txt", "boom_bap"), ("19_drip.txt", "trap"),
                                              ("13_detective.txt", "drill"), ("07_weather.txt", "grime")])
def test_one_line_per_bar_repeatably(capsys, verse, style):
    heard = verse_lines(VERSES / verse)
    code, out, err = write(capsys, "--opponent", str(VERSES / verse), "--style", style, "--words", "lexicon")
    assert code == 0, out + err
    lines = out.splitlines()
    assert len(lines) == len(heard) == 8  # one bar per opponent line by default
    assert all(tokenize(line) for line in lines)
    assert write(capsys, "--opponent", str(VERSES / verse), "--style", style, "--words", "lexicon")[1] == out
    data = write_json(capsys, "--opponent", str(VERSES / verse), "--style", style, "--words", "lexicon")
    assert data["lines"] == lines  # the JSON holds the very lines the text mode prints


@pytest.mark.parametrize("style_name", ["boom_bap", "drill"])
def test_json_plan_agrees_with_lines_style_and_rhyme_functions(capsys, style_name):
    style = load_style(style_name)
    heard = verse_lines(CHESS)
    data = write_json(capsys, "--opponent", str(CHESS), "--style", style_name, "--words", "lexicon")
    assert (data["style"], data["bars"], data["filler"], data["opponent"]) == (style_name, 8, "lexicon", heard)
    plan = data["plan"]
    assert [p["bar"] for p in plan] == list(range(1, 9))
    first_of_group: dict[str, dict] = {}
    heard_words = {w for line in heard for w in tokenize(line)}
    for i, p in enumerate(plan):
        words = [w["word"] for w in p["words"]]
        assert p["text"] == data["lines"][i] == " ".join(words)
        assert [w["syllables"] for w in p["words"]] == [max(1, syllables(w)) for w in words]
        assert p["syllables"] == sum(w["syllables"] for w in p["words"])
        pattern = style.flow.patterns[i % len(style.flow.patterns)]
        assert p["budget"] == len(pattern) - pattern.count(".")
        assert p["stresses"] == [int(ch in "XR") for ch in pattern if ch != "."]
        period, pos = divmod(i, len(style.rhyme_scheme))
        assert p["rhyme_label"] == f"{style.rhyme_scheme[pos]}{period}"
        group = first_of_group.setdefault(p["rhyme_label"], p)
        if group is p:  # a group opens by flipping the opponent's end word in the same place
            assert p["rhyme_words"][0] == tokenize(heard[i])[-1]
        else:  # later lines rhyme with what we actually wrote
            assert p["rhyme_words"][0] == group["words"][-1]["word"]
        assert p["rhyme_landed"] == rhymes([words[-1]], p["rhyme_words"][:1])
        assert set(p["answer_words"]) <= heard_words and p["answer_words"]
        assert p["callback"] == ""  # one round only: nothing earlier to call back to
        assert p["filler"] == "lexicon"
        on_budget = abs(p["syllables"] - p["budget"]) <= 1
        assert (p["relaxed"] == []) == (p["rhyme_landed"] and on_budget)
    landed = sum(p["rhyme_landed"] for p in plan) / len(plan)
    assert data["summary"]["end_rhymes_landed"] == round(landed, 3)
    assert landed >= 0.75  # the shipped verse is easy to rhyme with: most lines must land


def test_bars_and_seed(capsys):
    assert len(write_json(capsys, "--opponent", str(CHESS), "--words", "lexicon", "--bars", "3")["lines"]) == 3
    longer = write_json(capsys, "--opponent", str(CHESS), "--words", "lexicon", "--bars", "12")
    assert len(longer["lines"]) == 12 and longer["bars"] == 12
    answers = {tuple(write_json(capsys, "--opponent", str(CHESS), "--words", "lexicon", "--seed", str(seed))["lines"])
               for seed in range(4)}
    assert len(answers) > 1  # another seed, other words


def test_knobs_shape_the_plan(capsys):
    """density takes syllables out of the grid or puts them in; aggression takes up more of the opponent's words."""
    plans = {level: write_json(capsys, "--opponent", str(CHESS), "--words", "lexicon", "--density", level,
                               "--aggression", level)["plan"] for level in ("0", "0.5", "1")}
    for sparse, preset, dense in zip(plans["0"], plans["0.5"], plans["1"]):
        assert sparse["budget"] < preset["budget"] < dense["budget"]
        assert len(sparse["answer_words"]) == 1 and len(dense["answer_words"]) == 3
        assert abs(sparse["syllables"] - sparse["budget"]) <= 1 and abs(dense["syllables"] - dense["budget"]) <= 1
    with pytest.raises(SystemExit) as stop:
        main(["write", "--opponent", str(CHESS), "--density", "2"])
    assert stop.value.code == 2
    assert "--density: takes a number from 0 to 1" in capsys.readouterr().err


def test_stdin_accents_and_words_no_dictionary_knows():
    verse = "you roll up to Beyoncé’s café looking glizzy\nI stay on the block and my fit stays crispy\n"
    result = cypher("write", "--opponent", "-", "--words", "lexicon", "--json", stdin=verse)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["opponent"][0] == "you roll up to Beyonce's cafe looking glizzy"  # accents folded, quote kept
    assert not in_dictionary("glizzy") and "glizzy" in data["guessed_words"]
    first = data["plan"][0]
    assert first["rhyme_words"][0] == "glizzy"  # the G2P gives the unknown word a rhyme to flip
    last = first["words"][-1]["word"]
    assert first["rhyme_landed"] is True and rhymes([last], ["glizzy"])
    assert len(data["lines"]) == 2


def test_a_plan_no_filler_can_meet_is_relaxed_and_said(capsys, tmp_path):
    style = one_syllable_style(tmp_path)
    verse = tmp_path / "odd.txt"
    verse.write_text("you put too much sugar\nI waited on you for a month\n")
    code, out, err = write(capsys, "--opponent", str(verse), "--style", str(style), "--words", "lexicon")
    assert code == 0
    assert len(out.splitlines()) == 2
    assert "relaxed bar 1: end rhyme:" in err and "does not rhyme with 'sugar'" in err
    assert "relaxed bar 1: syllables:" in err and "for a budget of 1" in err
    assert "timing:" in err
    data = write_json(capsys, "--opponent", str(verse), "--style", str(style), "--words", "lexicon")
    for p in data["plan"]:
        assert p["budget"] == 1
        assert any(r.startswith("syllables:") for r in p["relaxed"])
        assert any(r.startswith("end rhyme:") for r in p["relaxed"]) == (not p["rhyme_landed"])
    assert data["plan"][0]["rhyme_landed"] is False  # no word the lexicon knows rhymes with "sugar"


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: d / "nope.txt", "no such file"),
    (lambda d: d, "is a folder"),
    (lambda d: _file(d, "\n   \n\n"), "has no words"),
    (lambda d: _file(d, "... !!! 123\n"), "has no words"),
    (lambda d: _file(d, b"\xff\xfe\x00\x81binary"), "not UTF-8 text"),
    (lambda d: _file(d, "you talk a lot\n\nты читаешь как робот\n"), "line 3: 'ты' has letters outside English"),
    (lambda d: _file(d, "tu flow es lento y tus rimas son viejas\nyo te gano en la pista cada noche\n"),
     "does not read as English"),
    (lambda d: _file(d, "zxqv blorf\n"), "does not read as English"),
])
def test_bad_opponent_text_is_one_clear_error(capsys, tmp_path, make, message):
    code, out, err = write(capsys, "--opponent", str(make(tmp_path)), "--words", "lexicon")
    assert code == 1
    assert out.startswith("cypher write: ") and message in " ".join(out.split())
    assert "Traceback" not in out + err


def _file(folder: Path, content: str | bytes) -> Path:
    path = folder / "verse.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_unknown_style_names_the_shipped_ones(capsys):
    code, out, err = write(capsys, "--opponent", str(CHESS), "--style", "polka", "--words", "lexicon")
    assert code == 1
    assert "unknown style 'polka'" in out and all(name in out for name in available_styles())


@pytest.mark.parametrize("bad", ["0", "33", "many"])
def test_bars_out_of_range(capsys, bad):
    with pytest.raises(SystemExit) as stop:
        main(["write", "--opponent", str(CHESS), "--bars", bad])
    assert stop.value.code == 2
    assert "--bars takes a whole number from 1 to 32" in capsys.readouterr().err


def test_without_the_model_stack(tmp_path):
    """torch hidden (as on a machine without the model stack): --words lm is one clear error, auto warns once and
    writes with the lexicon."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text('raise ImportError("No module named torch")\n')
    env = {"PYTHONPATH": str(tmp_path)}
    missing = cypher("write", "--opponent", str(CHESS), "--words", "lm", env=env)
    assert missing.returncode == 1
    assert "torch and transformers are missing" in missing.stdout and "make setup" in missing.stdout
    assert "Traceback" not in missing.stdout + missing.stderr
    auto = cypher("write", "--opponent", str(CHESS), "--words", "auto", "--bars", "2", env=env)
    assert auto.returncode == 0
    assert len(auto.stdout.splitlines()) == 2
    warnings = [line for line in auto.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "lexicon filler" in warnings[0]


def test_language_model_writes_and_falls_back_when_it_cannot(tmp_path):
    """With the model: a one-syllable bar that must rhyme with "sugar" (no one-syllable word does) is refused by
    the model and written by the lexicon, and the command says so; the next bar the model writes itself."""
    style = one_syllable_style(tmp_path)
    verse = tmp_path / "odd.txt"
    verse.write_text("you put too much sugar\nI waited on you for a month\n")
    result = cypher("write", "--opponent", str(verse), "--style", str(style), "--words", "lm", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["filler"] == "smollm2-135m"
    first, second = data["plan"]
    assert first["filler"] == "lexicon"
    assert any(r.startswith("filler: smollm2-135m could not write it") for r in first["relaxed"])
    assert "relaxed bar 1: filler: smollm2-135m" in result.stderr
    assert second["filler"] == "smollm2-135m"
    assert abs(second["syllables"] - 1) <= 1
    assert second["rhyme_landed"] == rhymes([second["words"][-1]["word"]], second["rhyme_words"][:1])
