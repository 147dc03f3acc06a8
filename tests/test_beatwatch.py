"""The beat bus against the MIDI clock, bar by bar: the hits at the clock's beats of a style's real beat, played
late, early or in time, and what the panel is told."""

import numpy as np
import pytest

from bridge.addresses import IN_TIME
from bridge.clock import ClockFollower
from engine.events import ClockTick, TransportStart
from engine.listen.beatwatch import BeatBusWatch
from engine.presets import load_style
from engine.render import ArrayBus
from engine.synth import synth_beat

RATE = 48000
BARS = 8


def follower_at(tempo_bpm: float) -> ClockFollower:
    """A follower that heard a steady clock from host time 100 s: bar b's line is at 100 + b bars."""
    follower = ClockFollower()
    period = 60.0 / (tempo_bpm * 24)
    follower.feed(TransportStart(99.999))
    for n in range(97):
        follower.feed(ClockTick(100.0 + n * period))
    return follower


def watch_beat(style_name: str, tempo_bpm: float, late_s: float) -> tuple[BeatBusWatch, list[tuple[float, str]]]:
    style = load_style(style_name)
    bar_len = round(4 * 60.0 / tempo_bpm * RATE)
    beat = np.zeros(BARS * bar_len, dtype=np.float32)
    drums = synth_beat(style.beat, tempo_bpm, BARS, RATE, seed=1)[: len(beat)]
    beat[: len(drums)] = drums
    beat = beat + np.random.default_rng(1).normal(0.0, 0.003, len(beat)).astype(np.float32)  # a noise floor
    shift = round(late_s * RATE)
    played = np.zeros(BARS * bar_len, dtype=np.float32)  # host time 100 s is sample 0 of bar 0
    if shift >= 0:
        played[shift:] = beat[: len(played) - shift]
    else:
        played[: len(played) + shift] = beat[-shift:]
    reports: list[tuple[float, str]] = []
    watch = BeatBusWatch(ArrayBus(played, bar_len), follower_at(tempo_bpm), RATE,
                         report=lambda offset_ms, advice: reports.append((offset_ms, advice)))
    try:
        for bar in range(BARS):
            watch.hear(bar)
    finally:
        watch.close()
    return watch, reports


@pytest.mark.parametrize("style_name, tempo_bpm", [("boom_bap", 90.0), ("trap", 140.0), ("grime", 140.0)])
def test_a_beat_20_ms_late_is_reported_with_what_to_set(style_name: str, tempo_bpm: float) -> None:
    watch, reports = watch_beat(style_name, tempo_bpm, 0.020)
    assert reports, (watch.watch.matches, watch.watch.offset_ms, watch.watch.spread_ms)
    offset_ms, advice = reports[0]
    assert 17.0 < offset_ms < 23.0
    assert "late" in advice and "raise Live's MIDI Clock Sync Delay by 2" in advice


def test_a_beat_15_ms_early_is_reported_the_other_way() -> None:
    _, reports = watch_beat("boom_bap", 90.0, -0.015)
    assert reports and -18.0 < reports[0][0] < -12.0 and "lower Live's MIDI Clock Sync Delay" in reports[0][1]


@pytest.mark.parametrize("style_name, tempo_bpm", [("boom_bap", 90.0), ("drill", 142.0)])
def test_a_beat_in_time_says_nothing(style_name: str, tempo_bpm: float) -> None:
    watch, reports = watch_beat(style_name, tempo_bpm, 0.0)
    assert reports == [] and watch.advice == IN_TIME
    assert watch.watch.offset_ms is not None and abs(watch.watch.offset_ms) < 3.0  # it did measure


def test_silence_on_the_beat_bus_says_nothing() -> None:
    follower = follower_at(120.0)
    reports: list = []
    watch = BeatBusWatch(ArrayBus(np.zeros(BARS * 96000, np.float32), 96000), follower, RATE,
                         report=lambda *args: reports.append(args))
    for bar in range(BARS):
        watch.hear(bar)
    watch.close()
    assert reports == [] and watch.watch.offset_ms is None
