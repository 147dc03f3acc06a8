"""The demo drum synthesiser: exact length, hits where the pattern says, swing, level, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import CypherError
from engine.presets import BeatSpec
from engine.synth import beat_times_s, drum_hits, loop_samples, step_ticks, synth_beat
from engine.timebase import TICKS_PER_BAR, TICKS_PER_SIXTEENTH, bar_samples, ticks_to_samples

SPARSE = BeatSpec(kick="x.......x.......", snare="....x.......x...", hat="................", swing=0.0)
BOOM_BAP = BeatSpec(kick="x.....x...x.....", snare="....x.......x...", hat="x.x.x.x.x.x.x.x.", swing=0.12)


@pytest.mark.parametrize(("tempo_bpm", "sample_rate", "bars"), [(90.0, 48000, 4), (93.7, 44100, 3), (140.0, 22050, 2)])
def test_loop_is_exactly_n_bars(tempo_bpm: float, sample_rate: int, bars: int) -> None:
    audio = synth_beat(BOOM_BAP, tempo_bpm, bars, sample_rate)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == ticks_to_samples(bars * TICKS_PER_BAR, tempo_bpm, sample_rate)
    assert abs(len(audio) - bars * bar_samples(tempo_bpm, sample_rate)) <= bars


def test_peak_is_minus_six_dbfs() -> None:
    audio = synth_beat(BOOM_BAP, 90.0, 2, 48000)
    assert 20 * np.log10(np.max(np.abs(audio))) == pytest.approx(-6.0, abs=0.01)


def _onset_ratio(audio: np.ndarray, position: int, window: int) -> float:
    """Energy just after a position over energy just before it."""
    after = float(np.sum(audio[position : position + window].astype(np.float64) ** 2))
    before = float(np.sum(audio[max(0, position - window) : position].astype(np.float64) ** 2))
    return after / max(before, 1e-12)


@pytest.mark.parametrize("tempo_bpm", [70.0, 90.0, 140.0])
def test_energy_jumps_exactly_where_the_pattern_says(tempo_bpm: float) -> None:
    """At every straight and every swung sixteenth position, energy jumps if and only if the pattern hits there."""
    sample_rate, bars, swing = 48000, 2, BOOM_BAP.swing
    audio = synth_beat(BOOM_BAP, tempo_bpm, bars, sample_rate)
    window = sample_rate // 50  # 20 ms: a full cycle of the kick's 48 Hz tail
    sixteenth_s = 60.0 / tempo_bpm / 4
    for bar in range(bars):
        for index in range(16):
            hit = any(pattern[index] == "x" for pattern in (BOOM_BAP.kick, BOOM_BAP.snare, BOOM_BAP.hat))
            straight_s = (bar * 16 + index) * sixteenth_s
            swung_s = straight_s + (swing * sixteenth_s if index % 2 else 0.0)
            candidates = {round(straight_s * sample_rate), round(swung_s * sample_rate)}
            expected = round(swung_s * sample_rate)
            for position in candidates:
                ratio = _onset_ratio(audio, position, window)
                if hit and position == expected:
                    assert ratio > 2.0, f"no onset at bar {bar} step {index} ({position})"
                else:
                    assert ratio < 1.0, f"onset where the pattern rests: bar {bar} step {index} ({position})"
    # and the hit lands on the sample: the 20 ms before a kick that follows a rest is (near) silence
    first_kick = round(16 * sixteenth_s * sample_rate)
    assert np.max(np.abs(audio[first_kick - window : first_kick])) < 0.05 * np.max(np.abs(audio[first_kick:]))


def test_swing_delays_off_beat_sixteenths_only() -> None:
    hats = BeatSpec(kick="................", snare="................", hat="xx..............", swing=0.25)
    sample_rate, tempo_bpm = 48000, 100.0
    audio = synth_beat(hats, tempo_bpm, 1, sample_rate)
    first = int(np.flatnonzero(np.abs(audio) > 1e-4)[0])
    assert first == 0
    straight = ticks_to_samples(TICKS_PER_SIXTEENTH, tempo_bpm, sample_rate)
    swung = ticks_to_samples(step_ticks(1, 0.25), tempo_bpm, sample_rate)
    assert swung > straight
    hits = drum_hits(hats, tempo_bpm, 1, sample_rate)
    assert [h.position_samples for h in hits] == [0, swung]
    # the second hat's onset is at the swung position: silence before it once the first has died away
    assert np.max(np.abs(audio[swung - 200 : swung])) < 0.01 * np.max(np.abs(audio[swung : swung + 100]))


def test_seeded_and_varied() -> None:
    one = synth_beat(BOOM_BAP, 90.0, 2, 22050, seed=3)
    again = synth_beat(BOOM_BAP, 90.0, 2, 22050, seed=3)
    other = synth_beat(BOOM_BAP, 90.0, 2, 22050, seed=4)
    assert np.array_equal(one, again)
    assert not np.array_equal(one, other)
    velocities = [h.velocity for h in drum_hits(BOOM_BAP, 90.0, 2, 22050, seed=3) if h.instrument == "hat"]
    assert len(set(velocities)) > 4 and all(0.0 < v <= 1.0 for v in velocities)


def test_beat_times_are_the_quarter_notes() -> None:
    times = beat_times_s(120.0, 2, 48000)
    assert times == pytest.approx([0.5 * i for i in range(8)])
    assert len(synth_beat(SPARSE, 120.0, 2, 48000)) == loop_samples(120.0, 2, 48000) == 4 * 48000


def test_bad_arguments_raise_cypher_errors() -> None:
    with pytest.raises(CypherError, match="bars"):
        synth_beat(SPARSE, 90.0, 0, 48000)
    with pytest.raises(CypherError, match="tempo_bpm"):
        synth_beat(SPARSE, 0.0, 1, 48000)
