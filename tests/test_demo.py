"""End to end: `cypher demo` renders a whole exchange through the live path and its figures hold."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

pytestmark = [pytest.mark.slow, pytest.mark.models]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    # The in-process MIDI port: what `make demo` uses on a machine without a JACK server. (Through JACK MIDI the
    # figures matched in most runs, but twice in full-suite runs the answer sat 30-90 ms late; not yet explained.)
    result = subprocess.run([sys.executable, "-m", "engine.cli", "demo", "--bars", "4", "--seed", "3",
                             "--midi", "loopback", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result.stdout


def test_demo_writes_every_file_whole(demo):
    out, stdout = demo
    for name in ("exchange.wav", "answer.wav", "answer.txt", "grid.png", "report.json"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob(".*-*")), "a temporary file was left behind"
    assert (out / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "tempo error" in stdout


def test_demo_audio_is_the_exchange(demo):
    out, _ = demo
    report = json.loads((out / "report.json").read_text())
    mix, sr = sf.read(out / "exchange.wav")
    answer, sr2 = sf.read(out / "answer.wav")
    assert sr == sr2 == 48000
    bar = int(round(4 * 60 / report["tempo_bpm"] * sr))
    # intro bar + 4 opponent bars + 4 answer bars + 1 outro bar
    assert abs(len(mix) - 10 * bar) <= 10
    # the answer is silent while the opponent raps and sounds from the bar line after their verse
    opponent_part = answer[: 5 * bar - bar // 8]
    answer_part = answer[5 * bar: 9 * bar]
    assert np.sqrt(np.mean(answer_part ** 2)) > 10 * np.sqrt(np.mean(opponent_part ** 2)) + 1e-4


def test_demo_figures_meet_the_skeleton_bar(demo):
    out, _ = demo
    report = json.loads((out / "report.json").read_text())
    lines = (out / "answer.txt").read_text().strip().splitlines()
    assert len(lines) == report["bars"] == report["lines_written"] == 4
    assert report["tempo_error_bpm"] <= 0.1
    assert report["onset_error_ms"]["median"] <= 20
    assert report["onset_error_ms"]["measured"] == report["syllables"]
    assert report["planned_end_rhymes_hit"] >= 0.75
    assert report["opponent_references"] >= 1
    assert report["bars_late"] == []
    assert report["errors"] == []
    assert set(report["backends"]) == {"words", "voice", "ears"}


def test_demo_without_the_language_model_uses_the_lexicon(tmp_path):
    result = subprocess.run([sys.executable, "-m", "engine.cli", "demo", "--bars", "2", "--words", "lexicon",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["backends"]["words"] == "lexicon"
    assert report["lines_written"] == 2 and report["bars_late"] == []
    assert report["planned_end_rhymes_hit"] >= 0.5
    assert report["syllable_fit"] == 1.0
