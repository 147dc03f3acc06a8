"""Ableton Link with two real peers in this process, and the MIDI clock compared against it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from bridge.clock import ClockFollower
from bridge.link import DriftMonitor, LinkClock, LinkSnapshot, leading_clock, midi_offset_ms, wrap_beats
from engine.errors import ClockError
from engine.events import ClockTick, TransportStart
from engine.timebase import PPQN, TICKS_PER_BAR


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline_s:
            return False
        time.sleep(0.01)
    return True


def midi_clock_on(snapshot: LinkSnapshot, offset_s: float, bars: int = 2) -> ClockFollower:
    """A follower fed Start and `bars` bars of clock on Link's bar lines, each tick `offset_s` late."""
    first_bar = 4.0 * (snapshot.beat // 4.0 - bars)
    follower = ClockFollower()
    follower.feed(TransportStart(snapshot.time_of_beat(first_bar) - 0.001))
    for k in range(bars * 96 + 1):
        follower.feed(ClockTick(snapshot.time_of_beat(first_bar + k / 24.0) + offset_s))
    return follower


def test_two_link_peers_share_tempo_and_bar_lines() -> None:
    with LinkClock(120.0) as first, LinkClock(97.0) as second:
        assert wait_for(lambda: first.num_peers > 0 and second.num_peers > 0, 3.0), "Link peers never met"
        first.set_tempo(133.0)  # which tempo wins on joining varies: set it once peers are there
        assert wait_for(lambda: abs(second.tempo_bpm - 133.0) < 0.01, 2.0)
        assert leading_clock(second, ClockFollower()) is second
        a, b = first.snapshot(), second.snapshot()
        # Same session timeline: beats agree modulo the bar (the quantum) at the same host time.
        assert abs(wrap_beats(a.beat_at(b.time_s) - b.beat)) < 0.002
        next_bar = (second.position_ticks // TICKS_PER_BAR + 1) * TICKS_PER_BAR
        bar_time_s = second.predict_time_s(next_bar)
        assert 0 < bar_time_s - time.monotonic() <= 4 * 60 / 133.0 + 0.01
        assert abs(wrap_beats(first.snapshot().beat_at(bar_time_s))) < 0.002  # a bar line for both
        assert second.transport == "playing"
        with pytest.raises(ClockError, match="outside"):
            first.set_tempo(5000.0)


def test_a_midi_clock_late_against_link_is_named_in_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with LinkClock(120.0) as link:
        assert link.num_peers == 0
        snapshot = link.snapshot()
    assert leading_clock(None, follower := ClockFollower()) is follower
    in_time, late = midi_clock_on(snapshot, 0.0), midi_clock_on(snapshot, 0.0125)
    monitor = DriftMonitor(threshold_ms=5.0, interval_s=10.0)
    with caplog.at_level(logging.WARNING, logger="bridge.link"):
        offset_ms = monitor.check(snapshot, in_time)
        assert offset_ms is not None and abs(offset_ms) < 0.5
        assert not caplog.records
        for _ in range(5):  # one warning, then quiet for the interval
            offset_ms = monitor.check(snapshot, late)
    assert offset_ms == pytest.approx(12.5, abs=0.5)
    assert [r.getMessage()[:32] for r in caplog.records] == ["MIDI clock is 12.5 ms behind Lin"]
    assert monitor.warnings == 1 and monitor.suppressed == 4


def test_offsets_fold_modulo_the_bar() -> None:
    snapshot = LinkSnapshot(tempo_bpm=120.0, beat=10.0, time_s=100.0, num_peers=1, playing=True)
    assert snapshot.time_of_beat(12.0) == pytest.approx(101.0)
    assert snapshot.beat_at(99.0) == pytest.approx(8.0)
    # The song is at bar 1 beat 1 (position 0) while Link is at beat 12: the same place in the bar.
    assert midi_offset_ms(snapshot, 0, 101.0) == pytest.approx(0.0, abs=1e-6)
    assert midi_offset_ms(snapshot, PPQN, 101.0 + 0.5 + 0.003) == pytest.approx(3.0, abs=1e-6)
    assert midi_offset_ms(snapshot, 0, 101.0 - 0.02) == pytest.approx(-20.0, abs=1e-6)
    assert wrap_beats(3.9) == pytest.approx(-0.1)
