"""The beat bus followed bar by bar against the MIDI clock: the hit nearest each of the clock's beats is found
in the bar's audio (its attack: the fastest level rise), compared with the clock's beats (`DriftWatch`), and the
verdict reported when it changes, so the panel can tell the producer what to set.

The clock already says where the beats should be, so the bus is searched only around them: aubio's own beat
tracker, tried first, put this repo's boom bap kit's beats 20-40 ms early except on the downbeat, too coarse for
a 10 ms verdict; the attacks sit within a millisecond. Runs off the timeline's thread: `on_bar` only queues the
bar; a worker thread reads the bar's audio and calls `report(offset_ms, advice)` when the advice changes
(`IN_TIME` when the drift is gone).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

import numpy as np

from bridge.addresses import IN_TIME
from bridge.clock import ClockFollower
from engine.errors import CypherError
from engine.listen.beat import attack_near
from engine.listen.drift import DriftWatch
from engine.timebase import PPQN, TICKS_PER_BAR
from engine.turn import BusInput

log = logging.getLogger(__name__)

SEARCH_S = 0.08  # how far from each clock beat a hit is looked for (at most a quarter of the beat)


class BeatBusWatch:
    """Compares the beat bus with the clock bar by bar; the bar before keeps a tail, so a hit on the bar line is
    seen whole (a gap in the bars, the transport stopped, drops it)."""

    def __init__(self, bus: BusInput, follower: ClockFollower, sample_rate: int,
                 report: Callable[[float, str], None], threshold_ms: float = 10.0) -> None:
        self.bus = bus
        self.follower = follower
        self.sample_rate = sample_rate
        self.report = report
        self.watch = DriftWatch(threshold_ms=threshold_ms)
        self.advice = IN_TIME
        self.bars_heard = 0
        self._tail = np.zeros(0, dtype=np.float32)  # the end of the bar before, when it was the bar before
        self._next_bar = -1
        self._bars: queue.Queue[int | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="cypher-beat-bus", daemon=True)
        self._thread.start()

    def on_bar(self, bar: int) -> None:
        """A bar line (timeline thread): the bar before it can be heard."""
        if bar > 0:
            self._bars.put(bar - 1)

    def close(self) -> None:
        """Stop the worker thread."""
        self._bars.put(None)
        self._thread.join(2.0)

    def _run(self) -> None:
        while (bar := self._bars.get()) is not None:
            try:
                self.hear(bar)
            except CypherError as exc:
                log.warning("beat bus bar %d not followed: %s", bar + 1, exc)

    def hear(self, bar: int) -> None:
        """Find the hits at the clock's beats of one heard bar and compare them with the clock."""
        audio = self.bus.bar_audio(bar)
        tempo = self.follower.tempo_bpm
        if audio is None or tempo is None:
            self._next_bar = -1
            return
        tail = self._tail if bar == self._next_bar else np.zeros(0, dtype=np.float32)
        history = np.concatenate([tail, audio])
        clock_s = [self.follower.predict_time_s(bar * TICKS_PER_BAR + k * PPQN) for k in range(4)]
        bar_s = clock_s[0]
        window = round(min(SEARCH_S, 15.0 / tempo) * self.sample_rate)
        heard_s = []
        for beat_s in clock_s:
            at = attack_near(history, -len(tail), self.sample_rate, round((beat_s - bar_s) * self.sample_rate),
                             window)
            if at is not None:
                heard_s.append(bar_s + at / self.sample_rate)
        self._tail = audio[-2 * window:].copy()
        self._next_bar = bar + 1
        self.watch.push_clock_beats(clock_s)
        self.watch.push_beats(heard_s)
        self.bars_heard += 1
        advice = self.watch.warning() or IN_TIME
        if advice != self.advice:
            self.advice = advice
            offset = self.watch.offset_ms
            self.report(0.0 if offset is None else offset, advice)
            if advice == IN_TIME:
                log.info("the beat bus and the MIDI clock agree again")
            else:
                log.warning("%s", advice)
