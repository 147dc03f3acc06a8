"""The live battle loop: Live's MIDI clock in, OSC from the panel, the answer out on a virtual channel.

The same turn code as the offline demo; what differs is the clock source (a real MIDI input), the sink (the ring
buffer of an audio output) and the ears. Turns follow the panel: once armed, the opponent raps for their bars
(their lines typed into the panel or sent over OSC), Cypher answers on the next bar line for as many bars. An
opponent's turn also ends early on the panel's "answer now" or when the vocal bus has been quiet for
`silence_ends_turn_s` after they rapped: the answer then starts on the next bar line.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from collections import deque
from dataclasses import dataclass

import numpy as np

from bridge.addresses import Command
from bridge.clock import ClockFollower
from bridge.control import ControlRouter, ParamChange, StyleChange
from bridge.midi import MidiEventSource
from bridge.osc import OscServer, Replies
from engine.control import ClockStatus, ControlLoop, EngineState
from engine.errors import CypherError
from engine.listen.vocal import HeardWord
from engine.perform import Knobs
from engine.presets import PRESETS_DIR, Style, StyleBook
from engine.timebase import TICKS_PER_BAR, bar_samples
from engine.timeline import Timeline
from engine.listen.beatwatch import BeatBusWatch
from engine.listen.beatclock import BeatBusClock
from engine.listen.capture import CaptureBus, JackCapture
from engine.listen.vocalwatch import VocalTurnEnd
from engine.turn import AnswerTurn, BusInput, Ears, LineWriting, Sink
from engine.write.plan import FilledLine

log = logging.getLogger(__name__)

SAMPLE_RATE = 48000
VIRTUAL_MIDI_IN = "Cypher clock in"
RECENT_TURNS = 4
STOP_RELEASE_S = 0.02  # what Cypher was saying fades out over this when the DAW stops
DEFAULT_SILENCE_ENDS_TURN_S = 1.5  # the vocal bus quiet this long after the opponent rapped ends the turn early
#                                    (longer than the pauses between lines; 0 turns it off)


class SilentBus:
    """A bus with nothing plugged in: every bar is silence of the bar's length at the current tempo."""

    def __init__(self, follower: ClockFollower, default_tempo_bpm: float, sample_rate: int) -> None:
        self._follower = follower
        self._tempo_bpm = default_tempo_bpm
        self._sample_rate = sample_rate

    def bar_audio(self, bar: int) -> np.ndarray | None:
        """Silence as long as one bar."""
        tempo = self._follower.tempo_bpm or self._tempo_bpm
        return np.zeros(bar_samples(tempo, self._sample_rate), dtype=np.float32)


class TypedLines:
    """Ears over the panel's typed opponent lines, a queue: each heard bar takes the oldest line not yet heard
    (lines typed before a turn starts wait for it); a bar with none waiting is heard as silence."""

    def __init__(self, state: EngineState) -> None:
        self._state = state
        self._heard = 0  # lines taken so far, counted like state.opponent_lines_total

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> list[HeardWord]:
        """The next typed line, its words spread over the bar."""
        lines = list(self._state.opponent_lines)
        total = self._state.opponent_lines_total
        if total < self._heard:  # the panel cleared the lines
            self._heard = total
        offset = self._heard - (total - len(lines))
        if offset < 0:  # more were typed than the panel keeps: skip to the oldest kept
            self._heard, offset = total - len(lines), 0
        if offset >= len(lines):
            return []
        self._heard += 1
        words = lines[offset].split()
        span_s = len(audio) / sample_rate
        return [HeardWord(w, i * span_s / len(words), (i + 1) * span_s / len(words), 1.0)
                for i, w in enumerate(words)]


@dataclass
class LiveParts:
    """What a live session runs on: built by the CLI from real ports, by tests from real test ports."""

    midi: MidiEventSource
    server: OscServer
    replies: Replies
    sink: Sink
    writer: LineWriting  # engine.worker.LineWorker in a set: the models run in their own process
    router: ControlRouter | None = None
    capture: JackCapture | None = None  # the beat and vocal buses, when plugged in (--beat-in, --vocal-in)
    hearing: Ears | None = None  # speech recognition for the vocal bus (the worker's)
    beat_clock: BeatBusClock | None = None  # audio-only mode: the beat bus drives the timeline (--no-clock)


class TypedFirst:
    """Ears that take the panel's typed line when one is waiting (typed text overrides), else recognise speech."""

    def __init__(self, typed: TypedLines, hearing: Ears) -> None:
        self.typed = typed
        self.hearing = hearing
        self._failed = False

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> list[HeardWord]:
        """The typed line, or the words recognised in the bar (none, said once in the log, if recognition fails)."""
        words = self.typed.transcribe(audio, sample_rate)
        if words:
            return words
        try:
            return self.hearing.transcribe(audio, sample_rate)
        except CypherError as exc:
            if not self._failed:
                log.error("speech recognition failed, answering typed lines only: %s", exc)
                self._failed = True
            return []


class LiveSession:
    """Follows the clock, keeps the turns, answers on the bar line; `run()` until `stop` is set."""

    def __init__(self, parts: LiveParts, state: EngineState, events: "queue.Queue", commands: "queue.Queue",
                 sample_rate: int = SAMPLE_RATE, silence_ends_turn_s: float = DEFAULT_SILENCE_ENDS_TURN_S,
                 presets_dir: Path = PRESETS_DIR) -> None:
        self.parts = parts
        self.state = state
        self.styles = StyleBook(presets_dir, on_error=lambda _name, message: parts.replies.error(
            "/cypher/style/set", message))
        self.styles.get(state.style)  # the starting style's good version, kept should its file break mid-set
        self.events = events
        self.commands = commands
        # the beat bus's clock is made here and never loses a clock; its line steps when beats are re-placed
        self.follower = ClockFollower(count_lost=parts.beat_clock is None)
        self.sample_rate = sample_rate
        self.control = ControlLoop(state, commands, parts.replies, clock=lambda: ClockStatus.of(self.follower),
                                   on_style=self._switch_style, on_answer=self._answer_now)
        self.timeline = Timeline(events, self.follower, self._on_bar,
                                 self._on_control if parts.router is not None else None, on_stop=self._on_stop)
        self.turn: AnswerTurn | None = None
        self.recent_turns: deque[AnswerTurn] = deque(maxlen=RECENT_TURNS)  # the last exchanges, oldest first
        typed = TypedLines(state)
        self.ears: Ears = typed if parts.hearing is None or parts.capture is None else TypedFirst(typed, parts.hearing)
        self.turns_started = 0
        self.style_switches = 0
        self._last_turn = "idle"
        self._bar = -1  # the bar now playing (the last bar line announced)
        capture = parts.capture
        self.beat_watch = (BeatBusWatch(CaptureBus(capture, "beat", self.follower), self.follower, sample_rate,
                                        report=self.control.publish_drift)
                           if capture is not None and "beat" in capture.rings and parts.beat_clock is None else None)
        self._style_playing = state.style
        self.early_ends = 0  # opponent turns ended before their bar count (silence, "answer now")
        self._last_voiced_bar: int | None = None  # the bar the opponent's voice ended in, when silence ended the turn
        self.turn_end = (VocalTurnEnd(capture.rings["vocal"], sample_rate, self._on_silence, silence_ends_turn_s)
                         if capture is not None and "vocal" in capture.rings and silence_ends_turn_s > 0 else None)

    def _on_control(self, event: object) -> None:
        """A controller message (timeline thread): a style switch is heard now, to land on the next bar line."""
        router = self.parts.router
        assert router is not None
        change = router.handle(event)
        if isinstance(change, StyleChange) and change.name in self.state.styles:
            self._switch_style(change.name)

    def _switch_style(self, name: str) -> None:
        """Play `name` from the next bar line on: the turn fades the old style out there and makes the answer bars
        from there on again in the new one. A preset that does not load leaves the old style playing."""
        if name == self._style_playing:
            return
        try:
            style = self.styles.get(name)
        except CypherError as exc:
            log.error("style %s not switched, %s keeps playing: %s", name, self._style_playing, exc)
            self.parts.replies.error("/cypher/style/set", f"{name} not switched: {exc}")
            self.state.style = self._style_playing
            return
        self.state.style = self._style_playing = name
        self.style_switches += 1
        turn = self.turn
        if turn is not None:
            turn.restyle(style, self._bar + 1)

    def bar_time_s(self, bar: int) -> float:
        """The host time the clock follower now predicts for bar `bar`'s line (ClockError while it cannot say)."""
        return self.follower.predict_time_s(bar * TICKS_PER_BAR)

    def _on_bar(self, bar: int, time_s: float) -> None:
        self._bar = bar
        if self.beat_watch is not None:
            self.beat_watch.on_bar(bar)
        router = self.parts.router
        if router is not None:
            self._apply_controls(router)
        self.control.on_bar(bar, time_s)
        state = self.state
        turn = self.turn
        if (state.turn == "ours" and self._last_turn == "opponent" and turn is not None
                and bar < turn.answer_bar):  # "answer now" applied on this bar line: the first bar is late
            turn.answer_from(bar)
        if state.turn == "opponent" and self._last_turn != "opponent":
            self._start_turn(bar)
        self._last_turn = state.turn
        if self.turn is not None:
            self.turn.on_bar(bar, time_s)

    def _on_stop(self, time_s: float) -> None:
        """The DAW stopped (timeline thread): Cypher stops with it. What it was saying fades out now, nothing more
        is made or placed, the lines written so far stay (report, panel), and the next Start begins a new exchange."""
        self.parts.sink.cut_from(time.monotonic(), STOP_RELEASE_S)
        if self.turn is not None:
            self.turn.stop()
        self.control.transport_stopped()
        self._last_turn = "idle"
        log.info("transport stopped: the answer stops with it")

    def _apply_controls(self, router: ControlRouter) -> None:
        """Controller moves take effect on the bar line; an armed MIDI learn goes to the router."""
        state = self.state
        if state.learn_target is not None and router.armed is None:
            router.arm(state.learn_target)
            state.learn_target = None
        for change in router.bar_line():
            if isinstance(change, StyleChange) and change.name in state.styles:
                self._switch_style(change.name)  # already heard when it came; this is a no-op then
                if self._style_playing == change.name:
                    router.use_style(self.styles.get(change.name))
            elif isinstance(change, ParamChange) and change.name in state.params:
                state.params[change.name] = change.value

    def _start_turn(self, bar: int) -> None:
        """A new exchange: the opponent's bars start now; the answer follows on the bar line after them."""
        if self.turn is not None:
            self.turn.close(timeout_s=0.1)
        state = self.state
        try:
            style = self.styles.get(state.style)
        except CypherError as exc:
            log.error("cannot start the turn: %s", exc)
            return
        bars = min(state.opponent_bars, state.our_bars)
        turn = AnswerTurn(
            style, bars, bar, self.follower,
            # the beat bus is followed by beat_watch, off the timeline's thread
            vocal_bus=self._vocal_bus(style), beat_bus=None,
            transcriber=self.ears, writer=self.parts.writer, sink=self.parts.sink, sample_rate=self.sample_rate,
            seed=self.turns_started, on_line=self._publish_line,
            turn_id=self.turns_started, knobs=self._knobs,
        )
        self.turn = turn
        if self.turn_end is not None:
            self.turn_end.reset()
        self.recent_turns.append(turn)
        self.turns_started += 1
        log.info("turn %d: the opponent raps bars %d-%d in %s", self.turns_started, bar + 1, bar + bars,
                 style.display_name)

    def _knobs(self) -> Knobs:
        """The performance knobs as set now (the panel and the controllers keep them within 0..1)."""
        try:
            return Knobs.of(self.state.params)
        except CypherError as exc:
            log.error("knobs ignored, the preset plays as written: %s", exc)
            return Knobs()

    def _answer_now(self) -> None:
        """"Answer now" applied (the control thread): the turn ends on the next bar line, so the lines already made
        move there now, ahead of it (the bar line's own check, in `_on_bar`, catches one applied on the line)."""
        turn = self.turn
        last_voiced, self._last_voiced_bar = self._last_voiced_bar, None
        if turn is not None and self.state.turn == "opponent":
            self.early_ends += 1
            turn.answer_from(self._bar + 1, last_voiced)

    def _on_silence(self, end_s: float) -> None:
        """The vocal bus went quiet (the vocal watch's thread): the opponent's turn ends, the answer starts on the
        next bar line, as if the panel had said "answer now". Not before the turn's second bar: the answer's first
        line is written from the opponent's first bar, after it was heard."""
        turn = self.turn
        if self.state.turn != "opponent" or turn is None or self._bar < turn.first_bar + 1:
            return
        log.info("the opponent went quiet %.1f s ago: answering on the next bar line", time.monotonic() - end_s)
        self._last_voiced_bar = self._bar_at(end_s, turn.first_bar)
        self.commands.put(Command("/cypher/turn/answer", (), time.monotonic()))

    def _bar_at(self, time_s: float, earliest: int) -> int:
        """The bar (not before `earliest`) host time `time_s` fell in, by the clock's bar lines."""
        bar = max(self._bar, earliest)
        try:
            while bar > earliest and self.follower.predict_time_s(bar * TICKS_PER_BAR) > time_s:
                bar -= 1
        except CypherError:  # the clock stopped: the bar now playing
            pass
        return bar

    def _vocal_bus(self, style: Style) -> BusInput:
        capture = self.parts.capture
        if capture is not None and "vocal" in capture.rings:
            return CaptureBus(capture, "vocal", self.follower)
        return SilentBus(self.follower, style.tempo_bpm, self.sample_rate)

    def _publish_line(self, bar: int, index: int, line: FilledLine) -> None:
        self.control.publish_verse_line(bar + 1, index + 1, line.text)

    def run(self, stop: threading.Event) -> None:
        """Serve OSC and follow the clock until `stop` is set; then close the turn, ports and server."""
        self.parts.server.start()
        poller = threading.Thread(target=self.control.run, args=(stop,), name="cypher-osc", daemon=True)
        poller.start()
        if self.parts.beat_clock is not None:
            self.parts.beat_clock.start()
        try:
            self.timeline.run(stop)
        finally:
            if self.parts.beat_clock is not None:
                self.parts.beat_clock.close()
            if self.turn is not None:
                self.turn.close(timeout_s=5.0)
            if self.beat_watch is not None:
                self.beat_watch.close()
            if self.turn_end is not None:
                self.turn_end.close()
            poller.join(1.0)
            self.parts.server.close()
            self.parts.midi.close()
