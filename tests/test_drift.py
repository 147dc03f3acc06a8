"""The beat-vs-clock drift watch: real aubio on synthesised kits whose beats are known, then the pure logic."""

from __future__ import annotations

import re

import numpy as np
import pytest

from engine.errors import CypherError
from engine.listen.beat import analyse_beat
from engine.listen.drift import DriftWatch
from engine.presets import BeatSpec
from engine.synth import beat_times_s, synth_beat

SAMPLE_RATE = 48000
BOOM_BAP = BeatSpec(kick="x.....x...x.....", snare="....x.......x...", hat="x.x.x.x.x.x.x.x.", swing=0.12)


def suggested_delay_ms(message: str) -> int:
    """The sync-delay value the warning suggests setting (from 0)."""
    found = re.search(r"set it to ([+-]?\d+) ms", message)
    assert found, message
    return int(found.group(1))


def heard_beats(tempo_bpm: float, bars: int, audio_late_ms: float, noise: float = 0.02) -> tuple[float, ...]:
    """Beats aubio finds in a kit that reaches the beat bus `audio_late_ms` after the clock's beats (noise added)."""
    kit = synth_beat(BOOM_BAP, tempo_bpm, bars, SAMPLE_RATE, seed=3)
    kit = kit + np.random.default_rng(4).normal(0.0, noise, len(kit)).astype(np.float32)
    delay = np.zeros(round(audio_late_ms * SAMPLE_RATE / 1000.0), dtype=np.float32)
    return analyse_beat(np.concatenate((delay, kit)), SAMPLE_RATE, reference_bpm=tempo_bpm).beats_s


@pytest.mark.parametrize("tempo_bpm", [72.0, 96.0, 150.0])
def test_quiet_on_aligned_audio(tempo_bpm: float) -> None:
    bars = 8
    watch = DriftWatch()
    watch.push_clock_beats(beat_times_s(tempo_bpm, bars + 1, SAMPLE_RATE))
    watch.push_beats(heard_beats(tempo_bpm, bars, 0.0))
    assert watch.locked()
    assert watch.offset_ms is not None and abs(watch.offset_ms) < 3.0
    assert watch.warning() is None


@pytest.mark.parametrize("tempo_bpm", [72.0, 96.0, 150.0])
def test_fires_on_audio_20_ms_late_and_says_raise_the_sync_delay(tempo_bpm: float) -> None:
    bars = 8
    watch = DriftWatch()
    watch.push_clock_beats(beat_times_s(tempo_bpm, bars + 1, SAMPLE_RATE))
    watch.push_beats(heard_beats(tempo_bpm, bars, 20.0))
    assert watch.offset_ms == pytest.approx(20.0, abs=3.0)
    message = watch.warning()
    assert message is not None
    assert "late" in message and "raise" in message
    assert 17 <= suggested_delay_ms(message) <= 23


def test_fires_on_audio_20_ms_early_and_says_lower_the_sync_delay() -> None:
    tempo_bpm, bars = 96.0, 8
    watch = DriftWatch()
    watch.push_clock_beats([t + 0.020 for t in beat_times_s(tempo_bpm, bars + 1, SAMPLE_RATE)])
    watch.push_beats(heard_beats(tempo_bpm, bars, 0.0))
    assert watch.offset_ms == pytest.approx(-20.0, abs=3.0)
    message = watch.warning()
    assert message is not None and "early" in message and "lower" in message
    assert -23 <= suggested_delay_ms(message) <= -17


def test_threshold_is_the_producers_choice() -> None:
    tempo_bpm, bars = 96.0, 8
    beats = heard_beats(tempo_bpm, bars, 20.0)
    strict, loose = DriftWatch(threshold_ms=10.0), DriftWatch(threshold_ms=30.0)
    for watch in (strict, loose):
        watch.push_clock_beats(beat_times_s(tempo_bpm, bars + 1, SAMPLE_RATE))
        watch.push_beats(beats)
    assert strict.warning() is not None and loose.warning() is None


def test_noise_and_silence_never_lock_or_warn() -> None:
    clock = beat_times_s(96.0, 8, SAMPLE_RATE)
    noise = np.random.default_rng(5).normal(0.0, 0.1, SAMPLE_RATE * 20).astype(np.float32)
    for audio in (noise, np.zeros(SAMPLE_RATE * 20, dtype=np.float32)):
        watch = DriftWatch()
        watch.push_clock_beats(clock)
        watch.push_beats(analyse_beat(audio, SAMPLE_RATE, reference_bpm=96.0).beats_s)
        assert not watch.locked()
        assert watch.warning() is None


def test_offbeats_and_misses_do_not_move_the_median() -> None:
    period_s = 0.625
    clock = [i * period_s for i in range(40)]
    heard = [t + 0.025 for t in clock[2:30]]
    heard += [clock[k] + period_s / 2 for k in (5, 9, 13)]  # the tracker slipped onto the off-beat
    heard += [clock[k] + 0.070 for k in (20, 21)]  # two late flams
    watch = DriftWatch(window_beats=32)
    watch.push_clock_beats(clock)
    watch.push_beats(sorted(heard))
    assert watch.offset_ms == pytest.approx(25.0, abs=0.01)
    assert watch.matches == 30  # off-beats are too far from any clock beat to match


def test_heard_beats_wait_for_the_clock_beat_after_them() -> None:
    watch = DriftWatch(min_matches=2)
    watch.push_beats([0.512, 1.012, 1.512])
    assert watch.matches == 0
    watch.push_clock_beats([0.5, 1.0])
    assert watch.matches == 1  # 1.012 may still belong to a clock beat after 1.0
    watch.push_clock_beats([1.5, 2.0])
    assert watch.matches == 3 and watch.offset_ms == pytest.approx(12.0)


def test_refreshed_clock_predictions_are_not_counted_twice() -> None:
    watch = DriftWatch(min_matches=3)
    watch.push_clock_beats([0.0, 0.5, 1.0])
    watch.push_clock_beats([0.5, 1.0004, 1.5, 2.0])  # the follower predicts again, 0.4 ms later
    watch.push_beats([0.51, 1.01, 1.51, 2.01])
    assert watch.matches == 3  # 2.01 waits for the clock beat after it
    assert watch.offset_ms == pytest.approx(10.0)


def test_the_lock_lapses_when_the_beat_bus_stops() -> None:
    clock = [i * 0.5 for i in range(20)]
    watch = DriftWatch()
    watch.push_clock_beats(clock)
    watch.push_beats(clock[:10])
    assert watch.locked(now_s=5.0) and not watch.locked(now_s=9.0)
    assert watch.heard_grid_s([10.0, 10.5]) == [10.0, 10.5]
    assert DriftWatch().heard_grid_s([10.0]) == []


def test_bad_input_says_what_is_wrong() -> None:
    watch = DriftWatch()
    with pytest.raises(CypherError, match="numbers of seconds"):
        watch.push_beats(["soon"])  # type: ignore[list-item]
    with pytest.raises(CypherError, match="finite"):
        watch.push_clock_beats([float("nan")])
    with pytest.raises(CypherError, match="positive"):
        DriftWatch(threshold_ms=0.0)
    with pytest.raises(CypherError, match="min_matches"):
        DriftWatch(window_beats=4, min_matches=8)
