"""A drum loop synthesised in code for the offline demo: kick, snare and closed hats, no samples.

Pure numpy and seedable. Hit positions come from the style's `BeatSpec` strings (one bar each, on its own grid:
16 steps for sixteenths, 24 for sixteenth triplets, ...) through the integer timebase, so every hit starts on an
exact sample and the loop is exactly `bars` bars long; `drum_hits` and `beat_times_s` give the ground truth the
synthesiser used, for tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import RenderError
from engine.presets import BeatSpec
from engine.timebase import BEATS_PER_BAR, PPQN, TICKS_PER_BAR, ticks_to_samples

PEAK_DBFS = -6.0
VELOCITY_SPREAD = 0.12
INSTRUMENTS = ("kick", "snare", "hat")
_BASE_GAIN = {"kick": 1.0, "snare": 0.8, "hat": 0.35}


@dataclass(frozen=True)
class DrumHit:
    """One synthesised hit: which drum, where (integer samples from the loop start), how hard (0..1)."""

    instrument: str
    step: int
    position_samples: int
    velocity: float


def step_ticks(step: int, swing: float, steps_per_bar: int = 16) -> int:
    """Ticks from the start of the bar to a step of a bar cut into `steps_per_bar` steps.

    On a straight grid (8, 16, 32 steps) the odd steps are late by `swing` of a step; triplet grids (12, 24
    steps) already swing and stay straight.
    """
    step_len_ticks = TICKS_PER_BAR // steps_per_bar
    swung = step % 2 == 1 and steps_per_bar % 3 != 0
    return step * step_len_ticks + (round(swing * step_len_ticks) if swung else 0)


def loop_samples(tempo_bpm: float, bars: int, sample_rate: int) -> int:
    """Length in samples of `bars` 4/4 bars, measured on the absolute tick grid like every hit position."""
    return ticks_to_samples(bars * TICKS_PER_BAR, tempo_bpm, sample_rate)


def drum_hits(beat: BeatSpec, tempo_bpm: float, bars: int, sample_rate: int, seed: int = 0) -> list[DrumHit]:
    """Every hit the pattern asks for over `bars` bars, sorted by position, with seeded velocity variation."""
    if bars < 1:
        raise RenderError(f"bars must be at least 1, got {bars}; ask for one bar or more")
    rng = np.random.default_rng(seed)
    patterns = {"kick": beat.kick, "snare": beat.snare, "hat": beat.hat}
    hits = []
    for bar in range(bars):
        for instrument in INSTRUMENTS:
            pattern = patterns[instrument]
            steps_per_beat = len(pattern) // BEATS_PER_BAR
            for step, symbol in enumerate(pattern):
                if symbol != "x":
                    continue
                ticks = bar * TICKS_PER_BAR + step_ticks(step, beat.swing, len(pattern))
                accent = 1.0 if step % steps_per_beat == 0 else 0.85
                velocity = float(np.clip(accent * (1.0 + rng.uniform(-VELOCITY_SPREAD, VELOCITY_SPREAD)), 0.0, 1.0))
                hits.append(DrumHit(instrument, step, ticks_to_samples(ticks, tempo_bpm, sample_rate), velocity))
    hits.sort(key=lambda hit: (hit.position_samples, hit.instrument))
    return hits


def beat_times_s(tempo_bpm: float, bars: int, sample_rate: int) -> list[float]:
    """Times of the quarter-note beats of the loop (the truth a beat tracker should find), sample-exact."""
    return [ticks_to_samples(i * PPQN, tempo_bpm, sample_rate) / sample_rate for i in range(bars * BEATS_PER_BAR)]


def _decay(n_samples: int, sample_rate: int, time_constant_s: float) -> np.ndarray:
    return np.exp(-np.arange(n_samples) / (time_constant_s * sample_rate))


def _kick(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Sine swept from 160 Hz down to 48 Hz, with a 3 ms noise click on top."""
    n = int(0.35 * sample_rate)
    t = np.arange(n) / sample_rate
    freq_hz = 48.0 + (160.0 - 48.0) * np.exp(-t / 0.035)
    phase = 2.0 * np.pi * np.cumsum(freq_hz) / sample_rate
    body = np.sin(phase) * _decay(n, sample_rate, 0.09)
    click_n = int(0.003 * sample_rate)
    body[:click_n] += 0.5 * rng.uniform(-1.0, 1.0, click_n) * np.linspace(1.0, 0.0, click_n)
    return body


def _snare(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Brightened noise burst over a 190 Hz tone body."""
    n = int(0.25 * sample_rate)
    t = np.arange(n) / sample_rate
    noise = np.diff(rng.uniform(-1.0, 1.0, n + 1)) * 0.6 * _decay(n, sample_rate, 0.05)
    tone = np.sin(2.0 * np.pi * 190.0 * t) * 0.6 * _decay(n, sample_rate, 0.04)
    return noise + tone


def _hat(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Closed hat: white noise high-passed by a second difference, short decay."""
    n = int(0.06 * sample_rate)
    noise = np.diff(rng.uniform(-1.0, 1.0, n + 2), n=2) * 0.5
    return noise * _decay(n, sample_rate, 0.012)


def synth_beat(beat: BeatSpec, tempo_bpm: float, bars: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Render the pattern as float32 mono, exactly `loop_samples(...)` long, peak at -6 dBFS.

    Tails that run past the end wrap to the start, so the loop repeats seamlessly.
    """
    if tempo_bpm <= 0 or sample_rate <= 0:
        raise RenderError(
            f"tempo_bpm and sample_rate must be positive, got {tempo_bpm} and {sample_rate}; pass a real tempo and rate"
        )
    rng = np.random.default_rng(seed)
    sounds = {"kick": _kick(sample_rate, rng), "snare": _snare(sample_rate, rng), "hat": _hat(sample_rate, rng)}
    total = loop_samples(tempo_bpm, bars, sample_rate)
    out = np.zeros(total, dtype=np.float64)
    for hit in drum_hits(beat, tempo_bpm, bars, sample_rate, seed):
        sound = sounds[hit.instrument] * (_BASE_GAIN[hit.instrument] * hit.velocity)
        start = hit.position_samples
        while len(sound):
            chunk = sound[: total - start]
            out[start : start + len(chunk)] += chunk
            sound = sound[len(chunk) :]
            start = 0
    peak = float(np.max(np.abs(out)))
    if peak > 0.0:
        out *= 10.0 ** (PEAK_DBFS / 20.0) / peak
    return out.astype(np.float32)
