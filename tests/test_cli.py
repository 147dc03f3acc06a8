"""The `cypher` command on bad input: one clear line, a non-zero exit, no traceback, no files left behind."""

import subprocess
import sys
from pathlib import Path


def cypher(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_help_teaches():
    result = cypher("demo", "--help")
    assert result.returncode == 0
    assert "--bars" in result.stdout and "exchange.wav" in result.stdout


def test_unknown_style_is_one_clear_line(tmp_path):
    result = cypher("demo", "--style", "polka", "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "unknown style 'polka'" in result.stdout and "boom_bap" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists()


def test_bars_out_of_range(tmp_path):
    for bad in ("1", "33", "many"):
        result = cypher("demo", "--bars", bad, "--out", str(tmp_path / "out"))
        assert result.returncode == 2
        assert "--bars takes a whole number from 2 to 32" in result.stderr
        assert "Traceback" not in result.stderr


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = cypher("demo", "--out", str(blocker / "demo"))
    assert result.returncode == 1
    assert "cannot write to" in result.stdout and "--out" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_live_with_a_missing_midi_port_names_what_there_is():
    result = cypher("live", "--midi-in", "no-such-port-anywhere", "--seconds", "1")
    assert result.returncode == 1
    assert "no-such-port-anywhere" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
