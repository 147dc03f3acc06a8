"""Audio-only mode: with no MIDI clock, the beat bus alone drives the timeline.

`BeatClock` (pure) turns the beat bus into the events a DAW's MIDI clock would have sent, so the timeline, the
clock follower and everything placed on predicted bar lines work unchanged:

- the beats come from `PulseTracker` (engine.listen.pulse), reported about a fifth of a period after they happen;
- when beat k is known, the 23 clocks between beat k-1 and beat k are emitted with host times interpolated
  between the two beats, then the clock on beat k itself: each clock is stamped with its true host time though
  it is emitted late (the follower fits times, not arrival), and a bar line is announced a fifth of a beat after
  it happened. The beats are first put on a line through the last ANCHOR_BEATS beats (its slope theirs once
  FIT_ANCHORS are in, before that the tracker's tempo), started again from two beats running ANCHOR_DEVIATION_S
  off it (a tempo change; one such beat alone is a misheard one, and its clock stays on the line): raw beats
  wobble by a millisecond or two, and the follower, seeing the clocks bend at every beat, would take each bend
  for a tempo change. A gap of several periods (a beat the tracker skipped, a re-adopted pulse) advances the
  position by as many beats as fit in it, so a beat is always 24 clocks;
- `TransportStart` is sent on a downbeat once the pulse is locked and the downbeat is known (`DownbeatEstimate`:
  the beat of four whose hits carry the most kick and the least snare), and never on a beat held off the beats'
  line (the beat before it may be the one misheard, as the first beat of a lock can be), after a count-in beat of
  clocks with the transport stopped, so the follower knows the tempo on the first bar line; `TransportStop` when
  the pulse is lost (silence, no hits on the beats). A later, confident move of the downbeat re-bars the song with a
  `SongPosition` to the next bar (a DAW's seek), so the next bar line lands on the new "1".

Host times: `push(block, host_time_s)` takes the host time of the block's first sample; the stream-to-host offset
is the median over the last blocks, so the stamps' jitter does not reach the clocks.

`BeatBusClock` is the adapter: a thread that reads the beat bus from a `JackCapture` ring block by block (it only
reads the ring: the audio callback is never waited on) and puts the events on the timeline's queue.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import aubio
import numpy as np

from engine.errors import CypherError
from engine.events import ClockEvent, ClockTick, SongPosition, TransportStart, TransportStop
from engine.listen.capture import JackCapture
from engine.listen.pulse import PulseTracker
from engine.timebase import BEATS_PER_BAR, MIDI_PPQN

if TYPE_CHECKING:
    from engine.timeline import Timeline

log = logging.getLogger(__name__)

LOW_BAND_HZ = 120.0  # the kick's body (a sweep from 160 down to 48 Hz); a snare's 190 Hz tone is 16 dB down
SNARE_BAND_HZ = (1000.0, 4000.0)  # a snare's crack: above the kick (whose body leaks up to 400 Hz), below the hats
SNARE_WEIGHT = 0.5  # a beat's snare counts against it being "1" half as much as its kick counts for it
BUTTERWORTH_Q = (0.5412, 1.3066)  # the two biquads of a 4th-order Butterworth filter
ENVELOPE_FRAME = 256  # samples per band energy value
ENVELOPE_HISTORY_S = 10.0  # how far back the downbeat estimate can look when the pulse locks
RISE_WINDOW_S = 0.05  # band energy in this window after a beat, less the one before it, is the beat's hit
DOWNBEAT_DECAY = 0.8  # per bar: the weight an old bar keeps in the downbeat estimate
REPHASE_BEATS = 8  # beats in a row that must put the "1" elsewhere before the song is re-barred
REPHASE_MARGIN = 0.3  # ... each with the new "1" this far ahead (in DownbeatEstimate.margin) of the old one
DISCONTINUITY = 0.1  # a beat gap this far (as a share) off the gap before: the tracker jumped, the count may be off
ANCHOR_BEATS = 8  # the clocks run through a line over this many recent beats
FIT_ANCHORS = 4  # from this many, the line's slope is the beats' own (before that, the tracker's tempo) ...
FIT_AGREEMENT = 0.02  # ... while it is within this share of the tracker's period (else the tempo is moving)
ANCHOR_DEVIATION_S = 0.006  # two beats running this far off that line start it again from them (a tempo change)
OFFSET_BLOCKS = 64  # blocks behind the median stream-to-host offset
SIXTEENTHS_PER_BAR = 16
SONG_POSITION_BARS = 1024  # MIDI Song Position counts sixteenths up to 16383: bar numbers wrap there
MIN_TICK_STEP_S = 1e-4  # a clock is never stamped before the one before it (a jump of the host offset)


def _biquad(kind: str, cutoff_hz: float, q: float, sample_rate: int) -> tuple[float, float, float, float, float]:
    """RBJ low-pass ("low") or high-pass ("high") biquad coefficients (b0, b1, b2, a1, a2), normalised for aubio's
    `set_biquad`."""
    w0 = 2.0 * math.pi * cutoff_hz / sample_rate
    alpha = math.sin(w0) / (2.0 * q)
    cos_w0 = math.cos(w0)
    a0 = 1.0 + alpha
    if kind == "low":
        b = ((1 - cos_w0) / 2, 1 - cos_w0, (1 - cos_w0) / 2)
    else:
        b = ((1 + cos_w0) / 2, -(1 + cos_w0), (1 + cos_w0) / 2)
    return (b[0] / a0, b[1] / a0, b[2] / a0, -2 * cos_w0 / a0, (1 - alpha) / a0)


class BandEnergy:
    """One band of the beat bus (4th-order Butterworth edges, aubio biquads): its energy over the last
    ENVELOPE_HISTORY_S in ENVELOPE_FRAME frames. `low_hz` None: a low-pass; `high_hz` None: a high-pass."""

    def __init__(self, sample_rate: int, low_hz: float | None, high_hz: float | None) -> None:
        self.sample_rate = sample_rate
        self._filters = []
        for kind, cutoff_hz in (("high", low_hz), ("low", high_hz)):
            if cutoff_hz is None:
                continue
            for q in BUTTERWORTH_Q:
                biquad = aubio.digital_filter(3)
                biquad.set_biquad(*_biquad(kind, cutoff_hz, q, sample_rate))
                self._filters.append(biquad)
        self._pending = np.zeros(0, dtype=np.float32)
        self._energy: deque[float] = deque(maxlen=round(ENVELOPE_HISTORY_S * sample_rate / ENVELOPE_FRAME))
        self._frames = 0  # energy frames computed since the start

    @property
    def frame_s(self) -> float:
        """Seconds per energy frame."""
        return ENVELOPE_FRAME / self.sample_rate

    def push(self, samples: np.ndarray) -> None:
        """Filter the next samples (any length) and add their frames' energy."""
        data = np.concatenate((self._pending, samples)) if len(self._pending) else samples
        whole = len(data) - len(data) % ENVELOPE_FRAME
        for start in range(0, whole, ENVELOPE_FRAME):
            frame = np.ascontiguousarray(data[start:start + ENVELOPE_FRAME], dtype=aubio.float_type)
            for biquad in self._filters:
                frame = biquad(frame)
            self._energy.append(float(np.dot(frame, frame)))
        self._frames += whole // ENVELOPE_FRAME
        self._pending = np.array(data[whole:], dtype=np.float32)

    def rise(self, time_s: float, window_s: float = RISE_WINDOW_S) -> float | None:
        """Energy in `window_s` after `time_s` less the energy in `window_s` before it (at least 0); None when
        that audio is not held (too old, or not arrived)."""
        width = max(1, round(window_s / self.frame_s))
        at = round(time_s / self.frame_s)
        first = self._frames - len(self._energy)
        if at - width < first or at + width > self._frames:
            return None
        energy = np.fromiter(self._energy, dtype=np.float64, count=len(self._energy))
        k = at - first
        return max(0.0, float(energy[k:k + width].sum() - energy[k - width:k].sum()))


class Hits:
    """The kick (low band) and snare (crack band) energy rising on each beat."""

    def __init__(self, sample_rate: int) -> None:
        self.kick = BandEnergy(sample_rate, None, LOW_BAND_HZ)
        self.snare = BandEnergy(sample_rate, *SNARE_BAND_HZ)

    def push(self, samples: np.ndarray) -> None:
        """Filter the next samples."""
        self.kick.push(samples)
        self.snare.push(samples)

    def at(self, time_s: float) -> tuple[float, float] | None:
        """(kick, snare) energy rising at `time_s`, None when that audio is not held."""
        kick, snare = self.kick.rise(time_s), self.snare.rise(time_s)
        return None if kick is None or snare is None else (kick, snare)


class DownbeatEstimate:
    """Which beat of the bar is "1": the kick and snare energy of each beat, averaged per beat phase (beat index
    modulo the bar), recent bars weighing more. A phase's score is its kick less SNARE_WEIGHT times its snare, each as a
    share of the loudest phase's: "1" carries the kick and, in every shipped kit, no snare (the backbeat's or
    the half-time one's), which also tells "1" from a "4" that carries a kick too (grime)."""

    def __init__(self, beats_per_bar: int = BEATS_PER_BAR, decay: float = DOWNBEAT_DECAY) -> None:
        self.beats_per_bar = beats_per_bar
        self.decay = decay
        self._sums = np.zeros((2, beats_per_bar))  # kick, snare
        self._weights = np.zeros(beats_per_bar)
        self._counts = np.zeros(beats_per_bar, dtype=np.int64)

    def add(self, beat_index: int, kick: float, snare: float) -> None:
        """The kick and snare energy heard on beat `beat_index` (any integer; only its phase in the bar counts)."""
        p = beat_index % self.beats_per_bar
        self._sums[:, p] = self._sums[:, p] * self.decay + (kick, snare)
        self._weights[p] = self._weights[p] * self.decay + 1.0
        self._counts[p] += 1

    def scores(self) -> np.ndarray:
        """Per phase: mean kick less SNARE_WEIGHT times mean snare, each over the loudest phase's (0 for a phase
        not heard yet)."""
        means = np.divide(self._sums, self._weights, out=np.zeros_like(self._sums), where=self._weights > 0)
        peaks = means.max(axis=1, keepdims=True)
        shares = np.divide(means, peaks, out=np.zeros_like(means), where=peaks > 0)
        return shares[0] - SNARE_WEIGHT * shares[1]

    @property
    def phase(self) -> int | None:
        """The beat phase judged to be "1", None until every phase was heard."""
        return int(np.argmax(self.scores())) if self._counts.min() > 0 else None

    @property
    def margin(self) -> float:
        """How far the "1" scores ahead of the runner-up phase (0..1.5)."""
        ordered = np.sort(self.scores())
        return float(ordered[-1] - ordered[-2])

    def ready(self) -> bool:
        """Enough heard to name the downbeat: every phase once with a clear lead (0.5), twice with 0.2, or
        three times whatever the lead (a kit with the same hits on "1" and "3" is a coin toss then)."""
        fewest = int(self._counts.min())
        return (fewest >= 1 and self.margin >= 0.5) or (fewest >= 2 and self.margin >= 0.2) or fewest >= 3


class BeatClock:
    """The beat bus as a MIDI clock (see the module docstring): `push(block, host_time_s)` -> clock events."""

    def __init__(self, sample_rate: int, tracker: PulseTracker | None = None,
                 beats_per_bar: int = BEATS_PER_BAR) -> None:
        if sample_rate <= 0:
            raise CypherError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = sample_rate
        self.tracker = tracker if tracker is not None else PulseTracker(sample_rate)
        if self.tracker.sample_rate != sample_rate:
            raise CypherError(f"the tracker runs at {self.tracker.sample_rate} Hz but the beat clock at "
                              f"{sample_rate} Hz; build both at the beat bus's rate")
        self.beats_per_bar = beats_per_bar
        self.hits = Hits(sample_rate)
        self.downbeat = DownbeatEstimate(beats_per_bar)
        self.playing = False
        self.starts = 0  # TransportStarts sent
        self.rephased = 0  # SongPosition re-barrings sent
        self._fed = 0
        self._offsets_s: deque[float] = deque(maxlen=OFFSET_BLOCKS)
        self._last_beat_s: float | None = None  # stream seconds of the last beat since the lock
        self._beat_index = 0  # beats since the lock (skipped ones counted)
        self._bar_phase = 0  # beat_index modulo the bar of the beat the bars are counted from
        self._position_beats = 0  # beats since the song position's zero (while playing)
        self._disagree = 0
        self._fresh = False  # the downbeat estimate restarted after a jump of the tracker: re-bar when it is ready
        self._last_gap_s: float | None = None
        self._anchors: deque[tuple[int, float]] = deque(maxlen=ANCHOR_BEATS)  # (beat index, heard stream time)
        self._off_line: tuple[int, float, float] | None = None  # the last beat and how far off the line, if it was
        self._last_anchor_s = 0.0  # the stream time the clock on the last beat was placed at
        self._last_tick_s = -math.inf
        self._stop_sent = False

    @property
    def tempo_bpm(self) -> float | None:
        """The tracker's tempo, None while there is no pulse."""
        return self.tracker.tempo_bpm

    def host_time_s(self, stream_s: float) -> float:
        """Host time of a stream time (seconds from the first sample pushed), by the median offset."""
        if not self._offsets_s:
            raise CypherError("no audio pushed yet: push a block with its host time first")
        return stream_s + float(np.median(self._offsets_s))

    def push(self, block: np.ndarray, host_time_s: float) -> list[ClockEvent]:
        """Feed the next mono block, `host_time_s` the host time of its first sample; the events it causes."""
        try:
            samples = np.asarray(block, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise CypherError(f"BeatClock takes blocks of audio samples, got {type(block).__name__}") from exc
        if samples.ndim != 1:
            raise CypherError(f"BeatClock takes mono blocks, got shape {samples.shape}; mix the beat bus to mono")
        if not isinstance(host_time_s, int | float) or not math.isfinite(host_time_s):
            raise CypherError(f"the block's host time must be a finite number of seconds, got {host_time_s}")
        self._offsets_s.append(host_time_s - self._fed / self.sample_rate)
        self._fed += len(samples)
        self.hits.push(samples)
        events: list[ClockEvent] = []
        for beat_s in self.tracker.push(samples):
            events += self._on_beat(beat_s)
        if self._last_beat_s is not None and not self.tracker.locked:
            events += self._lose(self.host_time_s(self._fed / self.sample_rate))
        return events

    def reset(self, host_time_s: float) -> list[ClockEvent]:
        """The stream broke (samples lost): a fresh tracker, the transport stopped if it played."""
        events = self._lose(host_time_s) if self._last_beat_s is not None else []
        self.tracker = PulseTracker(self.sample_rate, self.tracker.hop_size, self.tracker.min_bpm,
                                    self.tracker.max_bpm, self.tracker.lock_window_s, self.tracker.silence_db)
        self.hits = Hits(self.sample_rate)
        self._fed = 0
        self._offsets_s.clear()
        return events

    # ----- internals ----------------------------------------------------------------------------------
    def _lose(self, host_time_s: float) -> list[ClockEvent]:
        """The pulse is gone: stop the transport if it played, forget the beat count and the downbeat."""
        events: list[ClockEvent] = []
        if self.playing:
            events.append(TransportStop(host_time_s))
            self._stop_sent = True
            log.warning("beat bus lost its pulse: transport stopped")
        self.playing = False
        self._last_beat_s = None
        self.downbeat = DownbeatEstimate(self.beats_per_bar)
        self._disagree = 0
        self._fresh = False
        return events

    def _tick(self, stream_s: float) -> ClockTick:
        at_s = max(self.host_time_s(stream_s), self._last_tick_s + MIN_TICK_STEP_S)
        self._last_tick_s = at_s
        return ClockTick(at_s)

    def _on_beat(self, beat_s: float) -> list[ClockEvent]:
        """One beat from the tracker: the clocks up to it, a start, a re-barring, as due."""
        tempo = self.tracker.tempo_bpm
        events: list[ClockEvent] = []
        if self._last_beat_s is None:  # the first beat of a lock: the hits on the beats before it, by the period
            self._beat_index = steps = 0
            self._last_gap_s = None
            beat_period_s = 60.0 / tempo if tempo else 0.0
            for k in range(1, 4 * self.beats_per_bar + 1):
                hits = self.hits.at(beat_s - k * beat_period_s) if beat_period_s > 0 else None
                if hits is None:
                    break
                self.downbeat.add(-k, *hits)
        else:
            gap_s = beat_s - self._last_beat_s
            steps = round(gap_s / (60.0 / tempo if tempo else gap_s))
            if steps == 0:  # a re-adopted pulse's first beat right after the last one: the next one counts
                return []
            beat_period_s = gap_s / steps
            if self._jumped(beat_period_s):
                self.downbeat = DownbeatEstimate(self.beats_per_bar)
                self._fresh = True
            self._beat_index += steps
        self._last_beat_s = beat_s
        placed_s = self._place(beat_s, tempo)
        if steps and self.playing:
            clocks = MIDI_PPQN * steps
            span_s = placed_s - self._last_anchor_s
            events += [self._tick(self._last_anchor_s + span_s * j / clocks) for j in range(1, clocks)]
            self._position_beats += steps
        self._last_anchor_s = placed_s
        hits = self.hits.at(beat_s)
        if hits is not None:
            self.downbeat.add(self._beat_index, *hits)
        phase = self.downbeat.phase
        if not self.playing:
            heard_on_line = self._off_line is None  # a beat held off the line may be the one heard right
            if (phase is not None and heard_on_line and self.downbeat.ready()
                    and self._beat_index % self.beats_per_bar == phase):
                events += self._start(placed_s, beat_period_s, phase)
        else:
            events += self._maybe_rebar(phase)
        if self.playing:
            events.append(self._tick(placed_s))
        return events

    def _place(self, beat_s: float, tempo: float | None) -> float:
        """Where the clock on this beat goes: on the line through the recent beats (see the module docstring)."""
        index = self._beat_index
        if index == 0 or tempo is None:
            self._anchors.clear()
        period_s = 60.0 / tempo if tempo else 0.0
        off_line, self._off_line = self._off_line, None
        if self._anchors:
            line_s = self._line_s(index, period_s)
            off_s = beat_s - line_s
            if abs(off_s) > ANCHOR_DEVIATION_S:
                if off_line is None or (off_line[2] > 0) != (off_s > 0):
                    # One beat off the line is a misheard one (34 ms early over JACK: the follower read 128.7, then
                    # 112.4 BPM, and the answer was sung at that tempo); the next one says whether the tempo moved.
                    self._off_line = (index, beat_s, off_s)
                    return line_s
                self._anchors.clear()
                self._anchors.append(off_line[:2])
        self._anchors.append((index, beat_s))
        return self._line_s(index, period_s)

    def _line_s(self, index: int, period_s: float) -> float:
        """Beat `index` on the anchors' line: their own least-squares line once FIT_ANCHORS beats are in and its
        slope agrees with the tracker's period (a beat heard early moves the tracker's tempo for ten beats: 120.0
        to 120.3, then down to 119.7), else the mean of the anchors carried on by the tracker's period."""
        if len(self._anchors) >= FIT_ANCHORS:
            indices, times_s = np.array(self._anchors, dtype=np.float64).T
            slope_s, at_index_s = np.polyfit(indices - index, times_s, 1)
            if abs(slope_s / period_s - 1.0) < FIT_AGREEMENT:  # else the tempo is moving: follow the tracker
                return float(at_index_s)
        return float(np.mean([t + (index - i) * period_s for i, t in self._anchors]))

    def _jumped(self, gap_s: float) -> bool:
        """Whether this beat gap is DISCONTINUITY off the one before (the tracker re-adopted a pulse, or coasts
        over hits at another tempo): beats may have been miscounted there."""
        last, self._last_gap_s = self._last_gap_s, gap_s
        return last is not None and abs(gap_s / last - 1.0) > DISCONTINUITY

    def _start(self, beat_s: float, beat_period_s: float, phase: int) -> list[ClockEvent]:
        """Start the transport on this beat, a downbeat. The beat before it is sent as a count-in of clocks with
        the transport stopped (a DAW sends clocks while stopped too), so the follower knows the tempo on the
        first bar line; a Stop before them (unless one was sent since the last Start) keeps a fresh follower from
        taking them for a song joined midway."""
        self.playing = True
        self.starts += 1
        self._bar_phase = phase
        self._position_beats = 0
        self._disagree = 0
        log.info("beat bus drives the timeline at %.1f BPM", self.tracker.tempo_bpm or 0.0)
        count_in_s = beat_s - beat_period_s
        events: list[ClockEvent] = [] if self._stop_sent else [TransportStop(self.host_time_s(count_in_s))]
        self._stop_sent = False
        if beat_period_s > 0:
            events += [self._tick(count_in_s + beat_period_s * j / MIDI_PPQN) for j in range(MIDI_PPQN)]
        events.append(TransportStart(self.host_time_s(beat_s)))
        return events

    def _maybe_rebar(self, phase: int | None) -> list[ClockEvent]:
        """Seek to the next bar on the new "1" as it comes: at once when the estimate restarted after a jump of
        the tracker and is ready, else when the downbeat has moved for REPHASE_BEATS beats by REPHASE_MARGIN."""
        if phase is None:
            return []
        if self._fresh:
            if not self.downbeat.ready():
                return []
            moved = phase != self._bar_phase
            self._fresh = moved and self._beat_index % self.beats_per_bar != phase
            due = moved
        else:
            moved = phase != self._bar_phase and self.downbeat.margin >= REPHASE_MARGIN
            self._disagree = self._disagree + 1 if moved else 0
            due = moved and self._disagree >= REPHASE_BEATS
        if not due or self._beat_index % self.beats_per_bar != phase:
            return []
        assert self._last_beat_s is not None
        bar = (self._position_beats // self.beats_per_bar + 1) % SONG_POSITION_BARS
        self._bar_phase = phase
        self._position_beats = bar * self.beats_per_bar
        self._disagree = 0
        self.rephased += 1
        log.info("beat bus: the downbeat moved, bar %d starts on this beat", bar + 1)
        return [SongPosition(bar * SIXTEENTHS_PER_BAR, self.host_time_s(self._last_anchor_s))]


class BeatBusClock:
    """Audio-only mode's adapter: a thread reading the beat bus ring of a `JackCapture` in `block_frames` blocks,
    pushing them through a `BeatClock` and putting its events on the timeline's queue. `close()` stops it (and
    the transport, when the beat bus drove it)."""

    def __init__(self, capture: JackCapture, events: "queue.Queue", bus: str = "beat", block_frames: int = 1024,
                 clock: BeatClock | None = None) -> None:
        if bus not in capture.rings:
            raise CypherError(f"the capture has no {bus!r} bus (it has {', '.join(capture.rings) or 'none'}); "
                              f"plug the beat in with --beat-in")
        if block_frames <= 0:
            raise CypherError(f"block_frames must be positive, got {block_frames}")
        self.capture = capture
        self.events = events
        self.ring = capture.rings[bus]
        self.latency_frames = capture.latency_frames.get(bus, 0)
        self.block_frames = block_frames
        self.clock = clock if clock is not None else BeatClock(capture.sample_rate)
        self.blocks = 0
        self.breaks = 0  # times the reader fell behind the ring (or the ring restarted) and started over
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cypher-beat-clock", daemon=True)

    def start(self) -> None:
        """Start reading the beat bus."""
        self._thread.start()

    def close(self) -> None:
        """Stop reading; a transport the beat bus started is stopped."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        if self.clock.playing:
            for event in self.clock.reset(time.monotonic()):
                self.events.put(event)

    def host_time_of(self, frame: int) -> float:
        """The host time the sound in ring frame `frame` was played at (the capture latency taken off)."""
        now_s = time.monotonic()
        return now_s + (frame - self.latency_frames - self.capture.frame_at(now_s)) / self.capture.sample_rate

    def _run(self) -> None:
        wait_s = self.block_frames / self.capture.sample_rate / 2.0
        next_frame: int | None = None
        while not self._stop.is_set():
            until = self.ring.written_until
            if until is None or (next_frame is not None and until - next_frame < self.block_frames):
                self._stop.wait(wait_s)
                continue
            if next_frame is None:
                next_frame = until - self.block_frames
            block = self.ring.read(next_frame, self.block_frames)
            if block is None:  # overwritten before it was read, or the ring restarted: start over from now
                self.breaks += 1
                log.warning("the beat bus reader fell behind the capture: the beat clock starts over")
                for event in self.clock.reset(time.monotonic()):
                    self.events.put(event)
                next_frame = None
                continue
            try:
                host_s = self.host_time_of(next_frame)
            except CypherError as exc:  # nothing captured yet
                log.debug("beat bus not read yet: %s", exc)
                self._stop.wait(wait_s)
                continue
            for event in self.clock.push(block, host_s):
                self.events.put(event)
            self.blocks += 1
            next_frame += self.block_frames


def stream_into(timeline: Timeline, audio: np.ndarray, sample_rate: int, host_start_s: float,
                block_frames: int = 1024, stamp_jitter_s: float = 0.0, seed: int = 0,
                on_block: Callable[[float], None] | None = None) -> list[ClockEvent]:
    """Stream a recorded beat bus through a new `BeatClock` into `timeline`, block by block as `BeatBusClock` does
    (each block stamped with its host time, plus seeded Gaussian jitter as a capture's stamps have);
    `on_block(stream_s)` is told where the stream is before each block's events are handled. The events made."""
    clock = BeatClock(sample_rate)
    rng = np.random.default_rng(seed)
    made: list[ClockEvent] = []
    for start in range(0, len(audio), block_frames):
        if on_block is not None:
            on_block(min(start + block_frames, len(audio)) / sample_rate)
        stamp_s = host_start_s + start / sample_rate + (rng.normal(0.0, stamp_jitter_s) if stamp_jitter_s else 0.0)
        for event in clock.push(audio[start:start + block_frames], stamp_s):
            made.append(event)
            timeline.handle(event)
    return made
