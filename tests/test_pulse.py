"""The beat bus without a clock (PulseTracker) on real aubio onsets, fed synthesised kits with known beats."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import push_in_odd_blocks

from engine.errors import CypherError
from engine.listen.beat import analyse_beat
from engine.listen.pulse import PulseTracker
from engine.presets import BeatSpec
from engine.synth import beat_times_s, synth_beat

RATE = 48000
BOOM_BAP = BeatSpec(kick="x.....x...x.....", snare="....x.......x...", hat="x.x.x.x.x.x.x.x.", swing=0.12)
TOLERANCE_S = 0.07


def two_tempi(first_bpm: float, second_bpm: float, bars: tuple[int, int], noise: float = 0.1,
              seed: int = 3) -> tuple[np.ndarray, list[float], float]:
    """A kit that changes tempo on a bar line, white noise `noise` of its RMS over it: audio, true beats, change."""
    first = synth_beat(BOOM_BAP, first_bpm, bars[0], RATE, seed=seed)
    second = synth_beat(BOOM_BAP, second_bpm, bars[1], RATE, seed=seed + 1)
    change_s = len(first) / RATE
    truth = beat_times_s(first_bpm, bars[0], RATE) + [change_s + t for t in beat_times_s(second_bpm, bars[1], RATE)]
    audio = np.concatenate((first, second))
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    audio = audio + np.random.default_rng(seed).normal(0.0, noise * rms, len(audio)).astype(np.float32)
    return audio, truth, change_s


def track(audio: np.ndarray, block: int = 1024, **kwargs: float) -> tuple[PulseTracker, list[float]]:
    """Stream the audio through a fresh tracker in blocks; the tracker and every beat it reported."""
    tracker = PulseTracker(RATE, **kwargs)
    found: list[float] = []
    for start in range(0, len(audio), block):
        found += tracker.push(audio[start : start + block])
    return tracker, found


def relock_s(found: list[float], truth: list[float], change_s: float, run: int = 4) -> float | None:
    """From the change to the first of `run` true beats in a row each heard, with no other beat among them."""
    after = [t for t in truth if t >= change_s]
    for k in range(len(after) - run + 1):
        window = after[k : k + run]
        if all(any(abs(f - t) <= TOLERANCE_S for f in found) for t in window):
            between = [f for f in found if window[0] - TOLERANCE_S <= f <= window[-1] + TOLERANCE_S]
            if len(between) == run:
                return window[0] - change_s
    return None


@pytest.mark.parametrize(("first_bpm", "factor", "bars"), [(60.0, 1.08, (3, 3)), (90.0, 1.08, (4, 5)),
                                                           (180.0, 0.92, (8, 8))])
def test_relocks_within_two_seconds_of_a_tempo_change(first_bpm: float, factor: float, bars: tuple[int, int]) -> None:
    audio, truth, change_s = two_tempi(first_bpm, first_bpm * factor, bars)
    tracker, found = track(audio)
    relock = relock_s(found, truth, change_s)
    assert relock is not None and relock <= 2.0
    assert tracker.tempo_bpm == pytest.approx(first_bpm * factor, abs=0.5)
    assert tracker.confidence > 0.9
    late = [f for f in found if f >= 4.5]
    assert late and all(min(abs(f - t) for t in truth) <= 0.005 for f in late)  # on the hits' attacks


def test_finds_the_quarter_note_where_aubio_doubles_a_slow_beat() -> None:
    audio = synth_beat(BOOM_BAP, 70.0, 6, RATE, seed=1)
    assert analyse_beat(audio, RATE).tempo_bpm == pytest.approx(140.0, abs=2.0)  # aubio alone: the eighths
    tracker, found = track(audio)
    assert tracker.tempo_bpm == pytest.approx(70.0, abs=0.5)
    assert len(found) >= 10 and found[0] <= 4.5
    next_s = tracker.next_beat_s
    assert next_s is not None and min(abs(next_s - t) for t in beat_times_s(70.0, 8, RATE)) <= 0.01


def test_a_change_too_large_to_snap_across_is_found_again() -> None:
    audio, truth, change_s = two_tempi(90.0, 120.0, (4, 8), noise=0.0)
    tracker, found = track(audio)
    relock = relock_s(found, truth, change_s)
    assert relock is not None and relock <= 5.0
    assert tracker.tempo_bpm == pytest.approx(120.0, abs=0.5)


def _random_hits(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    audio = np.zeros(n, dtype=np.float32)
    burst = (rng.uniform(-1, 1, 2400) * np.exp(-np.arange(2400) / 300.0)).astype(np.float32) * 0.5
    for start in np.sort(rng.uniform(0, seconds - 0.1, int(seconds * 2.2))):
        s = round(start * RATE)
        audio[s : s + len(burst)] += burst[: n - s]
    return audio


@pytest.mark.parametrize("kind", ["silence", "noise", "random hits"])
def test_no_pulse_on_silence_noise_and_random_hits(kind: str) -> None:
    seconds = 15.0
    audio = {
        "silence": np.zeros(round(seconds * RATE), dtype=np.float32),
        "noise": np.random.default_rng(2).normal(0.0, 0.1, round(seconds * RATE)).astype(np.float32),
        "random hits": _random_hits(seconds, 7),
    }[kind]
    tracker, found = track(audio)
    assert tracker.tempo_bpm is None and tracker.next_beat_s is None
    assert found == [] and tracker.confidence == 0.0


def test_clipped_kit_is_still_tracked() -> None:
    audio = np.clip(synth_beat(BOOM_BAP, 90.0, 5, RATE, seed=2) * 8.0, -1.0, 1.0)
    tracker, found = track(audio)
    assert tracker.tempo_bpm == pytest.approx(90.0, abs=0.5)
    assert len(found) >= 8


def test_beats_stop_soon_after_the_beat_bus_goes_quiet() -> None:
    beat = synth_beat(BOOM_BAP, 90.0, 4, RATE)
    tracker, found = track(np.concatenate((beat, np.zeros(RATE * 4, dtype=np.float32))))
    end_s = len(beat) / RATE
    assert found and max(found) <= end_s + 1.0
    assert tracker.tempo_bpm is None


def test_push_in_odd_blocks_matches_whole_clip() -> None:
    audio, _, _ = two_tempi(110.0, 118.8, (3, 3))
    _, whole = track(audio, block=len(audio))
    tracker = PulseTracker(RATE)
    found = push_in_odd_blocks(tracker.push, audio)
    assert found == whole and tuple(found) == tracker.beats_s and len(found) >= 8


def test_bad_input_says_what_to_do() -> None:
    with pytest.raises(CypherError, match="mono"):
        PulseTracker(RATE).push(np.zeros((2, 512), dtype=np.float32))
    with pytest.raises(CypherError, match="tempo range"):
        PulseTracker(RATE, min_bpm=100.0, max_bpm=150.0)
    with pytest.raises(CypherError, match="onset method"):
        PulseTracker(RATE, onset_method="nonsense")
    with pytest.raises(CypherError, match="positive"):
        PulseTracker(0)
