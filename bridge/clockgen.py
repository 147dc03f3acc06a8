"""Send a MIDI clock: Start, then 24 clocks per quarter note at a tempo with known, seeded timing jitter.

The offline render drives the engine with this sender through a real mido port (JACK or the in-process
loopback), and compares what the follower reads against the sender's ideal tick times.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import mido
import numpy as np

from bridge.clock import MAX_TEMPO_BPM, MIN_TEMPO_BPM, clock_period_s
from engine.errors import ClockError

logger = logging.getLogger(__name__)

SPIN_S = 0.002
"""The last stretch before a deadline is spent polling the clock (yielding the GIL) instead of sleeping."""
CHUNK_CLOCKS = 96
"""Deadlines are drawn a bar at a time."""


def jittered_tick_times_s(
    start_s: float, tempo_bpm: float, count: int, jitter_rms_s: float, rng: np.random.Generator
) -> np.ndarray:
    """Times of `count` clocks from `start_s` at `tempo_bpm`, each displaced by Gaussian jitter (RMS seconds)."""
    ideal_s = start_s + np.arange(count) * clock_period_s(tempo_bpm)
    return ideal_s + rng.normal(0.0, jitter_rms_s, count) if jitter_rms_s > 0 else ideal_s


def sleep_until(deadline_s: float, clock: Callable[[], float] = time.monotonic) -> None:
    """Sleep until `clock()` reaches the deadline: a coarse sleep, then a short spin that yields the GIL."""
    while (remaining_s := deadline_s - clock()) > SPIN_S:
        time.sleep(remaining_s - SPIN_S)
    while clock() < deadline_s:
        time.sleep(0)


class ClockSender:
    """Sends MIDI Start and clocks through a mido output port from a thread until `stop()`.

    Clock n is due at `ideal_time_s(n)` plus seeded Gaussian jitter (`jitter_rms_s`); the first clock is
    due `lead_s` after `start()`, the Start message goes out right away. `sent_times_s` records when
    each clock was actually handed to the port (monotonic seconds).
    """

    def __init__(
        self,
        port: mido.ports.BaseOutput,
        tempo_bpm: float,
        *,
        jitter_rms_s: float = 0.0,
        seed: int = 0,
        lead_s: float = 0.05,
        max_clocks: int | None = None,
    ) -> None:
        if not MIN_TEMPO_BPM <= tempo_bpm <= MAX_TEMPO_BPM:
            raise ClockError(f"tempo {tempo_bpm} BPM is outside {MIN_TEMPO_BPM:g}-{MAX_TEMPO_BPM:g} BPM")
        if jitter_rms_s < 0 or lead_s < 0:
            raise ClockError("jitter_rms_s and lead_s must not be negative")
        self._port = port
        self.tempo_bpm = tempo_bpm
        self.jitter_rms_s = jitter_rms_s
        self._rng = np.random.default_rng(seed)
        self._lead_s = lead_s
        self._max_clocks = max_clocks
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.start_time_s: float | None = None
        self.sent_times_s: list[float] = []

    def ideal_time_s(self, clock_index: int) -> float:
        """The ideal (jitter-free) send time of clock `clock_index` (0 = the first clock after Start)."""
        if self.start_time_s is None:
            raise ClockError("the sender has not started: call start() first")
        return self.start_time_s + clock_index * clock_period_s(self.tempo_bpm)

    @property
    def sent_clocks(self) -> int:
        """Clocks sent so far."""
        return len(self.sent_times_s)

    def start(self) -> None:
        """Send MIDI Start now and clocks from a thread, the first one `lead_s` later."""
        if self._thread is not None:
            raise ClockError("this sender already ran: make a new ClockSender")
        self.start_time_s = time.monotonic() + self._lead_s
        self._port.send(mido.Message("start"))
        self._thread = threading.Thread(target=self._run, name="cypher-clock-sender", daemon=True)
        self._thread.start()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for `max_clocks` clocks to be sent; True when they were."""
        return self._done.wait(timeout_s)

    def stop(self) -> None:
        """Stop sending, send MIDI Stop, and join the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._port.send(mido.Message("stop"))

    def __enter__(self) -> ClockSender:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        assert self.start_time_s is not None
        clock = mido.Message("clock")
        index = 0
        while not self._stop.is_set() and (self._max_clocks is None or index < self._max_clocks):
            if index % CHUNK_CLOCKS == 0:
                deadlines_s = jittered_tick_times_s(
                    self.ideal_time_s(index), self.tempo_bpm, CHUNK_CLOCKS, self.jitter_rms_s, self._rng
                )
            sleep_until(float(deadlines_s[index % CHUNK_CLOCKS]))
            self.sent_times_s.append(time.monotonic())
            self._port.send(clock)
            index += 1
        self._done.set()
        logger.debug("clock sender sent %d clocks", index)
