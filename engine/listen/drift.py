"""Beat bus against MIDI clock: how far the beats heard in the audio sit from where the clock puts them.

Pure logic over times in seconds on one clock (the caller maps the beat bus's stream samples to host time, input
latency included, and asks the clock follower where each beat falls). Each heard beat is matched to the nearest
clock beat within `max_offset_ms` (and within a third of the beat period); the offset is the median of
heard - clock over the last `window_beats` matches, so a beat the tracker put on an off-beat or a missed hit does
not move it. Positive offset: the audio is late against the clock.

Sign of the advice: Live's MIDI Clock Sync Delay (Settings > Link, Tempo & MIDI, on the output port that sends
Cypher its clock) delays the clock it sends by a positive value and sends it early by a negative one. Audio heard
20 ms after the clock's beat means the clock runs 20 ms ahead: raise that delay by 20 ms.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np

from engine.errors import CypherError

MAX_CLOCK_BEATS = 512
MAX_WAITING_BEATS = 64
MIN_BEAT_GAP_S = 0.1  # 600 BPM


class DriftWatch:
    """Compares the beat bus with the MIDI clock and warns when they disagree by more than `threshold_ms`.

    Push the clock's beat times (`push_clock_beats`, ahead of time is fine) and the beats heard on the beat bus
    (`push_beats`), both in host seconds. `offset_ms` is None until `min_matches` beats have matched; `locked`
    says the match is consistent (median absolute deviation within `max_spread_ms`), which noise or a beat with
    no clear pulse never is; `warning()` is a sentence for the producer, or None while in time.
    """

    def __init__(
        self,
        threshold_ms: float = 10.0,
        window_beats: int = 16,
        min_matches: int = 6,
        max_offset_ms: float = 80.0,
        max_spread_ms: float = 12.0,
    ) -> None:
        if not (threshold_ms > 0 and max_offset_ms > 0 and max_spread_ms > 0):
            raise CypherError(
                f"threshold_ms, max_offset_ms and max_spread_ms must be positive, got {threshold_ms}, "
                f"{max_offset_ms} and {max_spread_ms}"
            )
        if not 1 <= min_matches <= window_beats:
            raise CypherError(f"need 1 <= min_matches <= window_beats, got {min_matches} and {window_beats}")
        self.threshold_ms = threshold_ms
        self.min_matches = min_matches
        self.max_offset_ms = max_offset_ms
        self.max_spread_ms = max_spread_ms
        self._clock_s: deque[float] = deque(maxlen=MAX_CLOCK_BEATS)
        self._waiting_s: deque[float] = deque(maxlen=MAX_WAITING_BEATS)
        self._offsets_ms: deque[float] = deque(maxlen=window_beats)
        self._last_match_s: float | None = None

    def push_clock_beats(self, times_s: Iterable[float]) -> None:
        """Beat times the MIDI clock predicts (host seconds); heard beats waiting on them are matched.

        Predictions may be pushed again as they are refreshed: a time not at least MIN_BEAT_GAP_S after the last
        known clock beat is one already known, and is ignored.
        """
        for t in sorted(_checked(times_s, "clock beat")):
            if not self._clock_s or t >= self._clock_s[-1] + MIN_BEAT_GAP_S:
                self._clock_s.append(t)
        self._match_waiting()

    def push_beats(self, times_s: Iterable[float]) -> None:
        """Beat times heard on the beat bus (host seconds). A beat is matched once the clock beat after it is known."""
        self._waiting_s.extend(_checked(times_s, "heard beat"))
        self._match_waiting()

    def _match_waiting(self) -> None:
        still: deque[float] = deque(maxlen=MAX_WAITING_BEATS)
        clock = list(self._clock_s)
        for heard in self._waiting_s:
            i = bisect.bisect_left(clock, heard)
            if i >= len(clock):
                still.append(heard)  # the clock beat after it is not known yet
                continue
            nearest = min(clock[max(0, i - 1) : i + 1], key=lambda c: abs(heard - c))
            period_s = _period_near(clock, i)
            limit_ms = min(self.max_offset_ms, 1000.0 * period_s / 3.0) if period_s else self.max_offset_ms
            offset_ms = 1000.0 * (heard - nearest)
            if abs(offset_ms) <= limit_ms:
                self._offsets_ms.append(offset_ms)
                self._last_match_s = heard
        self._waiting_s = still

    @property
    def matches(self) -> int:
        """How many matched beats the estimate rests on (at most `window_beats`)."""
        return len(self._offsets_ms)

    @property
    def offset_ms(self) -> float | None:
        """Median of heard - clock over the recent matched beats, in ms; None before `min_matches` matches."""
        if len(self._offsets_ms) < self.min_matches:
            return None
        return float(np.median(self._offsets_ms))

    @property
    def spread_ms(self) -> float | None:
        """Median absolute deviation of the recent offsets, in ms; None before `min_matches` matches."""
        offset = self.offset_ms
        if offset is None:
            return None
        return float(np.median(np.abs(np.asarray(self._offsets_ms) - offset)))

    def locked(self, now_s: float | None = None, hold_s: float = 4.0) -> bool:
        """True when enough beats match the clock consistently (and, given `now_s`, one did within `hold_s`)."""
        spread = self.spread_ms
        if spread is None or spread > self.max_spread_ms:
            return False
        return now_s is None or (self._last_match_s is not None and now_s - self._last_match_s <= hold_s)

    def heard_grid_s(self, clock_beats_s: Sequence[float]) -> list[float]:
        """The clock's beats moved by the measured offset (where the beats sound); empty unless locked."""
        offset = self.offset_ms
        if offset is None or not self.locked():
            return []
        return [t + offset / 1000.0 for t in clock_beats_s]

    def warning(self) -> str | None:
        """A sentence for the producer when the beat bus and the clock disagree by more than the threshold."""
        offset = self.offset_ms
        if offset is None or not self.locked() or abs(offset) <= self.threshold_ms:
            return None
        delay_ms = round(offset)
        if offset > 0:
            where = f"the beat bus is {offset:.1f} ms late against the MIDI clock (the clock runs ahead of the audio)"
            what = f"raise Live's MIDI Clock Sync Delay by {delay_ms} ms (from 0: set it to +{delay_ms} ms)"
        else:
            where = f"the beat bus is {-offset:.1f} ms early against the MIDI clock (the clock lags the audio)"
            what = f"lower Live's MIDI Clock Sync Delay by {-delay_ms} ms (from 0: set it to {delay_ms} ms)"
        return (
            f"{where}, median of {self.matches} beats, spread {self.spread_ms:.1f} ms: {what}, on the output port "
            "that sends Cypher its clock (Settings > Link, Tempo & MIDI); positive values delay the clock"
        )


def _checked(times_s: Iterable[float], what: str) -> list[float]:
    """The times as floats, or one clear error for anything that is not a finite number."""
    out = []
    for t in times_s:
        try:
            value = float(t)
        except (TypeError, ValueError):
            raise CypherError(f"{what} times must be numbers of seconds, got {t!r}") from None
        if not math.isfinite(value):
            raise CypherError(f"{what} times must be finite seconds, got {t!r}")
        out.append(value)
    return out


def _period_near(clock_s: Sequence[float], index: int) -> float | None:
    """The clock's beat period around position `index`, or None with fewer than two clock beats."""
    if len(clock_s) < 2:
        return None
    i = min(max(index, 1), len(clock_s) - 1)
    return clock_s[i] - clock_s[i - 1]
