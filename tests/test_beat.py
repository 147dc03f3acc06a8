"""The beat bus listener on real aubio, fed synthesised kits whose beat times are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import push_in_odd_blocks

from engine.errors import CypherError
from engine.listen.beat import BeatTracker, analyse_beat, fit_tempo_bpm, fold_tempo
from engine.presets import BeatSpec
from engine.synth import beat_times_s, synth_beat

SAMPLE_RATE = 48000
BOOM_BAP = BeatSpec(kick="x.....x...x.....", snare="....x.......x...", hat="x.x.x.x.x.x.x.x.", swing=0.1)
TOLERANCE_S = 0.07
SETTLE_S = 3.0


def f_measure(found_s: tuple[float, ...], truth_s: list[float], tolerance_s: float = TOLERANCE_S) -> float:
    """Beat-tracking F-measure: each true beat matched to at most one found beat within the tolerance."""
    found = [t for t in found_s if t >= SETTLE_S]
    truth = [t for t in truth_s if t >= SETTLE_S]
    used: set[int] = set()
    for true_s in truth:
        near = [i for i, t in enumerate(found) if abs(t - true_s) <= tolerance_s and i not in used]
        if near:
            used.add(min(near, key=lambda i: abs(found[i] - true_s)))
    if not used:
        return 0.0
    precision, recall = len(used) / len(found), len(used) / len(truth)
    return 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize(("tempo_bpm", "bars"), [(70.0, 6), (90.0, 6), (140.0, 8)])
def test_tracks_tempo_and_beats_with_the_clock_hint(tempo_bpm: float, bars: int) -> None:
    audio = synth_beat(BOOM_BAP, tempo_bpm, bars, SAMPLE_RATE, seed=1)
    analysis = analyse_beat(audio, SAMPLE_RATE, reference_bpm=tempo_bpm)
    assert analysis.tempo_bpm is not None
    assert analysis.tempo_bpm == pytest.approx(tempo_bpm, abs=1.0)
    assert analysis.confidence > 1.0
    assert f_measure(analysis.beats_s, beat_times_s(tempo_bpm, bars, SAMPLE_RATE)) >= 0.9
    assert list(analysis.beats_s) == sorted(analysis.beats_s)


def test_without_the_hint_aubio_doubles_a_slow_beat_and_the_hint_folds_it() -> None:
    audio = synth_beat(BOOM_BAP, 70.0, 6, SAMPLE_RATE)
    unhinted = analyse_beat(audio, SAMPLE_RATE)
    assert unhinted.tempo_bpm == pytest.approx(140.0, abs=2.0)  # aubio's prior sits at 120 BPM
    assert fold_tempo(unhinted.tempo_bpm, 70.0) == pytest.approx(70.0, abs=1.0)


def test_push_in_odd_blocks_matches_whole_clip() -> None:
    audio = synth_beat(BOOM_BAP, 90.0, 4, SAMPLE_RATE)
    tracker = BeatTracker(SAMPLE_RATE, reference_bpm=90.0)
    found = push_in_odd_blocks(tracker.push, audio)
    assert tuple(found) == tracker.beats_s == analyse_beat(audio, SAMPLE_RATE, reference_bpm=90.0).beats_s
    assert all(0.0 <= t <= len(audio) / SAMPLE_RATE for t in found)


@pytest.mark.parametrize("reference_bpm", [None, 90.0])
def test_silence_gives_no_tempo_no_beats_low_confidence(reference_bpm: float | None) -> None:
    analysis = analyse_beat(np.zeros(SAMPLE_RATE * 12, dtype=np.float32), SAMPLE_RATE, reference_bpm=reference_bpm)
    assert analysis.tempo_bpm is None
    assert analysis.beats_s == ()
    assert analysis.confidence < 0.5


def test_noise_has_no_confident_tempo() -> None:
    noise = np.random.default_rng(2).normal(0.0, 0.1, SAMPLE_RATE * 12).astype(np.float32)
    analysis = analyse_beat(noise, SAMPLE_RATE, reference_bpm=90.0)
    assert analysis.confidence < 0.5
    assert analysis.tempo_bpm is None


def test_beats_stop_when_the_beat_bus_goes_quiet() -> None:
    beat = synth_beat(BOOM_BAP, 90.0, 4, SAMPLE_RATE)
    audio = np.concatenate((beat, np.zeros(SAMPLE_RATE * 6, dtype=np.float32)))
    analysis = analyse_beat(audio, SAMPLE_RATE, reference_bpm=90.0)
    end_s = len(beat) / SAMPLE_RATE
    assert analysis.beats_s and max(analysis.beats_s) <= end_s + 1.5


def test_fold_tempo_picks_the_octave_nearest_the_reference() -> None:
    assert fold_tempo(141.0, 70.0) == 70.5
    assert fold_tempo(88.0, 175.0) == 176.0
    assert fold_tempo(92.0, 90.0) == 92.0


def test_fit_tempo_survives_skipped_beats_and_a_slip() -> None:
    period_s = 60.0 / 93.0
    times = [1.0 + i * period_s for i in range(20) if i not in (5, 11)]  # two beats skipped
    times += [times[-1] + 1.5 * period_s + i * period_s for i in range(4)]  # slipped onto the off-beat
    assert fit_tempo_bpm(times, period_s * 1.02) == pytest.approx(93.0, abs=0.01)
    assert fit_tempo_bpm(times[:3], period_s) is None


def test_bad_input_says_what_to_do() -> None:
    with pytest.raises(CypherError, match="mono"):
        BeatTracker(SAMPLE_RATE).push(np.zeros((2, 512), dtype=np.float32))
    with pytest.raises(CypherError, match="reference_bpm"):
        BeatTracker(SAMPLE_RATE, reference_bpm=5.0)


def _errors_ms(found_s: tuple[float, ...], truth_s: list[float]) -> list[float]:
    """Signed error of each beat after SETTLE_S against the nearest true beat within the tolerance, in ms."""
    truth = np.asarray(truth_s)
    out = []
    for t in found_s:
        nearest = float(truth[np.argmin(np.abs(truth - t))])
        if t >= SETTLE_S and abs(t - nearest) <= TOLERANCE_S:
            out.append(1000.0 * (t - nearest))
    return out


@pytest.mark.parametrize("tempo_bpm", [75.0, 140.0])
def test_beats_are_moved_onto_the_hits_attack(tempo_bpm: float) -> None:
    audio = synth_beat(BOOM_BAP, tempo_bpm, 8, SAMPLE_RATE, seed=5)
    audio = audio + np.random.default_rng(6).normal(0.0, 0.01, len(audio)).astype(np.float32)
    truth = beat_times_s(tempo_bpm, 8, SAMPLE_RATE)
    refined = _errors_ms(analyse_beat(audio, SAMPLE_RATE, reference_bpm=tempo_bpm).beats_s, truth)
    tracker = BeatTracker(SAMPLE_RATE, reference_bpm=tempo_bpm, attack_window_s=0.0)
    tracker.push(audio)
    raw = _errors_ms(tracker.beats_s, truth)
    assert len(refined) >= 10 and max(abs(e) for e in refined) <= 2.5
    assert np.ptp(raw) > 2.0 * np.ptp(refined)  # aubio's own times sit on its 10.7 ms hop grid


def test_retune_follows_a_tempo_change_on_one_stream_time() -> None:
    first = synth_beat(BOOM_BAP, 90.0, 6, SAMPLE_RATE, seed=1)
    second = synth_beat(BOOM_BAP, 120.0, 8, SAMPLE_RATE, seed=2)
    change_s = len(first) / SAMPLE_RATE
    truth = beat_times_s(90.0, 6, SAMPLE_RATE) + [change_s + t for t in beat_times_s(120.0, 8, SAMPLE_RATE)]
    tracker = BeatTracker(SAMPLE_RATE, reference_bpm=90.0)
    tracker.push(first)
    tracker.retune(120.0)
    tracker.push(second)
    assert tracker.tempo_bpm == pytest.approx(120.0, abs=1.0)
    after = tuple(t for t in tracker.beats_s if t >= change_s + 8.0)
    assert len(after) >= 12
    assert len(_errors_ms(after, truth)) == len(after)  # every beat after the change lands on a true beat
    with pytest.raises(CypherError, match="attack_window_s"):
        BeatTracker(SAMPLE_RATE, attack_window_s=0.5)
