"""Turn logic: the opponent raps for N bars, Cypher answers for N bars starting on the next bar line.

On every bar line of the opponent's turn, the bar just heard goes to a worker thread that transcribes it and
hands the matching answer line to a `LineWriting` (`engine.line`: plan, fill, speak on the grid, effects; in a live
set it runs in its own process), then submits the audio to the sink, stamped with the host time its bar line is
predicted for. Writing runs while the opponent is still rapping.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bridge.clock import ClockFollower
from engine.errors import CypherError
from engine.line import LineAudio, LineJob
from engine.listen.beat import BeatTracker
from engine.listen.vocal import HeardWord
from engine.perform import Knobs
from engine.presets import Style
from engine.timebase import TICKS_PER_BAR
from engine.write.plan import FilledLine

log = logging.getLogger(__name__)

PRE_ROLL_S = 0.3  # heard before each bar line, so the first word of a line is not cut
STYLE_RELEASE_S = 0.08  # after a style switch's bar line, the old style's sound fades out over this long


class Ears(Protocol):
    """What hears the opponent: speech recognition, or typed text."""

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> list[HeardWord]:
        """The words in one heard bar."""
        ...


class BusInput(Protocol):
    """Audio of a bus, bar by bar, as the DAW played it (offline: a rendered array; live: an input ring)."""

    def bar_audio(self, bar: int) -> np.ndarray | None:
        """The samples of bar `bar`, or None if there are none."""
        ...


@dataclass(frozen=True)
class BarRender:
    """One answer bar, ready to play: audio whose sample `lead_samples` belongs on the bar line at `start_time_s`
    (host clock, as the follower predicts it)."""

    bar: int
    start_time_s: float
    audio: np.ndarray
    lead_samples: int
    line: FilledLine
    planned_onsets_s: tuple[float, ...]
    vowel_onsets_s: tuple[float, ...]
    ready_time_s: float


class LineWriting(Protocol):
    """What makes an answer line's audio: `engine.line.LineWriter` in a thread, or `engine.worker.LineWorker`."""

    def write(self, job: LineJob) -> LineAudio:
        """The line for `job`; CypherError when it cannot be made."""
        ...


class Sink(Protocol):
    """Where bar renders go: the offline collector or the live ring buffer."""

    def submit(self, render: BarRender) -> None:
        """Place one bar render."""
        ...

    def cut_from(self, time_s: float, release_s: float) -> None:
        """Fade everything submitted so far to silence from host time `time_s` over `release_s`, nothing after."""
        ...


@dataclass
class TurnReport:
    """What happened in one exchange, for the report."""

    heard: list[list[HeardWord]] = field(default_factory=list)
    lines: list[FilledLine] = field(default_factory=list)
    renders: list[BarRender] = field(default_factory=list)
    cue_time_s: float | None = None
    fallback_lines: int = 0
    stage_s: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add_stage(self, name: str, seconds: float) -> None:
        """Record how long one stage of one bar took."""
        self.stage_s.setdefault(name, []).append(seconds)


class AnswerTurn:
    """One battle exchange: `opponent_start_bar` .. +`bars` heard, then `bars` answered."""

    def __init__(
        self,
        style: Style,
        bars: int,
        opponent_start_bar: int,
        follower: ClockFollower,
        vocal_bus: BusInput,
        beat_bus: BusInput | None,
        transcriber: Ears,
        writer: LineWriting,
        sink: Sink,
        sample_rate: int,
        seed: int = 0,
        on_line: Callable[[int, int, FilledLine], None] | None = None,
        turn_id: int = 0,
        knobs: Callable[[], Knobs] = Knobs,
    ) -> None:
        self.style = style
        self.bars = bars
        self.first_bar = opponent_start_bar
        self.answer_bar = opponent_start_bar + bars
        self.follower = follower
        self.vocal_bus = vocal_bus
        self.beat_bus = beat_bus
        self.transcriber = transcriber
        self.writer = writer
        self.sink = sink
        self.sample_rate = sample_rate
        self.seed = seed
        self.on_line = on_line
        self.turn_id = turn_id
        self.knobs = knobs  # read as each line is written: a knob moved while the opponent raps shapes what follows
        self.beat_tracker = BeatTracker(sample_rate, reference_bpm=style.tempo_bpm)
        self.heard_lines: list[str] = []
        self.heard_bars = bars  # the opponent's bars listened to: fewer when the turn ends early (answer_from)
        self._queued_heard = 0  # heard bars given to the worker so far
        self._rest_queued = False  # after an early end: the lines with no heard bar of their own, given too
        self.report = TurnReport()
        self.done = threading.Event()
        self.restyles = 0
        self.stopped = False
        self._style_from_bar = opponent_start_bar
        self._lock = threading.Lock()  # the style, the renders and the sink's cuts, between the switch and the worker
        self._jobs: "queue.Queue[tuple[int, bool] | None]" = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="cypher-writer", daemon=True)
        self._worker.start()

    def on_bar(self, bar: int, time_s: float) -> None:
        """Called by the timeline on each bar line: bar `bar` starts now, so bar `bar - 1` was just heard."""
        if self.stopped:
            return
        beat = self.beat_bus.bar_audio(bar - 1) if self.beat_bus is not None and bar > 0 else None
        if beat is not None:
            self.beat_tracker.push(beat)
        heard = bar - 1 - self.first_bar
        with self._lock:
            if 0 <= heard < self.heard_bars:
                self._jobs.put((heard, False))
                self._queued_heard = heard + 1
                self._queue_rest()
        if bar == self.answer_bar:
            self.report.cue_time_s = time_s
        if bar >= self.answer_bar + self.bars:
            self._jobs.put(None)

    def restyle(self, style: Style, from_bar: int) -> None:
        """Switch to `style` from bar `from_bar`'s line on: the old style's sound (bars already placed, effect tails)
        fades out there over STYLE_RELEASE_S, and answer lines for that bar and later that were already made, or
        are being made, are made again in the new style."""
        with self._lock:
            self.style = style
            self._style_from_bar = from_bar
            self.restyles += 1
            redo = sorted({r.bar - self.answer_bar for r in self.report.renders if r.bar >= from_bar})
            self.report.renders = [r for r in self.report.renders if r.bar < from_bar]
            self.report.lines = [ln for ln in self.report.lines if self.answer_bar + ln.plan.bar < from_bar]
            bar_time_s = self._bar_time_s(from_bar)
            if bar_time_s == bar_time_s:  # not NaN: the clock can place the cut
                self.sink.cut_from(bar_time_s, STYLE_RELEASE_S)
        for index in redo:
            self._jobs.put((index, True))
        log.info("style %s from bar %d; %d answer bars made again", style.display_name, from_bar + 1, len(redo))

    def answer_from(self, bar: int, last_voiced_bar: int | None = None) -> None:
        """The opponent's turn ended early (silence on the vocal bus, or "answer now"): answer from bar `bar`'s line
        on (call it before that line). Bars from `bar` on, and after `last_voiced_bar` when it is known, are not
        listened to; the answer's lines with no heard bar of their own answer the verse heard so far; lines already
        made move to their new bars (their old places are cut) and are announced again."""
        with self._lock:
            if not self.first_bar < bar < self.answer_bar:
                return
            shift = self.answer_bar - bar
            heard_until = bar if last_voiced_bar is None else min(bar, last_voiced_bar + 1)
            self.heard_bars = max(1, heard_until - self.first_bar, self._queued_heard)
            self.answer_bar = bar
            self._queue_rest()
            cut_s = self._bar_time_s(bar)
            if cut_s == cut_s:  # not NaN
                self.sink.cut_from(cut_s, 0.0)
            moved = [dataclasses.replace(r, bar=r.bar - shift, start_time_s=self._bar_time_s(r.bar - shift))
                     for r in self.report.renders]
            self.report.renders = moved
            for render in moved:
                self.sink.submit(render)
        if self.on_line is not None:
            for render in moved:
                self.on_line(render.bar, render.bar - bar, render.line)
        log.info("the opponent's turn ended after %d bars: answering from bar %d", self.heard_bars, bar + 1)

    def stop(self) -> None:
        """The transport stopped: make and place nothing more (the lines written so far stay in the report)."""
        with self._lock:
            self.stopped = True
        self._jobs.put(None)

    def _queue_rest(self) -> None:
        """Once every heard bar is with the worker, give it the lines no heard bar was left for (an early end).
        Called with the lock held."""
        if not self._rest_queued and self._queued_heard >= self.heard_bars and self.heard_bars < self.bars:
            self._rest_queued = True
            for index in range(self.heard_bars, self.bars):
                self._jobs.put((index, False))

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the worker once it has finished what it has."""
        self._jobs.put(None)
        self._worker.join(timeout_s)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                break
            index, again = job
            try:
                self._answer_line(index, again)
            except CypherError as exc:
                log.error("bar %d of the answer failed: %s", index + 1, exc)
                self.report.errors.append(f"bar {index + 1}: {exc}")
        self.done.set()

    def _heard_audio(self, bar: int) -> np.ndarray | None:
        """A heard bar with the end of the bar before it: a line's first consonant starts before its bar line."""
        audio = self.vocal_bus.bar_audio(bar)
        before = self.vocal_bus.bar_audio(bar - 1)
        if audio is None or before is None:
            return audio
        return np.concatenate([before[-int(PRE_ROLL_S * self.sample_rate):], audio])

    def _bar_time_s(self, bar: int) -> float:
        """The host time predicted for bar `bar`'s line; NaN while the clock cannot say."""
        try:
            return self.follower.predict_time_s(bar * TICKS_PER_BAR)
        except CypherError:
            return float("nan")

    def _answer_line(self, index: int, again: bool = False) -> None:
        """Hear bar `index` of the opponent's turn and make the answer's line; `again`: make it again (a switch)."""
        t0 = time.monotonic()
        if not again and index < self.heard_bars:
            audio = self._heard_audio(self.first_bar + index)
            words = self.transcriber.transcribe(audio, self.sample_rate) if audio is not None else []
            self.report.heard.append(words)
            self.heard_lines.append(" ".join(w.text for w in words))
            self.report.add_stage("listen_s", time.monotonic() - t0)

        bar = self.answer_bar + index
        tempo = self.follower.tempo_bpm or self.style.tempo_bpm
        with self._lock:
            style, restyles = self.style, self.restyles
        job = LineJob(self.turn_id, index, style, tuple(self.heard_lines[: index + 1]), tempo, self._bar_time_s(bar),
                      self.seed, self.knobs())
        made = self.writer.write(job)
        for name, seconds in made.stage_s.items():
            self.report.add_stage(name, seconds)
        self.report.add_stage("total_s", time.monotonic() - t0)
        if made.fell_back:
            self.report.fallback_lines += 1

        with self._lock:
            if self.stopped:  # the transport stopped while this line was made: it is kept, not played
                self.report.lines.append(made.line)
                return
            bar = self.answer_bar + index  # where the answer is now: an early end may have moved it
            if restyles != self.restyles and bar >= self._style_from_bar:
                self._jobs.put((index, True))  # the style switched while this line was made: make it again
                return
            render = BarRender(
                bar=bar,
                start_time_s=self.follower.predict_time_s(bar * TICKS_PER_BAR),
                audio=made.audio,
                lead_samples=made.lead_samples,
                line=made.line,
                planned_onsets_s=made.planned_onsets_s,
                vowel_onsets_s=made.vowel_onsets_s,
                ready_time_s=time.monotonic(),
            )
            self.sink.submit(render)
            self.report.renders.append(render)
            self.report.lines.append(made.line)
            if again:  # a line made again goes back in its place
                self.report.renders.sort(key=lambda r: r.bar)
                self.report.lines.sort(key=lambda ln: ln.plan.bar)
        if self.on_line is not None:
            self.on_line(bar, index, made.line)
        log.info("bar %d ready %.2f s after its bar was heard: %s", index + 1, time.monotonic() - t0, made.line.text)
