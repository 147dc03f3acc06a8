"""Engine control state driven by OSC commands, and the status the engine reports at every bar.

`EngineState` is plain data plus the rules for changing it: it applies `Command`s from the OSC queue (validated
again here against what only the engine knows, such as which style presets exist), advances whose turn it is
on each bar line, and says what the status messages are. `ControlLoop` is the small piece that owns the
state: it drains the queue, applies, and publishes the status on each bar line (the timeline's bar callback)
and after every change (so a panel sees a set reflected even while the transport is stopped).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bridge.addresses import IN_TIME, MAX_TEXT_CHARS, NO_LEARN_TARGET, PARAMS, REFERENCE_LATENCY_MS, Command
from bridge.clock import ClockFollower
from bridge.osc import Message, RateLimitedLog, Replies, printable
from engine.errors import CypherError
from engine.presets import available_styles

log = logging.getLogger(__name__)

MAX_OPPONENT_LINES = 32
STATUS_LINE_CHARS = 200
"""The last opponent line is cut to this length in the status."""
DEFAULT_TURN_BARS = 8


class ControlError(CypherError):
    """A command fits the address map but not the engine's state (an unknown style, answering while disarmed)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(reason)
        self.address = address
        self.reason = reason


@dataclass(frozen=True)
class ClockStatus:
    """Where the song is, as the status reports it: tempo (0 when unknown), bar and beat from 1, transport."""

    tempo_bpm: float
    bar: int
    beat: int
    transport: str

    @classmethod
    def of(cls, follower: ClockFollower) -> ClockStatus:
        """The follower's current tempo, position and transport."""
        position = follower.bar_beat()
        return cls(follower.tempo_bpm or 0.0, position.bar + 1, position.beat + 1, follower.transport)


STOPPED = ClockStatus(0.0, 1, 1, "stopped")


@dataclass
class EngineState:
    """What the producer has set, and whose turn it is. Mutated only by the control thread."""

    styles: tuple[str, ...]
    style: str
    armed: bool = False
    params: dict[str, float] = field(default_factory=lambda: {p.name: p.default for p in PARAMS})
    opponent_bars: int = DEFAULT_TURN_BARS
    our_bars: int = DEFAULT_TURN_BARS
    answer_pending: bool = False
    turn: str = "idle"
    turn_start_bar: int = 0
    bar: int = 0
    latency_ms: float = REFERENCE_LATENCY_MS
    opponent_lines: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_OPPONENT_LINES))
    opponent_lines_total: int = 0
    learn_target: str | None = None

    @classmethod
    def initial(cls, style: str | None = None, styles: tuple[str, ...] | None = None) -> EngineState:
        """A fresh state over the shipped presets, on `style` (default: the first preset)."""
        names = tuple(styles if styles is not None else available_styles())
        if not names:
            raise ControlError("/cypher/style/set", "no style presets found in presets/: reinstall Cypher")
        chosen = style or names[0]
        if chosen not in names:
            raise ControlError("/cypher/style/set", f"unknown style '{chosen}'; choose one of: {', '.join(names)}")
        return cls(styles=names, style=chosen)

    def apply(self, command: Command) -> None:
        """Apply one command; ControlError if it cannot apply (the state is then unchanged)."""
        path, args = command.path, command.args
        domain, verb = path.split("/")[2:4]
        match domain, verb:
            case "style", "set":
                name = str(args[0])
                if name not in self.styles:
                    raise ControlError(path, f"unknown style '{name}'; choose one of: {', '.join(self.styles)}")
                self.style = name
            case "arm", "set":
                self.armed = bool(args[0])
                if not self.armed:
                    self.answer_pending = False
            case "turn", "opponent":
                self.opponent_bars = int(args[0])
            case "turn", "ours":
                self.our_bars = int(args[0])
            case "turn", "answer":
                if not self.armed:
                    raise ControlError(path, "Cypher is not armed: send /cypher/arm/set 1 first")
                self.answer_pending = True
            case "param", name if name in self.params:
                self.params[name] = float(args[0])
            case "opponent", "text":
                self.opponent_lines.append(str(args[0]))
                self.opponent_lines_total += 1
            case "opponent", "clear":
                self.opponent_lines.clear()
                self.opponent_lines_total = 0
            case "latency", "set":
                self.latency_ms = float(args[0])
            case "learn", "arm":
                self.learn_target = str(args[0])
            case "learn", "cancel":
                self.learn_target = None
            case "status", "get":
                pass  # the loop answers with a status
            case _:
                raise ControlError(path, f"{path} is not handled by the engine; update Cypher")

    def advance(self, bar: int) -> None:
        """On a bar line: start, switch or stop turns (opponent raps `opponent_bars`, Cypher `our_bars`)."""
        self.bar = bar
        if not self.armed:
            self.turn, self.turn_start_bar = "idle", bar
        elif self.answer_pending:
            self.turn, self.turn_start_bar, self.answer_pending = "ours", bar, False
        elif self.turn == "idle":
            self.turn, self.turn_start_bar = "opponent", bar
        elif self.turn == "opponent" and bar - self.turn_start_bar >= self.opponent_bars:
            self.turn, self.turn_start_bar = "ours", bar
        elif self.turn == "ours" and bar - self.turn_start_bar >= self.our_bars:
            self.turn, self.turn_start_bar = "opponent", bar

    def status_messages(self, clock: ClockStatus) -> list[Message]:
        """The full status, as (address, arguments) pairs of the map's /cypher/status/* addresses."""
        bar_in_turn = 0 if self.turn == "idle" else max(1, self.bar - self.turn_start_bar + 1)
        last_line = self.opponent_lines[-1][:STATUS_LINE_CHARS] if self.opponent_lines else "-"
        messages: list[Message] = [
            ("/cypher/status/clock", (float(clock.tempo_bpm), clock.bar, clock.beat, clock.transport)),
            ("/cypher/status/turn", (self.turn, bar_in_turn, self.opponent_bars, self.our_bars)),
            ("/cypher/status/style", (self.style,)),
            ("/cypher/status/arm", (int(self.armed),)),
        ]
        messages += [(f"/cypher/status/{name}", (value,)) for name, value in self.params.items()]
        messages += [
            ("/cypher/status/latency", (float(self.latency_ms),)),
            ("/cypher/status/opponent", (self.opponent_lines_total, last_line)),
            ("/cypher/status/learn", (self.learn_target or NO_LEARN_TARGET,)),
        ]
        return messages


class ControlLoop:
    """Owns an `EngineState`: drains the OSC command queue, applies, and publishes the status.

    `on_bar(bar, time_s)` is the timeline's bar callback: apply what is queued, advance the turn, publish the
    status as one bundle. `poll()` applies what is queued between bars and publishes once if anything
    changed or a status was asked for. `run()` calls `poll()` every `poll_s` (and, for tests and
    clockless use, `on_bar` every `bar_s`). A lock makes `on_bar` and `poll` safe from two threads.
    `clock` reports where the song is; it is called from whichever thread publishes.
    """

    def __init__(self, state: EngineState, commands: queue.Queue[Command], replies: Replies,
                 clock: Callable[[], ClockStatus] = lambda: STOPPED,
                 on_style: Callable[[str], None] | None = None,
                 on_answer: Callable[[], None] | None = None) -> None:
        self.state = state
        self.on_style = on_style  # told of each style switch as soon as it applies, to land on the next bar line
        self.on_answer = on_answer  # told of "answer now" as soon as it applies, to move the answer ahead of its line
        self._commands = commands
        self._replies = replies
        self._clock = clock
        self._lock = threading.Lock()
        self._log = RateLimitedLog(log)
        self.applied = 0
        self.refused = 0
        self.status_sent_s: deque[float] = deque(maxlen=256)
        """When each recent status left (time.monotonic(), after the send returned), oldest first."""

    def on_bar(self, bar: int, time_s: float) -> None:
        """A bar line: apply queued commands, advance the turn, publish the status."""
        with self._lock:
            self._drain()
            self.state.advance(bar)
            self._publish()

    def transport_stopped(self) -> None:
        """The DAW stopped: no one's turn until it plays again (an armed engine starts a new exchange then)."""
        with self._lock:
            self.state.turn, self.state.answer_pending = "idle", False
            self._publish()

    def poll(self) -> int:
        """Apply queued commands; publish the status if anything applied or was asked for. Returns how many."""
        with self._lock:
            applied = self._drain()
            if applied:
                self._publish()
            return applied

    def run(self, until: threading.Event, poll_s: float = 0.01, bar_s: float | None = None) -> None:
        """Poll until `until` is set; with `bar_s`, also announce a bar line every `bar_s` seconds."""
        bar = 0
        next_bar_s = time.monotonic() if bar_s else float("inf")
        while not until.is_set():
            now_s = time.monotonic()
            if bar_s and now_s >= next_bar_s:
                self.on_bar(bar, now_s)
                bar += 1
                next_bar_s += bar_s
            else:
                self.poll()
            until.wait(max(0.0, min(poll_s, next_bar_s - time.monotonic())))

    def publish_verse_line(self, bar: int, line: int, text: str) -> None:
        """Send one verse line as soon as it is written (bar and line from 1; line 1 starts a verse).

        The text is cut to the map's limit and control characters replaced; an empty line is sent as "…".
        """
        self._replies.send("/cypher/verse/line", bar, line, printable(text, MAX_TEXT_CHARS) or "…")

    def publish_meters(self, opponent_db: float, beat_db: float, output_db: float) -> None:
        """Send the bus levels in dBFS (clamped to the map's -120..12)."""
        levels = (min(12.0, max(-120.0, float(v))) for v in (opponent_db, beat_db, output_db))
        self._replies.send("/cypher/meter/levels", *levels)

    def publish_drift(self, offset_ms: float, advice: str) -> None:
        """Send the beat bus's offset from the clock and the advice (`IN_TIME` while they agree)."""
        self._replies.send("/cypher/sync/drift", min(1000.0, max(-1000.0, float(offset_ms))),
                           printable(advice, 400) or IN_TIME)

    def publish_stage_latencies(self, stages_s: Mapping[str, float]) -> None:
        """Send how long the last bar's stages took (keys listen_s, write_s, voice_s, fx_s, total_s)."""
        names = ("listen_s", "write_s", "voice_s", "fx_s", "total_s")
        self._replies.send("/cypher/latency/stages", *(min(10_000.0, stages_s.get(n, 0.0) * 1000.0) for n in names))

    def _drain(self) -> int:
        applied = 0
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return applied
            try:
                self.state.apply(command)
            except ControlError as err:
                self.refused += 1
                self._log.warning(f"OSC {err.address} refused: {err.reason}")
                self._replies.error(err.address, err.reason)
                continue
            applied += 1
            self.applied += 1
            if command.path == "/cypher/style/set" and self.on_style is not None:
                self.on_style(self.state.style)
            elif command.path == "/cypher/turn/answer" and self.on_answer is not None:
                self.on_answer()

    def _publish(self) -> None:
        self._replies.send_bundle(self.state.status_messages(self._clock()))
        self.status_sent_s.append(time.monotonic())

