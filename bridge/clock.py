"""Follow a MIDI clock: tempo and phase from a least-squares line through recent tick receive times.

Pure: consumes `engine.events` clock events with their receive timestamps (`time_s`, seconds of the host's
monotonic clock); no I/O and no wall clock. Each accepted clock gets a running index n; the follower fits
`time_s = centre_s + (n - centre_index) * period_s` through the last bar of inlier ticks, so the tempo is
`60 / (24 * period_s)` and any future tick's host time can be predicted from the same line.

Robustness: a tick far off the line is left out of the fit (it still counts as a clock); a run of off-line
ticks on one side, or recent residuals whose mean drifts, means the tempo changed, and the window restarts
from the recent ticks, unless the run sits on the line a whole number of periods later for CONFIRM_SHIFT_S: then
clocks were lost on the way, and they are counted (a run as many periods earlier, after such a count, takes it
back: those clocks were held up, not lost). So are clocks lost where the line restarted anyway (a stall longer
than a silence, a run of suspects one of which a stall held up): a beat after a restart, a line at the old tempo
sitting a whole number of periods on from the old one (or back, by no more than were counted lost), with no
transport message between, is the old clock with clocks lost (or held up), and the line goes on through the old
clocks too.
Garbage (non-finite or backwards times, out-of-range Song Position, fits outside
20-999 BPM, unknown objects) is counted in `ignored` and never raises.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from itertools import chain
from typing import Literal, Protocol

import numpy as np

from engine.errors import ClockError
from engine.events import (
    ClockTick,
    ControlChange,
    NoteOn,
    ProgramChange,
    SongPosition,
    TransportContinue,
    TransportStart,
    TransportStop,
)
from engine.timebase import MIDI_PPQN, TICKS_PER_MIDI_CLOCK, Position, position_of, song_position_to_ticks

logger = logging.getLogger(__name__)

MAX_LOST_CLOCKS = 4  # clocks missing in a row that are counted from the next ones' times (JACK drops a cycle or two)
CONFIRM_SHIFT_S = 0.15  # how long clocks sit a whole number of periods off the line before the count is changed
SHORTEST_GAP_S = 0.1  # a silence shorter than this is a stall, never clocks stopping and resuming
RECONCILE_TICKS = 24  # clocks after a restart before its line is set against the one before, itself of as many
RECONCILE_RECENT = 12  # the latest clocks whose offset from the old line says how many were lost
RECONCILE_ON_LINE = 2 / 3  # the share of them that must sit there, a whole number of periods on
MAX_RECONCILED_CLOCKS = 96  # a restart's line at most a bar of clocks on from the one before is counted
MAX_BUNCHED_CLOCKS = 24  # a beat's worth of clocks arriving at once still counts; more is a flood, ignored
NOISE_GAPS = 48  # clock intervals behind the port-noise estimate (two beats)
NOISE_MIN_GAPS = 12  # intervals needed before that estimate counts
MIN_TEMPO_BPM = 20.0
MAX_TEMPO_BPM = 999.0
MAX_SONG_POSITION = 16383
SLOWEST_CLOCK_PERIOD_S = 60.0 / (MIN_TEMPO_BPM * MIDI_PPQN)
FASTEST_CLOCK_PERIOD_S = 60.0 / (MAX_TEMPO_BPM * MIDI_PPQN)

Transport = Literal["stopped", "playing"]


def clock_period_s(tempo_bpm: float) -> float:
    """Seconds between two MIDI clocks (24 per quarter note) at a tempo."""
    return 60.0 / (tempo_bpm * MIDI_PPQN)


def tempo_of_period(period_s: float) -> float:
    """Tempo in BPM of a MIDI clock period in seconds (infinite for a period that is not positive)."""
    return 60.0 / (period_s * MIDI_PPQN) if period_s > 0 else math.inf


class ClockSource(Protocol):
    """What the timeline reads from a clock (the MIDI follower, Ableton Link)."""

    @property
    def tempo_bpm(self) -> float | None: ...

    @property
    def transport(self) -> Transport: ...

    @property
    def position_ticks(self) -> int: ...

    def predict_time_s(self, position_ticks: int) -> float: ...


@dataclass(frozen=True)
class ClockLine:
    """A fitted clock line: host time of clock index n is `centre_s + (n - centre_index) * period_s`."""

    centre_index: float
    centre_s: float
    period_s: float
    rms_s: float
    worst: int = -1
    worst_residual_s: float = 0.0
    rms_without_worst_s: float = 0.0

    def time_s(self, clock_index: float) -> float:
        """Predicted host time of a (possibly fractional) clock index."""
        return self.centre_s + (clock_index - self.centre_index) * self.period_s

    @property
    def tempo_bpm(self) -> float:
        """Tempo of the line."""
        return tempo_of_period(self.period_s)


def fit_clock_line(points: list[tuple[int, float]], period_hint_s: float | None = None) -> ClockLine:
    """Least-squares line through (clock index, time_s) points; with a hint, only the offset is fitted.

    Needs two points without a hint, one with it.
    """
    table = np.fromiter(chain.from_iterable(points), dtype=np.float64, count=2 * len(points)).reshape(-1, 2)
    indices, times = table[:, 0], table[:, 1]
    centre_index = float(indices.mean())
    # Centre on the first time so float64 keeps sub-microsecond precision at large monotonic times.
    origin_s = float(times[0])
    offsets = times - origin_s
    di = indices - centre_index
    if period_hint_s is None:
        period_s = float(np.dot(di, offsets - offsets.mean()) / np.dot(di, di))
    else:
        period_s = period_hint_s
    centre_s = origin_s + float(offsets.mean())
    residuals = offsets - (centre_s - origin_s) - di * period_s
    dof = len(points) - (2 if period_hint_s is None else 1)
    squares = float(np.dot(residuals, residuals))
    rms_s = math.sqrt(squares / dof) if dof > 0 else 0.0
    worst = int(np.argmax(np.abs(residuals)))
    worst_residual_s = float(residuals[worst])
    rest_s = math.sqrt(max(squares - worst_residual_s**2, 0.0) / (dof - 1)) if dof > 1 else 0.0
    return ClockLine(centre_index, centre_s, period_s, rms_s, worst, worst_residual_s, rest_s)


class ClockFollower:
    """Tempo, position and transport from MIDI clock events (see the module docstring).

    window_ticks: inlier ticks in the fit (192 = two bars). min_ticks: ticks before a tempo is reported.
    An inlier is within max(outlier_floor_s, outlier_sigmas * jitter) of the line; change_run off-line
    ticks on one side, or a mean of the last drift_ticks residuals beyond drift_sigmas standard errors,
    restart the window at the recent ticks. Bad input is counted in `ignored` and logged in one warning
    per warn_interval_s seconds of clock time. count_lost: count clocks missing on the way (a MIDI port); off for
    a clock made in-process, whose every clock arrives and whose line may step when its beats are re-placed.
    """

    def __init__(
        self,
        *,
        window_ticks: int = 192,
        min_ticks: int = 6,
        outlier_floor_s: float = 0.003,
        outlier_sigmas: float = 4.0,
        change_run: int = 3,
        drift_ticks: int = 12,
        drift_sigmas: float = 4.0,
        warn_interval_s: float = 10.0,
        count_lost: bool = True,
    ) -> None:
        if not 2 <= min_ticks <= window_ticks or not 2 <= change_run <= window_ticks:
            raise ClockError("need 2 <= min_ticks <= window_ticks and 2 <= change_run <= window_ticks")
        if not min_ticks <= drift_ticks <= window_ticks:
            raise ClockError("need min_ticks <= drift_ticks <= window_ticks")
        self._min_ticks = min_ticks
        self._outlier_floor_s = outlier_floor_s
        self._outlier_sigmas = outlier_sigmas
        self._change_run = change_run
        self._drift_sigmas = drift_sigmas
        self._window: deque[tuple[int, float]] = deque(maxlen=window_ticks)
        self._suspects: list[tuple[int, float, float]] = []  # index, time_s, residual_s
        self._residuals_s: deque[float] = deque(maxlen=drift_ticks)
        self._recent_times_s: deque[float] = deque(maxlen=min_ticks - 1)
        self._line: ClockLine | None = None
        self._last_line: ClockLine | None = None  # the line before the latest restart
        self._last_points: list[tuple[int, float]] = []  # the clocks it was fitted to
        self._reconcile = False  # the line since a restart is to be set against _last_line (see _reconcile_lost)
        self._transport_events = 0
        self._reconciled_at = 0  # _transport_events at the last clock of the line a restart is set against
        self._events_at_tick = 0  # _transport_events at the latest clock
        self._period_hint_s: float | None = None
        self._tempo_known = False
        self._index = -1
        self._last_time_s: float | None = None
        self._playing = False
        self._seen_transport = False
        self._anchor_index = 0
        self._anchor_ticks = 0
        self._resume_ticks = 0
        self.ignored = 0
        self.outliers = 0
        self.lost_clocks = 0  # clocks the port dropped, found from the times of the ones after them
        self._count_lost = count_lost
        self._bunched = 0  # clocks in a row that came too close together to be timed
        self._gaps_s: deque[float] = deque(maxlen=NOISE_GAPS)  # recent clock intervals, for the port's noise
        self.tempo_changes = 0
        self._warn_interval_s = warn_interval_s
        self._warned_at_s: float | None = None
        self._ignored_at_warning = 0

    # ----- public state -------------------------------------------------------------------------------
    @property
    def tempo_bpm(self) -> float | None:
        """Fitted tempo, or None until `min_ticks` clocks have arrived."""
        if self._line is None or not self._tempo_known:
            return None
        return self._line.tempo_bpm

    @property
    def jitter_ms(self) -> float:
        """RMS residual of the current fit in milliseconds (0.0 before there is one)."""
        return 0.0 if self._line is None else self._line.rms_s * 1000.0

    @property
    def transport(self) -> Transport:
        """"playing" after Start/Continue (or the first clock when joining mid-song), else "stopped"."""
        return "playing" if self._playing else "stopped"

    @property
    def clocks(self) -> int:
        """Number of clocks accepted so far."""
        return self._index + 1

    @property
    def position_ticks(self) -> int:
        """Position (PPQN 960) of the last clock while playing; while stopped, where the next clock resumes."""
        if self._playing and self._index >= self._anchor_index:
            return self._anchor_ticks + (self._index - self._anchor_index) * TICKS_PER_MIDI_CLOCK
        return self._anchor_ticks if self._playing else self._resume_ticks

    def bar_beat(self) -> Position:
        """The current position as zero-based bar, beat and tick."""
        return position_of(self.position_ticks)

    def predict_time_s(self, position_ticks: int) -> float:
        """Predicted host time (time_s) at which the song reaches `position_ticks`, from the fitted line."""
        if self._line is None or not self._tempo_known:
            raise ClockError("no tempo yet: wait for a few MIDI clocks before asking for a time")
        if not self._playing:
            raise ClockError("transport is stopped: predictions resume after MIDI Start or Continue")
        clock_index = self._anchor_index + (position_ticks - self._anchor_ticks) / TICKS_PER_MIDI_CLOCK
        return self._line.time_s(clock_index)

    # ----- input --------------------------------------------------------------------------------------
    def feed(self, event: object) -> None:
        """Consume one event; control events are not the follower's and pass, anything else odd is counted."""
        if isinstance(event, ControlChange | NoteOn | ProgramChange):
            return
        time_s = getattr(event, "time_s", None)
        if not isinstance(time_s, int | float) or not math.isfinite(time_s):
            self._ignore(event)
        elif isinstance(event, ClockTick):
            self._on_tick(float(time_s))
        elif isinstance(event, TransportStart):
            self._transport_events += 1
            self._seen_transport = True
            self._playing = True
            self._anchor_index, self._anchor_ticks, self._resume_ticks = self._index + 1, 0, 0
        elif isinstance(event, TransportContinue):
            self._transport_events += 1
            self._seen_transport = True
            self._playing = True
            self._anchor_index, self._anchor_ticks = self._index + 1, self._resume_ticks
        elif isinstance(event, TransportStop):
            self._transport_events += 1
            self._seen_transport = True
            if self._playing:
                clocked = self._index >= self._anchor_index
                self._resume_ticks = self.position_ticks + (TICKS_PER_MIDI_CLOCK if clocked else 0)
            self._playing = False
        elif isinstance(event, SongPosition):
            self._on_song_position(event.sixteenths)
        else:
            self._ignore(event)

    # ----- internals ----------------------------------------------------------------------------------
    def _ignore(self, event: object) -> None:
        """Count a bad input; warn once per `warn_interval_s` of clock time (the first one at once)."""
        self.ignored += 1
        logger.debug("clock follower ignored %r", event)
        now_s = self._last_time_s if self._last_time_s is not None else 0.0
        if self._warned_at_s is not None and now_s - self._warned_at_s < self._warn_interval_s:
            return
        self._warned_at_s = now_s
        logger.warning(
            "ignored %d bad MIDI clock input(s) (%d since the last warning; latest %r): garbage, bursts, "
            "time running backwards or tempo outside %g-%g BPM. The clock goes on; check the MIDI routing "
            "if this repeats", self.ignored, self.ignored - self._ignored_at_warning, event,
            MIN_TEMPO_BPM, MAX_TEMPO_BPM,
        )
        self._ignored_at_warning = self.ignored

    def _on_song_position(self, sixteenths: object) -> None:
        if not isinstance(sixteenths, int) or not 0 <= sixteenths <= MAX_SONG_POSITION:
            self._ignore(sixteenths)
            return
        self._transport_events += 1
        self._seen_transport = True
        self._resume_ticks = song_position_to_ticks(sixteenths)
        if self._playing:
            self._anchor_index, self._anchor_ticks = self._index + 1, self._resume_ticks

    def _gap_s(self) -> float:
        """A silence longer than this breaks the clock line (clocks stopped, then resumed).

        Only an established line (min_ticks clocks) judges gaps by its own period: a line still forming
        (after Start, after a silence) may rest on a wrong tick or an old tempo, and judging by it could
        call every following clock a gap and never settle.
        """
        if self._line is None or len(self._window) < self._min_ticks:
            return 1.5 * SLOWEST_CLOCK_PERIOD_S
        return max(4.0 * self._line.period_s, 4.0 * self._threshold_s(), SHORTEST_GAP_S)

    def _threshold_s(self) -> float:
        rms_s = 0.0 if self._line is None else self._line.rms_s
        return self._limit_s(max(rms_s, self._port_noise_s()))

    def _limit_s(self, noise_s: float) -> float:
        """How far off a clock may sit, for timing noise `noise_s` (never under the outlier floor)."""
        return max(self._outlier_floor_s, self._outlier_sigmas * noise_s)

    def _port_noise_s(self) -> float:
        """Timing noise of the port, from the spread of recent clock intervals, kept across window restarts.

        A JACK MIDI port delivers clocks on period boundaries (5.3 ms at 256 frames): runs of equal intervals
        with a short one between them. A window that restarts on such a run fits it perfectly and would take the
        next short interval for a tempo change; the interval spread says how much wobble to expect instead.
        """
        if len(self._gaps_s) < NOISE_MIN_GAPS:
            return 0.0
        gaps = np.fromiter(self._gaps_s, dtype=np.float64)
        typical_s = float(np.median(gaps))
        # A lost clock's double interval or a stall's long one is not port noise: it would widen the threshold
        # until the lost clock passed as jitter.
        gaps = gaps[np.abs(gaps - typical_s) < 0.5 * typical_s]
        if len(gaps) < NOISE_MIN_GAPS:
            return 0.0
        return float(np.std(gaps, ddof=1)) / math.sqrt(2.0)

    def _on_tick(self, time_s: float) -> None:
        self._tick(time_s)
        self._events_at_tick = self._transport_events

    def _tick(self, time_s: float) -> None:
        if self._last_time_s is not None:
            if time_s < self._last_time_s:
                self._ignore(time_s)
                return
            if time_s - self._last_time_s > self._gap_s():
                self._restart(keep_tempo=True)
        if self._too_fast(time_s) or self._held_up(time_s):
            self._bunched += 1
            if self._bunched > MAX_BUNCHED_CLOCKS and self._index + 1 > self._clocks_due(time_s):
                self._ignore(time_s)  # a flood, not a late delivery: not a clock
                return
            # Clocks delivered late and all at once (a busy host, a stalled callback) are still clocks: they move
            # the position, but their times say nothing of the tempo, so they stay out of the fit.
            self._index += 1
            self._recent_times_s.append(time_s)
            return
        self._bunched = 0
        if self._last_time_s is not None:
            self._gaps_s.append(time_s - self._last_time_s)
        index = self._index + 1
        if not self._add_point(index, time_s):
            # A clock whose time would put the line outside the tempo range (late deliveries bunched with the next
            # ones): still a clock, so it moves the position; only its time is left out. Dropping it put every
            # later bar line a clock late (a 100-turn soak at 140 and 174 BPM: 14-18 ms, then twice that).
            self.outliers += 1
            self._index += 1
            self._recent_times_s.append(time_s)
            return
        self._index += 1  # past `index` by the clocks _add_point found lost on the way, if any
        if self._reconcile and len(self._window) >= RECONCILE_TICKS:
            self._reconcile = False
            self._reconcile_lost()
        index = self._index
        self._last_time_s = time_s
        self._recent_times_s.append(time_s)
        if not self._seen_transport and not self._playing:
            # Joining mid-song: clocks without a Start; count from the first one.
            self._playing = True
            self._anchor_index, self._anchor_ticks = index, 0

    def _clocks_due(self, time_s: float) -> float:
        """The latest clock index a line puts at `time_s`, plus two: a stall hands over every clock it held, a flood
        more than time allows. Both the line now and the one before the latest restart are asked (a stall's gap
        restarts the line on the stall's first clocks). Without a line, a beat's worth past the last clock."""
        lines = [line for line in (self._line, self._last_line) if line is not None]
        if not lines:
            return self._index - self._bunched + 1 + MAX_BUNCHED_CLOCKS
        return max(line.centre_index + (time_s - line.centre_s) / line.period_s for line in lines) + 2.0

    def _held_up(self, time_s: float) -> bool:
        """True for a clock less than half a period after the one before: a stall's backlog delivered with it, whose
        time says nothing of the tempo (fitted after a gap, three of them made 631 BPM out of 174)."""
        period_s = self._line.period_s if self._line is not None else self._period_hint_s
        recent = self._recent_times_s
        return period_s is not None and bool(recent) and time_s - recent[-1] < 0.5 * period_s

    def _too_fast(self, time_s: float) -> bool:
        """True when this tick and the last min_ticks - 1 span less time than 999 BPM allows (a burst).

        Jitter of up to two outlier floors is allowed for: a JACK period can deliver two clocks at once.
        """
        recent = self._recent_times_s
        if len(recent) < (recent.maxlen or 0):
            return False
        span_s = time_s - recent[0]
        return span_s < len(recent) * FASTEST_CLOCK_PERIOD_S - 2.0 * self._outlier_floor_s

    def _restart(self, *, keep_tempo: bool, points: list[tuple[int, float]] | None = None) -> None:
        if self._line is not None and not self._reconcile:  # while one is pending, its old line stays the judge
            self._last_line = self._line
            self._last_points = list(self._window)
            if len(self._window) >= RECONCILE_TICKS:  # a line of fewer clocks can be a few % off
                self._reconcile = self._count_lost and self._playing
                self._reconciled_at = self._events_at_tick
        self._period_hint_s = self._line.period_s if keep_tempo and self._line is not None else None
        self._window.clear()
        self._window.extend(points or [])
        self._suspects.clear()
        self._residuals_s.clear()
        self._line = None

    def _add_point(self, index: int, time_s: float) -> bool:
        """Add a tick to the fit; False if it makes the fit leave the tempo range (then it is not a clock)."""
        line = self._line
        if line is not None and len(self._window) >= self._min_ticks:
            residual_s = time_s - line.time_s(index)
            if abs(residual_s) > self._threshold_s():
                return self._add_outlier(index, time_s, residual_s)
            self._suspects.clear()
            self._residuals_s.append(residual_s)
        self._window.append((index, time_s))
        if not self._refit():
            self._restart(keep_tempo=True)
            return False
        self._check_drift()
        return True

    def _add_outlier(self, index: int, time_s: float, residual_s: float) -> bool:
        """A tick off the line: left out of the fit, unless it completes a one-sided run (a tempo change)."""
        self.outliers += 1
        if self._suspects and (self._suspects[-1][2] > 0) != (residual_s > 0):
            self._suspects.clear()
        self._suspects.append((index, time_s, residual_s))
        if len(self._suspects) < self._change_run:
            return True
        lost = self._lost_clocks()
        if lost:
            if time_s - self._suspects[0][1] < CONFIRM_SHIFT_S:
                # Clocks a busy host holds up by about a period sit where clocks after a lost one would, until they
                # come back to the line (then the suspects clear): wait and see. The line still puts every bar
                # line in the right place meanwhile; only the count now is `lost` clocks behind.
                return True
            # The clock went on at the same tempo, `lost` periods ahead of our count: clocks the port dropped
            # (JACK MIDI loses a cycle's events for a client that misses it). Count them, keep the line. Clocks
            # a whole number of periods behind take back as many counted before: they were held up, not lost.
            logger.debug("%+d MIDI clock(s) lost on the way; counted from their neighbours' times", lost)
            self.lost_clocks += lost
            self._index += lost
            self._window.extend((n + lost, t) for n, t, _ in self._suspects)
            self._suspects.clear()
            self._refit()
            return True
        points = [(n, t) for n, t, _ in self._suspects]
        candidate = fit_clock_line(points)
        if not MIN_TEMPO_BPM <= candidate.tempo_bpm <= MAX_TEMPO_BPM:
            self._suspects.pop()
            return False
        logger.debug("tempo change to %.2f BPM", candidate.tempo_bpm)
        self.tempo_changes += 1
        self._restart(keep_tempo=False, points=points)
        self._refit()
        return True

    def _lost_clocks(self) -> int:
        """Clocks missing before the suspects, when all of them sit on the line shifted by the same whole number of
        periods (a tempo change spreads them; a late delivery is followed by clocks back on the line); else 0.
        Each must be within the outlier threshold of the shifted line. Negative: clocks counted lost earlier that
        were only held up (the clocks are back where they were before the count), at most as many as counted."""
        line = self._line
        if line is None or not self._count_lost:
            return 0
        threshold_s = self._threshold_s()
        residuals_s = [r for _, _, r in self._suspects]
        lost = round(sum(residuals_s) / len(residuals_s) / line.period_s)
        if not -self._most_taken_back() <= lost <= MAX_LOST_CLOCKS or any(
            abs(r - lost * line.period_s) > threshold_s for r in residuals_s
        ):
            return 0
        return lost

    def _most_taken_back(self) -> int:
        """Clocks counted lost that a run back on the line may take back (they were held up): at most as many as
        were counted, and no more than MAX_LOST_CLOCKS at once."""
        return min(self.lost_clocks, MAX_LOST_CLOCKS)

    def _reconcile_lost(self) -> None:
        """A beat after a restart: if the latest clocks sit on the old line a whole number of periods on (up to a
        bar; back by at most the clocks counted lost before, which were then only held up), with no transport
        message since, the clock went on at the old tempo: count the clocks lost while the line restarted, and go on
        with the old line's clocks and the new ones that sit on it, so the line is long again (a line of a few
        clocks is a poor judge of the next restart: extrapolated across a second stall it was half a period off at
        140 BPM). Zero periods on: the restart was not a tempo change, and the line goes on the same way."""
        old = self._last_line
        if old is None or self._transport_events != self._reconciled_at:
            return
        indices, times_s = np.array(self._window, dtype=np.float64).T
        offsets_s = times_s - old.time_s(indices)
        recent_s = offsets_s[-RECONCILE_RECENT:]
        lost = round(float(np.median(recent_s)) / old.period_s)
        # the port's own noise, not the restarted line's spread (a line fitted across a stall is no judge)
        threshold_s = self._limit_s(self._port_noise_s())
        on_line = np.abs(offsets_s - lost * old.period_s) <= threshold_s
        in_range = -self._most_taken_back() <= lost <= MAX_RECONCILED_CLOCKS
        if not in_range or on_line[-len(recent_s):].mean() < RECONCILE_ON_LINE:
            return  # a tempo change, or clocks not yet settled
        drift_s = float(np.polyfit(indices[on_line], offsets_s[on_line], 1)[0]) * RECONCILE_TICKS
        if abs(drift_s) > threshold_s:
            return  # the old line's tempo is not the clock's (a beat drifts off it): its extrapolation says nothing
        if lost:
            logger.debug("%+d MIDI clock(s) lost while the clock line restarted; counted", lost)
        self.lost_clocks += lost
        self._index += lost
        kept = [(n + lost, t) for (n, t), ok in zip(self._window, on_line) if ok]
        self._window = deque(self._last_points + kept, maxlen=self._window.maxlen)
        self._refit()

    def _refit(self) -> bool:
        """Refit the line to the window; False if the fit leaves the tempo range once a tempo is known."""
        points = list(self._window)
        hint = self._period_hint_s
        if len(points) >= 2 and (len(points) >= self._min_ticks or hint is None):
            line = fit_clock_line(points)
        elif hint is not None and points:
            line = fit_clock_line(points, hint)
        else:
            self._line = None
            return True
        established = len(points) >= self._min_ticks
        limit_s = self._limit_s(line.rms_without_worst_s)
        if len(points) > self._min_ticks and abs(line.worst_residual_s) > limit_s:
            # A tick that joined while the line was forming, far off it now: leave it out (one per clock).
            del self._window[line.worst]
            self.outliers += 1
            line = fit_clock_line(list(self._window))
        if (established or self._tempo_known) and not MIN_TEMPO_BPM <= line.tempo_bpm <= MAX_TEMPO_BPM:
            return False
        if established:
            self._tempo_known = True
            self._period_hint_s = None
        self._line = line
        return True

    def _check_drift(self) -> None:
        """Shorten the window to the recent ticks when their residuals drift off zero (a tempo ramp)."""
        residuals = self._residuals_s
        if self._line is None or len(residuals) < (residuals.maxlen or 0):
            return
        count = len(residuals)
        mean_s = sum(residuals) / count
        limit_s = max(self._drift_sigmas * self._line.rms_s / math.sqrt(count), 1e-4)
        if abs(mean_s) > limit_s:
            recent = list(self._window)[-count:]
            self.tempo_changes += 1
            self._restart(keep_tempo=False, points=recent)
            self._refit()


class EmaFollower:
    """Baseline for comparison: an exponential moving average of 1/Δt between clocks, as common followers do."""

    def __init__(self, *, smoothing: float = 0.1) -> None:
        self._smoothing = smoothing
        self._rate_hz: float | None = None
        self._last_time_s: float | None = None

    @property
    def tempo_bpm(self) -> float | None:
        """Averaged tempo, or None before two clocks."""
        return None if self._rate_hz is None else self._rate_hz * 60.0 / MIDI_PPQN

    def feed(self, event: object) -> None:
        """Consume one event; only clock ticks matter."""
        if not isinstance(event, ClockTick) or not math.isfinite(event.time_s):
            return
        last, self._last_time_s = self._last_time_s, event.time_s
        if last is None or not 0.0 < event.time_s - last <= 1.5 * SLOWEST_CLOCK_PERIOD_S:
            return
        rate_hz = 1.0 / (event.time_s - last)
        if self._rate_hz is None:
            self._rate_hz = rate_hz
        else:
            self._rate_hz += self._smoothing * (rate_hz - self._rate_hz)
