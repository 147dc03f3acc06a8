"""The harness's DAW in a process of its own: the MIDI clock it sends, the buses it plays into the engine and the
recorder on the engine's output.

In the engine's process, these Python JACK callbacks and the clock sender's spin-waits would share the engine's
GIL with its own output callback, so the benchmark would count xruns that a real DAW (its own process) never
causes. Here the parent keeps the engine's ports; the child owns the DAW's, answers a few commands over a pipe, and
records into shared memory the parent reads.
"""

from __future__ import annotations

import logging
import multiprocessing
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from bridge.clock import clock_period_s
from engine.errors import CypherError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 20.0


class DawProcessError(CypherError):
    """The DAW process could not start or answer."""


@dataclass(frozen=True)
class DawSetup:
    """What the DAW process opens: a clock into the MIDI input named `clock_to`, a recorder `recorder` of
    `record_s` seconds, and a player per name in `players`."""

    clock_to: str
    recorder: str
    record_s: float
    tempo_bpm: float
    jitter_rms_s: float
    seed: int
    max_clocks: int
    lead_s: float
    sample_rate: int = 48000
    players: tuple[str, ...] = ()
    shared_name: str = field(default="", compare=False)


@dataclass(frozen=True)
class RecorderStatus:
    """The recorder's first JACK frame (None before its first cycle), the cycles it lost, the xruns it saw."""

    first: int | None
    gaps: int
    xruns: int


def _stop_clock(sender: Any, port: Any) -> None:
    """Stop the sender (it sends MIDI Stop) and close its port, once; the port first of the DAW's to close: rtmidi
    on JACK can hang closing a port whose peer is gone."""
    if not port.closed:
        sender.stop()
        port.close()


def _serve(conn: Connection, setup: DawSetup) -> None:
    """The child: open the DAW's ports (rtmidi first: see engine.harness), then answer commands until "close"."""
    import mido

    from bridge.clockgen import ClockSender
    from bridge.midi import JACK_BACKEND, open_output
    from engine.play.record import Player, Recorder

    closers: list = []
    shared = SharedMemory(name=setup.shared_name)
    try:
        backend = mido.Backend(JACK_BACKEND, load=True)
        clock_port = open_output(backend, setup.clock_to)
        closers.append(clock_port.close)
        audio = np.ndarray((round(setup.record_s * setup.sample_rate),), dtype=np.float32, buffer=shared.buf)
        audio.fill(0.0)  # every page touched before the run
        recorder = Recorder(setup.recorder, setup.record_s, setup.sample_rate, buffer=audio)
        closers.append(recorder.close)
        players = {name: Player(name, setup.sample_rate) for name in setup.players}
        closers.extend(p.close for p in players.values())
        sender = ClockSender(clock_port, setup.tempo_bpm, jitter_rms_s=setup.jitter_rms_s, seed=setup.seed,
                             max_clocks=setup.max_clocks, lead_s=setup.lead_s)
    except Exception as exc:  # JACK-Client's, rtmidi's and our own errors all end the same way: said to the parent
        conn.send(("error", f"the DAW's ports did not open: {exc}"))
        for closer in reversed(closers):
            closer()
        shared.close()
        return
    conn.send(("ok", None))
    clips: dict[str, list[np.ndarray]] = {}
    try:
        while True:
            command, *args = conn.recv()
            if command == "close":
                break
            if command == "load":
                clips[args[0]] = args[1]
                reply: Any = None
            elif command == "start":
                sender.start()
                reply = sender.start_time_s
            elif command == "play":
                name, index, time_s = args
                players[name].play_at(time_s, clips[name][index])
                reply = None
            elif command == "frame_of":
                reply = recorder.frame_of(args[0])
            elif command == "status":
                reply = RecorderStatus(recorder.first, recorder.gaps, recorder.xruns)
            elif command == "stop_clock":
                _stop_clock(sender, clock_port)
                reply = None
            else:
                conn.send(("error", f"unknown command {command!r}"))
                continue
            conn.send(("ok", reply))
    finally:
        _stop_clock(sender, clock_port)
        for closer in reversed(closers):
            try:
                closer()
            except Exception as exc:  # one port that fails to close must not keep the others open
                log.warning("closing a DAW port: %s", exc)
        del audio
        shared.close()


class DawProcess:
    """The parent's handle on the DAW process."""

    def __init__(self, setup: DawSetup) -> None:
        self.setup = setup
        frames = round(setup.record_s * setup.sample_rate)
        self._shared = SharedMemory(create=True, size=4 * frames)
        self.recording = np.ndarray((frames,), dtype=np.float32, buffer=self._shared.buf)
        self.recording.fill(0.0)  # every page touched here now: pages first read during the run would look like
        #                           the engine's memory growing (VmRSS counts the shared pages a process touched)
        self.start_time_s: float | None = None
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        full = DawSetup(**{**setup.__dict__, "shared_name": self._shared.name})
        self._process = context.Process(target=_serve, args=(child, full), name="cypher-harness-daw", daemon=True)
        self._process.start()
        child.close()
        try:
            self._answer(START_TIMEOUT_S, "start")
        except BaseException:
            self.close()
            raise

    def _answer(self, timeout_s: float, what: str) -> Any:
        if not self._conn.poll(timeout_s):
            raise DawProcessError(f"the DAW process did not answer {what} within {timeout_s:g} s")
        try:
            status, value = self._conn.recv()
        except EOFError:
            raise DawProcessError(f"the DAW process ended during {what}") from None
        if status != "ok":
            raise DawProcessError(value)
        return value

    def call(self, command: str, *args: Any) -> Any:
        """Run `command` in the DAW process and return its answer."""
        self._conn.send((command, *args))
        return self._answer(CALL_TIMEOUT_S, command)

    def load(self, player: str, clips: list[np.ndarray]) -> None:
        """Give player `player` the clips it may be asked to play."""
        self.call("load", player, [np.asarray(c, dtype=np.float32) for c in clips])

    def start_clock(self) -> float:
        """Send Start and the clocks; the host time the sender started."""
        self.start_time_s = float(self.call("start"))
        return self.start_time_s

    def ideal_time_s(self, clock_index: int) -> float:
        """The jitter-free host time of clock `clock_index` (the same schedule as the sender's)."""
        if self.start_time_s is None:
            raise DawProcessError("the clock has not started")
        return self.start_time_s + clock_index * clock_period_s(self.setup.tempo_bpm)

    def play(self, player: str, index: int, time_s: float) -> None:
        """Play clip `index` of `player` from host time `time_s` on."""
        self.call("play", player, index, time_s)

    def frame_of(self, time_s: float) -> float:
        """The JACK frame of a host time, as the recorder reads JACK's clock."""
        return float(self.call("frame_of", time_s))

    def status(self) -> RecorderStatus:
        """The recorder's counters now."""
        return self.call("status")

    def stop_clock(self) -> None:
        """Stop the clock and close its port."""
        if self._process.is_alive():
            self.call("stop_clock")

    def close(self) -> None:
        """Close the DAW's ports and end the process; the recording is gone after this."""
        if self._process.is_alive():
            try:
                self._conn.send(("close",))
            except (BrokenPipeError, OSError):
                pass
            self._process.join(10.0)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(2.0)
        self._conn.close()
        self.recording = np.zeros(0, dtype=np.float32)
        self._shared.close()
        self._shared.unlink()
