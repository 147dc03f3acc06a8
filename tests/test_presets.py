"""Presets load, validate and fail with messages that name the file and the key."""

from pathlib import Path

import pytest

from engine.errors import PresetError
from engine.presets import available_styles, load_style, load_style_file

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
    assert old in GOOD
    path = tmp_path / "broken.toml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(PresetError, match=message) as info:
        load_style_file(path)
    assert str(path) in str(info.value)


def test_not_toml(tmp_path):
    path = tmp_path / "junk.toml"
    path.write_text("schema = = 1\n[")
    with pytest.raises(PresetError, match="not valid TOML"):
        load_style_file(path)
