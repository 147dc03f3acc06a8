"""`cypher ports`, `cypher clock` and `cypher learn` through the real `cypher` entry point and real JACK ports."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import mido
import pytest

from bridge.clockgen import ClockSender
from bridge.control import load_user_map
from bridge.midi import open_backend, open_output
from engine import cli, cli_bridge


@pytest.fixture
def cypher(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The `cypher` command with this module's subcommands registered, as the lead wires them in."""
    monkeypatch.setattr(cli, "_registrars", lambda: [cli_bridge.register])
    monkeypatch.delenv(cli_bridge.MIDI_IN_ENV, raising=False)
    yield


def test_help_teaches_with_examples(cypher: None, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("ports", "clock", "learn"):
        with pytest.raises(SystemExit) as done:
            cli.main([command, "--help"])
        assert done.value.code == 0
        assert "examples:" in capsys.readouterr().out


def test_bad_arguments_are_refused_by_the_parser(cypher: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["clock", "--seconds", "soon"])
    assert done.value.code == 2
    assert "takes a number of seconds" in capsys.readouterr().err


@pytest.mark.jack
def test_ports_lists_jack_ports_and_survives_a_missing_backend(
    jack_server: None, cypher: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_output(open_backend("jack"), "cypher-ports-test", virtual=True):
        assert cli.main(["ports", "--json"]) == 0
        found = json.loads(capsys.readouterr().out)
        assert "cypher:cypher-ports-test" in found["midi"]["jack"]["inputs"]
        # No ALSA sequencer on this machine: the system backend is reported, not raised.
        assert set(found["midi"]["system"]) in ({"error"}, {"inputs", "outputs"})
        assert "devices" in found["audio"] or "error" in found["audio"]
        assert cli.main(["ports"]) == 0
        text = capsys.readouterr().out
        assert "MIDI ports (jack)" in text and "cypher-ports-test" in text


@pytest.mark.jack
def test_a_missing_port_is_one_clear_error_listing_the_ports(
    jack_server: None, cypher: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cli_bridge.MIDI_IN_ENV, "no-such-port-anywhere")
    with open_output(open_backend("jack"), "cypher-missing-test", virtual=True):
        assert cli.main(["clock", "--seconds", "1"]) == 1
    out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert out.startswith("cypher clock: no MIDI input matches 'no-such-port-anywhere'")
    assert "'cypher:cypher-missing-test'" in out and "Traceback" not in out


@pytest.mark.jack
def test_clock_json_follows_a_clock_sent_over_jack(
    jack_server: None, cypher: None, capsys: pytest.CaptureFixture[str]
) -> None:
    daw = open_output(open_backend("jack"), "cypher-clock-cli-test", virtual=True)
    sender = ClockSender(daw, 150.0, jitter_rms_s=0.001, seed=3, lead_s=0.6)
    try:
        threading.Timer(0.3, sender.start).start()
        assert cli.main(["clock", "--midi-in", "clock-cli-test", "--json", "--seconds", "4.6"]) == 0
    finally:
        sender.stop()
        daw.close()
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) >= 6
    assert set(rows[0]) >= {"tempo_bpm", "bar", "beat", "transport", "jitter_ms"}
    assert all(row["transport"] == "playing" for row in rows)
    beats = [(row["bar"] - 1) * 4 + row["beat"] - 1 for row in rows]
    assert beats == list(range(beats[0], beats[0] + len(beats)))  # every beat, in order, none skipped
    # after two bars the reading holds, even with the sender's timing disturbed by a busy machine
    late = [row for row in rows if beats[rows.index(row)] - beats[0] >= 8]
    assert late and all(abs(row["tempo_bpm"] - 150.0) < 0.5 for row in late)
    assert all(0.0 < row["jitter_ms"] < 5.0 for row in late)


@pytest.mark.jack
def test_learn_binds_the_next_control_and_saves_it(
    jack_server: None, cypher: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "controls.toml"
    pad = open_output(open_backend("jack"), "cypher-learn-pad", virtual=True)
    stop = threading.Event()

    def keep_turning() -> None:
        while not stop.wait(0.05):
            pad.send(mido.Message("control_change", channel=3, control=41, value=90))

    turner = threading.Thread(target=keep_turning)
    turner.start()
    try:
        code = cli.main(["learn", "wet", "--midi-in", "learn-pad", "--map", str(path), "--seconds", "5"])
    finally:
        stop.set()
        turner.join()
        pad.close()
    assert code == 0
    assert "cc 41 on channel 4 -> wet" in capsys.readouterr().out
    (binding,) = load_user_map(path)
    assert (binding.kind, binding.number, binding.channel, binding.target) == ("cc", 41, 3, "wet")
