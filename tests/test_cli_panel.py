"""`cypher panel` against a real engine-side OSC server and control loop over UDP on 127.0.0.1."""

from __future__ import annotations

import argparse
import io
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from rich.console import Console

from bridge.addresses import Command, OscError
from bridge.osc import OscServer, Replies
from engine.cli_panel import PanelView, parse_command, register
from engine.control import ControlLoop, EngineState
from engine.presets import PRESETS_DIR, available_styles


def free_port() -> int:
    """A UDP port nobody holds right now (the panel must bind a port the engine already knows)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Running:
    server: OscServer
    loop: ControlLoop
    panel_port: int


@pytest.fixture
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    presets = tmp_path_factory.mktemp("presets")
    for name in ("boom_bap", "half_time"):
        (presets / f"{name}.toml").write_bytes((PRESETS_DIR / "boom_bap.toml").read_bytes())
    commands: queue.Queue[Command] = queue.Queue()
    panel_port = free_port()
    replies = Replies("127.0.0.1", panel_port)
    server = OscServer(commands, replies, port=0).start()
    loop = ControlLoop(EngineState.initial("boom_bap", tuple(available_styles(presets))), commands, replies)
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,), kwargs={"poll_s": 0.005, "bar_s": 0.25}, daemon=True)
    runner.start()
    yield Running(server, loop, panel_port)
    stop.set()
    runner.join(timeout=2.0)
    server.close()
    replies.close()


def panel(engine: Running, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="cypher")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["panel", "--engine-port", str(engine.server.port),
                              "--listen-port", str(engine.panel_port), *argv])
    out = io.StringIO()
    code = args.run(args, Console(file=out, width=140, color_system=None))
    return code, out.getvalue()


def test_commands_are_typed_and_checked_before_they_leave() -> None:
    assert parse_command(["/cypher/param/energy", "0.8"]) == ("/cypher/param/energy", (0.8,))
    assert parse_command(["/cypher/arm/set", "1"]) == ("/cypher/arm/set", (1,))
    assert parse_command(["/cypher/turn/answer"]) == ("/cypher/turn/answer", ())
    with pytest.raises(OscError, match="must be a float from 0 to 1, got 'loud'"):
        parse_command(["/cypher/param/energy", "loud"])
    with pytest.raises(OscError, match="got 2"):
        parse_command(["/cypher/param/energy", "2"])
    with pytest.raises(OscError, match="takes 1 argument"):
        parse_command(["/cypher/style/set"])
    with pytest.raises(OscError, match="unknown address '/cypher/status/clock'"):
        parse_command(["/cypher/status/clock", "1"])


def test_one_shot_send_sets_the_engine_and_prints_its_status(engine: Running) -> None:
    code, out = panel(engine, "--send", "/cypher/style/set", "half_time")
    assert code == 0, out
    assert engine.loop.state.style == "half_time"
    assert "sent /cypher/style/set half_time" in out and "style half_time" in out
    code, out = panel(engine, "--send", "/cypher/opponent/text", "you rap like a fax machine")
    assert code == 0 and list(engine.loop.state.opponent_lines) == ["you rap like a fax machine"]


def test_one_shot_send_reports_a_refusal(engine: Running) -> None:
    code, out = panel(engine, "--send", "/cypher/style/set", "polka")
    assert code == 1
    assert "engine refused /cypher/style/set: unknown style 'polka'; choose one of: boom_bap, half_time" in out
    assert engine.loop.state.style == "boom_bap"


def test_a_bad_command_is_refused_locally_and_nothing_is_sent(engine: Running) -> None:
    with pytest.raises(OscError, match="must be a float from 0 to 1"):
        panel(engine, "--send", "/cypher/param/wet", "1.5")
    time.sleep(0.05)
    assert engine.server.dispatcher.received == 0


def test_no_answer_is_reported() -> None:
    idle = free_port()
    parser = argparse.ArgumentParser(prog="cypher")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["panel", "--engine-port", str(idle), "--listen-port", str(free_port()),
                              "--wait", "0.2", "--send", "/cypher/arm/set", "1"])
    out = io.StringIO()
    assert args.run(args, Console(file=out, width=140)) == 1
    assert "no answer within 0.2 s" in out.getvalue()


def test_watching_shows_status_verse_and_errors(engine: Running) -> None:
    def later() -> None:
        time.sleep(0.4)
        engine.loop.publish_verse_line(5, 1, "fax machine flow on a paper line")
        engine.loop.publish_verse_line(6, 2, "I print the answer while you hold the line")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"not osc", ("127.0.0.1", engine.server.port))

    threading.Thread(target=later, daemon=True).start()
    code, out = panel(engine, "--duration", "1.0")
    assert code == 0
    assert "style boom_bap" in out and "stopped" in out
    assert "fax machine flow on a paper line" in out and "hold the line" in out
    assert "error ?: not an OSC packet" in out


def test_the_view_starts_a_new_verse_on_line_one() -> None:
    view = PanelView()
    view.update("/cypher/verse/line", (1, 1, "old"))
    view.update("/cypher/verse/line", (9, 1, "new"))
    assert view.verse == {1: (9, "new")}


def test_list_shows_every_command() -> None:
    parser = argparse.ArgumentParser(prog="cypher")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["panel", "--list"])
    out = io.StringIO()
    assert args.run(args, Console(file=out, width=200)) == 0
    assert "/cypher/learn/arm" in out.getvalue() and "/cypher/status/clock" not in out.getvalue()
