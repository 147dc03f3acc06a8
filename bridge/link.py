"""Ableton Link as a clock source, and a watch on the MIDI clock against it.

`LinkClock` joins a Link session through the `aalink` package. aalink needs a running asyncio loop when a
`Link` is made, so the clock runs one on its own thread and only that thread creates and closes the session;
reads (`beat`, `tempo`, `num_peers`) are thread-safe in Link and happen from the caller's thread. It offers
the interface the timeline uses (`ClockSource`: tempo, position, transport, the predicted host time of any
position), with Link's beat 0 as position 0 and the session's quantum (4 beats) as the bar.

Link reports beats against its own clock; Cypher's times are `time.monotonic()`. A snapshot reads the beat
between two monotonic reads and stamps it with their midpoint, so no clock offset needs calibrating.

`DriftMonitor` (pure) compares the MIDI follower with a Link snapshot: when both run, Link leads, and a
MIDI clock whose beats land more than `threshold_ms` away from Link's (modulo the bar) is named in one
warning at most every `interval_s`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.clock import MAX_TEMPO_BPM, MIN_TEMPO_BPM, ClockFollower, ClockSource, Transport
from engine.errors import BackendMissingError, ClockError
from engine.timebase import BEATS_PER_BAR, PPQN

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LinkSnapshot:
    """Link's session at one host instant: `beat` at `time_s` (monotonic seconds), tempo and peers."""

    tempo_bpm: float
    beat: float
    time_s: float
    num_peers: int
    playing: bool

    def beat_at(self, time_s: float) -> float:
        """The session's beat at a host time, from this snapshot's tempo."""
        return self.beat + (time_s - self.time_s) * self.tempo_bpm / 60.0

    def time_of_beat(self, beat: float) -> float:
        """The host time at which the session reaches `beat`."""
        return self.time_s + (beat - self.beat) * 60.0 / self.tempo_bpm


def wrap_beats(beats: float, quantum: float = BEATS_PER_BAR) -> float:
    """A beat difference folded into [-quantum/2, quantum/2)."""
    return (beats + quantum / 2.0) % quantum - quantum / 2.0


def midi_offset_ms(snapshot: LinkSnapshot, midi_position_ticks: int, midi_time_s: float,
                   quantum: float = BEATS_PER_BAR) -> float:
    """How late (ms, positive) the MIDI clock's `midi_position_ticks`, due at `midi_time_s`, is against Link.

    Positions are compared modulo the bar, since Link's beat count and the song position start apart.
    """
    ahead_beats = wrap_beats(snapshot.beat_at(midi_time_s) - midi_position_ticks / PPQN, quantum)
    return ahead_beats * 60_000.0 / snapshot.tempo_bpm


class DriftMonitor:
    """Compares the MIDI follower with Link; warns (rate-limited) when their beats are `threshold_ms` apart."""

    def __init__(self, *, threshold_ms: float = 5.0, interval_s: float = 10.0,
                 quantum: float = BEATS_PER_BAR) -> None:
        if threshold_ms <= 0 or interval_s < 0:
            raise ClockError("the drift threshold must be above 0 ms and the warning interval not negative")
        self._threshold_ms = threshold_ms
        self._interval_s = interval_s
        self._quantum = quantum
        self._last_warning_s: float | None = None
        self.last_offset_ms: float | None = None
        self.warnings = 0
        self.suppressed = 0

    def check(self, snapshot: LinkSnapshot, follower: ClockFollower) -> float | None:
        """The MIDI clock's offset from Link in ms at the follower's next beat (None without both clocks)."""
        if follower.tempo_bpm is None or follower.transport != "playing":
            return None
        next_beat_ticks = (follower.position_ticks // PPQN + 1) * PPQN
        midi_time_s = follower.predict_time_s(next_beat_ticks)
        offset_ms = midi_offset_ms(snapshot, next_beat_ticks, midi_time_s, self._quantum)
        self.last_offset_ms = offset_ms
        if abs(offset_ms) > self._threshold_ms:
            self._warn(offset_ms, snapshot, follower.tempo_bpm, midi_time_s)
        return offset_ms

    def _warn(self, offset_ms: float, snapshot: LinkSnapshot, midi_tempo_bpm: float, now_s: float) -> None:
        if self._last_warning_s is not None and now_s - self._last_warning_s < self._interval_s:
            self.suppressed += 1
            return
        self._last_warning_s = now_s
        self.warnings += 1
        side = "behind" if offset_ms > 0 else "ahead of"
        logger.warning(
            "MIDI clock is %.1f ms %s Link (MIDI %.2f BPM, Link %.2f BPM); following Link. Set the DAW's MIDI "
            "clock sync delay to compensate%s",
            abs(offset_ms), side, midi_tempo_bpm, snapshot.tempo_bpm,
            f" ({self.suppressed} more warnings suppressed)" if self.suppressed else "",
        )
        self.suppressed = 0


class LinkClock:
    """A Link session member on its own asyncio thread; a `ClockSource` whose position 0 is Link's beat 0.

    `start_stop_sync`: follow Link's shared play state as the transport (else Link's timeline always plays).
    """

    def __init__(self, tempo_bpm: float = 120.0, *, quantum: float = BEATS_PER_BAR,
                 start_stop_sync: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        if not MIN_TEMPO_BPM <= tempo_bpm <= MAX_TEMPO_BPM:
            raise ClockError(f"Link tempo {tempo_bpm} BPM is outside {MIN_TEMPO_BPM:g}-{MAX_TEMPO_BPM:g} BPM")
        try:
            import aalink
        except ImportError as err:
            raise BackendMissingError(f"Ableton Link needs the aalink package ({err}): pip install aalink") from err
        self._clock = clock
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cypher-link", daemon=True)
        self._thread.start()
        self._link: Any = self._call(self._make, aalink.Link, tempo_bpm, quantum, start_stop_sync)
        self._start_stop_sync = start_stop_sync

    @staticmethod
    def _make(factory: Any, tempo_bpm: float, quantum: float, start_stop_sync: bool) -> Any:
        link = factory(tempo_bpm)
        link.quantum = quantum
        link.start_stop_sync_enabled = start_stop_sync
        link.enabled = True
        return link

    def _leave(self) -> None:
        """On the Link thread: leave the session and drop the last reference to it there."""
        link, self._link = self._link, None
        link.enabled = False

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run `function(*args)` on the Link thread and return its result."""
        async def run() -> Any:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(START_TIMEOUT_S)

    def snapshot(self) -> LinkSnapshot:
        """The session now: the beat read between two monotonic reads, stamped with their midpoint."""
        link = self._link
        before_s = self._clock()
        beat = float(link.beat)
        after_s = self._clock()
        return LinkSnapshot(float(link.tempo), beat, (before_s + after_s) / 2.0, int(link.num_peers),
                            bool(link.playing))

    @property
    def num_peers(self) -> int:
        """Other Link peers in the session."""
        return int(self._link.num_peers)

    @property
    def tempo_bpm(self) -> float:
        """The session tempo."""
        return float(self._link.tempo)

    def set_tempo(self, tempo_bpm: float) -> None:
        """Propose a tempo to the session (all peers follow)."""
        if not MIN_TEMPO_BPM <= tempo_bpm <= MAX_TEMPO_BPM:
            raise ClockError(f"Link tempo {tempo_bpm} BPM is outside {MIN_TEMPO_BPM:g}-{MAX_TEMPO_BPM:g} BPM")
        self._call(setattr, self._link, "tempo", float(tempo_bpm))

    @property
    def transport(self) -> Transport:
        """"playing", or with start/stop sync, the session's shared play state."""
        return "playing" if not self._start_stop_sync or self._link.playing else "stopped"

    @property
    def position_ticks(self) -> int:
        """The session's beat now, in ticks."""
        return math.floor(self.snapshot().beat * PPQN)

    def predict_time_s(self, position_ticks: int) -> float:
        """The host time (monotonic seconds) at which the session reaches `position_ticks`."""
        return self.snapshot().time_of_beat(position_ticks / PPQN)

    def close(self) -> None:
        """Leave the session and stop the Link thread."""
        if not self._thread.is_alive():
            return
        self._call(self._leave)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT_S)
        self._loop.close()

    def __enter__(self) -> LinkClock:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def leading_clock(link: LinkClock | None, follower: ClockFollower) -> ClockSource:
    """The clock to follow: Link when its session has peers (Link leads), else the MIDI clock."""
    return link if link is not None and link.num_peers > 0 else follower
