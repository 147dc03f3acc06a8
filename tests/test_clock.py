"""The clock follower on synthetic tick times: tempo accuracy, transport and positions, robustness."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bridge.clock import MAX_BUNCHED_CLOCKS, ClockFollower, EmaFollower, clock_period_s
from bridge.clockgen import jittered_tick_times_s
from engine.errors import ClockError
from engine.events import (
    ClockTick,
    ControlChange,
    SongPosition,
    TransportContinue,
    TransportStart,
    TransportStop,
)
from engine.timebase import TICKS_PER_BAR, TICKS_PER_MIDI_CLOCK, Position

START_S = 1000.0
JITTER_RMS_S = 0.001
SEEDS = range(40)


def feed_ticks(follower: ClockFollower | EmaFollower, times_s: np.ndarray) -> None:
    for time_s in times_s:
        follower.feed(ClockTick(float(time_s)))


def started_follower(tempo_bpm: float, clocks: int, seed: int) -> tuple[ClockFollower, EmaFollower]:
    """A follower and the EMA baseline after Start and `clocks` jittered clocks."""
    times_s = jittered_tick_times_s(START_S, tempo_bpm, clocks, JITTER_RMS_S, np.random.default_rng(seed))
    follower, ema = ClockFollower(), EmaFollower()
    follower.feed(TransportStart(START_S - 0.001))
    feed_ticks(follower, times_s)
    feed_ticks(ema, times_s)
    return follower, ema


def rms_tempo_error(tempo_bpm: float, clocks: int) -> tuple[float, float]:
    """RMS tempo error over the seeds, of the line fit and of the EMA baseline."""
    errors = []
    for seed in SEEDS:
        follower, ema = started_follower(tempo_bpm, clocks, seed)
        assert follower.tempo_bpm is not None and ema.tempo_bpm is not None
        errors.append((follower.tempo_bpm - tempo_bpm, ema.tempo_bpm - tempo_bpm))
    fit, baseline = np.array(errors).T
    return float(np.sqrt(np.mean(fit**2))), float(np.sqrt(np.mean(baseline**2)))


def cramer_rao_tempo_rms(tempo_bpm: float, clocks: int) -> float:
    """The best RMS tempo error any estimator can reach from `clocks` ticks with Gaussian jitter."""
    slope_rms_s = JITTER_RMS_S / math.sqrt(clocks * (clocks**2 - 1) / 12)
    return tempo_bpm * slope_rms_s / clock_period_s(tempo_bpm)


@pytest.mark.parametrize("tempo_bpm", [60.0, 120.0, 200.0])
def test_tempo_one_bar_after_start_is_near_the_cramer_rao_bound_and_beats_ema(tempo_bpm: float) -> None:
    fit_rms, ema_rms = rms_tempo_error(tempo_bpm, 96)
    assert fit_rms <= 1.3 * cramer_rao_tempo_rms(tempo_bpm, 96)
    assert ema_rms > 20 * fit_rms
    if tempo_bpm <= 120:
        assert fit_rms <= 0.05
    else:
        # At 200 BPM one bar of 1 ms jitter bounds any estimator at 0.059 BPM RMS; two bars are enough.
        assert rms_tempo_error(tempo_bpm, 192)[0] <= 0.05


def test_no_tempo_before_enough_ticks_and_no_prediction_without_one() -> None:
    follower = ClockFollower(min_ticks=6)
    follower.feed(TransportStart(START_S))
    feed_ticks(follower, jittered_tick_times_s(START_S, 120.0, 5, 0.0, np.random.default_rng(0)))
    assert follower.tempo_bpm is None
    with pytest.raises(ClockError, match="no tempo yet"):
        follower.predict_time_s(0)
    follower.feed(ClockTick(START_S + 5 * clock_period_s(120.0)))
    assert follower.tempo_bpm == pytest.approx(120.0, abs=1e-6)


def test_start_stop_continue_and_song_position_move_the_position() -> None:
    period_s = clock_period_s(120.0)
    follower = ClockFollower()
    follower.feed(SongPosition(8, START_S - 0.5))  # a transport message first: no mid-song join
    follower.feed(ClockTick(START_S - 0.1))
    assert follower.transport == "stopped"
    assert follower.position_ticks == 8 * 240
    follower.feed(TransportStart(START_S - 0.01))
    assert follower.transport == "playing"
    assert follower.position_ticks == 0
    times_s = START_S + np.arange(100) * period_s
    feed_ticks(follower, times_s)
    assert follower.position_ticks == 99 * TICKS_PER_MIDI_CLOCK
    assert follower.bar_beat() == Position(bar=1, beat=0, tick=3 * TICKS_PER_MIDI_CLOCK)

    follower.feed(TransportStop(times_s[-1] + 0.005))
    assert follower.transport == "stopped"
    assert follower.position_ticks == 100 * TICKS_PER_MIDI_CLOCK  # where the next clock resumes
    with pytest.raises(ClockError, match="stopped"):
        follower.predict_time_s(TICKS_PER_BAR * 4)
    feed_ticks(follower, times_s[-1] + np.arange(1, 5) * period_s)  # clocks while stopped: no movement
    assert follower.position_ticks == 100 * TICKS_PER_MIDI_CLOCK

    follower.feed(TransportContinue(times_s[-1] + 4.5 * period_s))
    follower.feed(ClockTick(times_s[-1] + 5 * period_s))
    assert follower.position_ticks == 100 * TICKS_PER_MIDI_CLOCK

    follower.feed(TransportStop(times_s[-1] + 5.5 * period_s))
    follower.feed(SongPosition(32, times_s[-1] + 5.6 * period_s))  # bar 3 (zero-based 2)
    follower.feed(TransportContinue(times_s[-1] + 5.7 * period_s))
    follower.feed(ClockTick(times_s[-1] + 6 * period_s))
    assert follower.bar_beat() == Position(bar=2, beat=0, tick=0)
    follower.feed(ControlChange(0, 7, 100, times_s[-1] + 6.1 * period_s))  # not the follower's: no effect
    assert follower.ignored == 0


def test_predicted_bar_lines_follow_the_ideal_clock() -> None:
    tempo_bpm = 120.0
    follower, _ = started_follower(tempo_bpm, 192, seed=7)
    for bar in (2, 4, 8):
        ideal_s = START_S + bar * TICKS_PER_BAR / TICKS_PER_MIDI_CLOCK * clock_period_s(tempo_bpm)
        assert abs(follower.predict_time_s(bar * TICKS_PER_BAR) - ideal_s) < 0.001 * bar
    assert follower.jitter_ms == pytest.approx(1.0, rel=0.2)


def test_joining_mid_song_counts_from_the_first_clock() -> None:
    follower = ClockFollower()
    times_s = jittered_tick_times_s(START_S, 95.0, 200, JITTER_RMS_S, np.random.default_rng(3))
    feed_ticks(follower, times_s)
    assert follower.transport == "playing"
    assert follower.position_ticks == 199 * TICKS_PER_MIDI_CLOCK
    assert follower.tempo_bpm == pytest.approx(95.0, abs=0.05)
    assert follower.predict_time_s(200 * TICKS_PER_MIDI_CLOCK) == pytest.approx(
        START_S + 200 * clock_period_s(95.0), abs=0.002
    )


def test_a_tempo_step_is_followed_within_a_bar() -> None:
    rng = np.random.default_rng(11)
    before_s = START_S + np.arange(384) * clock_period_s(120.0)
    after_s = before_s[-1] + np.arange(1, 97) * clock_period_s(140.0)
    follower = ClockFollower()
    feed_ticks(follower, np.concatenate([before_s, after_s]) + rng.normal(0, JITTER_RMS_S, 480))
    assert follower.tempo_changes >= 1
    assert follower.tempo_bpm == pytest.approx(140.0, abs=0.1)
    assert follower.clocks == 480


def test_a_tempo_ramp_shortens_the_window() -> None:
    rng = np.random.default_rng(9)
    tempo_bpm = np.concatenate([np.full(384, 120.0), np.linspace(120.0, 130.0, 384), np.full(96, 130.0)])
    periods_s = 60.0 / (tempo_bpm[:-1] * 24)
    times_s = START_S + np.concatenate([[0.0], np.cumsum(periods_s)]) + rng.normal(0, JITTER_RMS_S, tempo_bpm.size)
    follower, fixed_window = ClockFollower(), ClockFollower(drift_sigmas=math.inf)
    feed_ticks(follower, times_s)
    feed_ticks(fixed_window, times_s)
    assert follower.tempo_changes >= 1 and fixed_window.tempo_changes == 0
    assert follower.tempo_bpm is not None and fixed_window.tempo_bpm is not None
    # One bar after a 4-bar ramp: the shortened window has caught up, two fixed bars still lag.
    assert abs(follower.tempo_bpm - 130.0) <= 0.15
    assert abs(fixed_window.tempo_bpm - 130.0) > 0.3


def test_single_late_ticks_are_left_out_of_the_fit_but_still_count() -> None:
    rng = np.random.default_rng(5)
    times_s = START_S + np.arange(400) * clock_period_s(120.0) + rng.normal(0, JITTER_RMS_S, 400)
    times_s[50::50] += 0.010
    follower = ClockFollower()
    feed_ticks(follower, times_s)
    assert follower.outliers >= 7
    assert follower.tempo_changes == 0
    assert follower.clocks == 400
    assert follower.tempo_bpm == pytest.approx(120.0, abs=0.05)
    assert follower.jitter_ms < 1.3


def test_a_silence_keeps_the_tempo_and_restarts_the_line() -> None:
    period_s = clock_period_s(100.0)
    follower = ClockFollower()
    follower.feed(TransportStart(START_S))
    feed_ticks(follower, START_S + np.arange(96) * period_s)
    follower.feed(TransportStop(START_S + 96 * period_s))
    resume_s = START_S + 30.0 + 0.0123  # clocks stopped for half a minute, at an arbitrary phase
    follower.feed(TransportContinue(resume_s - 0.001))
    follower.feed(ClockTick(resume_s))
    assert follower.tempo_bpm == pytest.approx(100.0, abs=1e-6)
    assert follower.position_ticks == 96 * TICKS_PER_MIDI_CLOCK
    assert follower.predict_time_s(97 * TICKS_PER_MIDI_CLOCK) == pytest.approx(resume_s + period_s, abs=1e-6)
    follower.feed(ClockTick(resume_s + period_s + 0.002))  # a late second clock does not reset the tempo
    assert follower.tempo_bpm == pytest.approx(100.0, abs=1e-6)


def test_garbage_is_counted_never_raised_and_the_clock_recovers() -> None:
    follower = ClockFollower()
    garbage: list[object] = [
        ClockTick(float("nan")),
        ClockTick(float("inf")),
        SongPosition(-1, START_S),
        SongPosition(20000, START_S),
        None,
        "clock",
        42,
        ClockTick(START_S + 0.5),
        ClockTick(START_S + 0.4),  # time running backwards
    ]
    for event in garbage:
        follower.feed(event)
    feed_ticks(follower, START_S + 0.6 + np.arange(60) * 0.0001)  # 60 clocks in 6 ms: 25000 BPM
    follower.feed(ClockTick(START_S + 0.5))  # backwards again
    min_ticks = 6  # the follower's default: min_ticks - 1 clocks of a burst get through before it is seen,
    # then a beat's worth counts as clocks delivered late together, and the rest of the flood is ignored
    assert follower.clocks <= 1 + (min_ticks - 1) + MAX_BUNCHED_CLOCKS
    assert follower.ignored == (len(garbage) - 1) + (60 - (follower.clocks - 1)) + 1
    assert follower.tempo_bpm is None or 20 <= follower.tempo_bpm <= 999

    start_s = START_S + 2.0
    follower.feed(TransportStart(start_s - 0.001))
    times_s = jittered_tick_times_s(start_s, 120.0, 193, JITTER_RMS_S, np.random.default_rng(2))
    feed_ticks(follower, times_s)
    assert follower.tempo_bpm == pytest.approx(120.0, abs=0.05)
    assert follower.position_ticks == 192 * TICKS_PER_MIDI_CLOCK
    assert follower.bar_beat() == Position(bar=2, beat=0, tick=0)


def test_an_early_outlier_or_a_slower_resume_does_not_lock_the_line() -> None:
    # The second clock 10 ms early: the line forming on it must not call every later clock a silence.
    times_s = START_S + np.arange(97) * clock_period_s(200.0)
    times_s[1] -= 0.010
    follower = ClockFollower()
    follower.feed(TransportStart(START_S - 0.001))
    feed_ticks(follower, times_s)
    assert follower.tempo_bpm == pytest.approx(200.0, abs=0.01)
    # Clocks stop at 200 BPM and resume at 40 BPM (a period longer than four old ones): followed again.
    resume_s = times_s[-1] + 5.0
    feed_ticks(follower, resume_s + np.arange(48) * clock_period_s(40.0))
    assert follower.tempo_bpm == pytest.approx(40.0, abs=0.01)
    assert follower.clocks == 97 + 48


@pytest.mark.parametrize("seed", range(8))
def test_clocks_delivered_on_jack_periods_do_not_look_like_tempo_changes(seed: int) -> None:
    # JACK MIDI hands clocks over on period boundaries (256 frames at 48 kHz): runs of equal intervals with a
    # short one between. Seen through real ports: a follower fitting such a run read 117.2 BPM for 120.
    period_s = 256 / 48000
    rng = np.random.default_rng(seed)
    sent = jittered_tick_times_s(10.0, 120.0, 2 * 96 + 1, 0.001, rng)
    delivered = np.ceil(sent / period_s) * period_s
    follower = ClockFollower()
    follower.feed(TransportStart(9.99))
    for t in delivered:
        follower.feed(ClockTick(float(t)))
    assert follower.tempo_bpm is not None and abs(follower.tempo_bpm - 120.0) < 0.1
    assert follower.tempo_changes <= 2


def test_clocks_delivered_late_and_together_still_move_the_position() -> None:
    # A stalled callback hands over several clocks at once. Dropping them would put every later bar line a few
    # clocks late (seen in the demo: the answer 28-83 ms behind the beat); they must count.
    times_s = START_S + np.arange(2 * 96 + 1) * clock_period_s(90.0)
    times_s[100:106] = times_s[105]  # six clocks arrive in one instant, 5 periods late for the first of them
    follower = ClockFollower()
    follower.feed(TransportStart(START_S - 0.001))
    feed_ticks(follower, times_s)
    assert follower.position_ticks == 2 * 96 * TICKS_PER_MIDI_CLOCK
    assert follower.tempo_bpm == pytest.approx(90.0, abs=0.05)
    assert abs(follower.predict_time_s(3 * 96 * TICKS_PER_MIDI_CLOCK) - (START_S + 3 * 96 * clock_period_s(90.0))) < 0.001


@pytest.mark.parametrize("tempo_bpm", [90.0, 140.0, 174.0])
@pytest.mark.parametrize("longest_stall_s", [0.06, 0.6])
def test_clocks_held_up_and_handed_over_together_are_never_lost(tempo_bpm: float, longest_stall_s: float) -> None:
    """JACK MIDI on a loaded machine: clocks on period boundaries, and now and then a stall (up to 60 ms, or up to
    0.6 s: more than a beat's worth of clocks at 174 BPM) after which the held clocks arrive in one period. Every clock counts: one lost puts every later bar line a clock late (a
    100-turn soak at 140 and 174 BPM lost them where three suspects made an impossible tempo)."""
    period_s = 256 / 48000
    lost = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        count = 96 * 30
        sent = jittered_tick_times_s(10.0, tempo_bpm, count, 0.001, rng)
        delivered = np.ceil(sent / period_s) * period_s
        t = 10.0
        while t < sent[-1]:
            t += rng.uniform(0.5, 3.0)
            stall_s = rng.uniform(0.005, longest_stall_s)
            held = (delivered >= t) & (delivered < t + stall_s)
            delivered[held] = np.ceil((t + stall_s) / period_s) * period_s
        follower = ClockFollower()
        follower.feed(TransportStart(9.99))
        feed_ticks(follower, delivered)
        lost += count - follower.clocks
        assert follower.position_ticks == (count - 1) * TICKS_PER_MIDI_CLOCK  # from 0 at the first clock
    assert lost == 0


JACK_PERIOD_S = 256 / 48000
SOAK_CLOCKS = 96 * 30


def jack_delivered_clocks(tempo_bpm: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SOAK_CLOCKS clocks from 10 s on, jittered 1 ms: as sent, as a JACK MIDI port delivers them (on the next
    period boundary), and which of them it delivers (all, until a test drops some)."""
    sent = jittered_tick_times_s(10.0, tempo_bpm, SOAK_CLOCKS, 0.001, rng)
    return sent, np.ceil(sent / JACK_PERIOD_S) * JACK_PERIOD_S, np.ones(SOAK_CLOCKS, dtype=bool)


def assert_every_clock_counted(follower: ClockFollower, tempo_bpm: float) -> None:
    """The follower counted all SOAK_CLOCKS clocks, and puts the next bar line within 2 ms of the ideal one."""
    assert follower.position_ticks == (SOAK_CLOCKS - 1) * TICKS_PER_MIDI_CLOCK
    next_bar = 4 * 96 * TICKS_PER_MIDI_CLOCK * (SOAK_CLOCKS // (4 * 96) + 1)
    # delivered on the next period boundary: half a JACK period late on average
    ideal_s = 10.0 + next_bar / TICKS_PER_MIDI_CLOCK * clock_period_s(tempo_bpm) + JACK_PERIOD_S / 2
    assert abs(follower.predict_time_s(next_bar) - ideal_s) < 0.002


def hold_up(delivered: np.ndarray, from_s: float, stall_s: float) -> None:
    """A stall of the port from `from_s` for `stall_s`: the clocks it held come at once, on the next period."""
    held = (delivered >= from_s) & (delivered < from_s + stall_s)
    delivered[held] = np.ceil((from_s + stall_s) / JACK_PERIOD_S) * JACK_PERIOD_S


def drop_one_or_two(keep: np.ndarray, sent: np.ndarray, from_s: float, rng: np.random.Generator) -> None:
    """The first clock sent from `from_s` on, and sometimes the one after it, never delivered."""
    first = int(np.searchsorted(sent, from_s))
    keep[first:first + int(rng.integers(1, 3))] = False


@pytest.mark.parametrize("tempo_bpm", [90.0, 140.0, 174.0])
def test_clocks_the_port_drops_are_counted_from_the_times_of_the_next_ones(tempo_bpm: float) -> None:
    """JACK MIDI drops a cycle's events for a client that misses it: now and then a clock never arrives (sometimes
    two in a row), among clocks on period boundaries and short stalls. Counting only what arrives put every later
    bar line a clock late for good (a 100-turn soak: 20.8 ms at 140 BPM, 58 ms at 90). The follower counts the
    missing ones when the next clocks sit on the line a whole number of periods on, and keeps the tempo."""
    for seed in range(10):
        rng = np.random.default_rng(seed)
        sent, delivered, keep = jack_delivered_clocks(tempo_bpm, rng)
        t = 11.0 + rng.uniform(1.0, 4.0)
        while t < sent[-1] - 1.0:
            drop_one_or_two(keep, sent, t, rng)
            stall_s = rng.uniform(0.005, 0.06)
            hold_up(delivered, t + rng.uniform(0.3, 0.6), stall_s)
            t += rng.uniform(1.0, 4.0)
        follower = ClockFollower()
        follower.feed(TransportStart(9.99))
        feed_ticks(follower, delivered[keep])
        assert follower.tempo_changes <= 2  # a stall can shift the residuals' mean enough for one restart
        assert follower.lost_clocks == SOAK_CLOCKS - keep.sum()
        assert follower.tempo_bpm == pytest.approx(tempo_bpm, abs=0.2)
        assert_every_clock_counted(follower, tempo_bpm)


@pytest.mark.parametrize("tempo_bpm", [90.0, 140.0, 174.0])
def test_clocks_lost_in_a_long_stall_or_around_a_held_up_suspect_are_counted_a_beat_later(tempo_bpm: float) -> None:
    """A stall long enough to read as a silence (0.12-0.5 s of clocks never delivered), or one lost clock whose next
    clocks a stall holds up (so they do not all sit a whole period on, and the line restarts as for a tempo change):
    the line restarts either way, and a beat later it is the old line a whole number of periods on, at the old
    tempo, so the clocks lost are counted (a 100-turn soak at 140 BPM: every bar line from turn 4 on a clock late)."""
    for seed in range(10):
        rng = np.random.default_rng(seed)
        sent, delivered, keep = jack_delivered_clocks(tempo_bpm, rng)
        t = 11.0 + rng.uniform(1.0, 3.0)
        while t < sent[-1] - 2.0:
            first = int(np.searchsorted(sent, t))
            if rng.random() < 0.5:
                keep[(sent >= t) & (sent < t + rng.uniform(0.12, 0.5))] = False  # a long stall, its clocks dropped
            else:
                keep[first] = False  # one clock dropped; the two after it held up by 4-8 ms, unevenly
                delivered[first + 1] += rng.uniform(0.004, 0.008)
                delivered[first + 2] = max(delivered[first + 2], delivered[first + 1] + 0.001)
            t += rng.uniform(2.0, 4.0)
        follower = ClockFollower()
        follower.feed(TransportStart(9.99))
        feed_ticks(follower, delivered[keep])
        assert follower.lost_clocks == SOAK_CLOCKS - keep.sum(), seed
        assert_every_clock_counted(follower, tempo_bpm)


@pytest.mark.parametrize(
    ("tempo_bpm", "longest_delay_s"),
    [(90.0, 0.12), (140.0, 0.12), (174.0, 0.12), (240.0, 0.12), (90.0, 0.6), (140.0, 0.6), (174.0, 0.6)],
)
def test_clocks_each_delivered_about_a_period_late_for_a_while_are_not_lost(
    tempo_bpm: float, longest_delay_s: float
) -> None:
    """A busy host can hold the port's callback up by about one clock period for several clocks running (one
    clean-clone CI run at 240 BPM, where a period is 10.4 ms: two clocks counted lost, every later bar line two clocks
    early). By their times alone those clocks sit where clocks after a lost one would; the difference shows only when
    they come back to the line. A short episode (up to 0.12 s) is never counted; a longer one that was counted is
    taken back when the clocks return, so every clock is counted once in the end. Not at 240 BPM: there the port's
    noise (JACK's 5.3 ms periods) nears the 10.4 ms clock period, and clocks coming back can pass for ones on the
    shifted line."""
    period_s = clock_period_s(tempo_bpm)
    for seed in range(10):
        rng = np.random.default_rng(seed)
        sent, delivered, _ = jack_delivered_clocks(tempo_bpm, rng)
        t = 11.0 + rng.uniform(0.5, 2.0)
        while t < sent[-1] - 6.0:  # the last episode out of the window (two bars) by the end
            late = (sent >= t) & (sent < t + rng.uniform(0.03, longest_delay_s))
            delivered[late] += rng.uniform(0.8, 1.2, int(late.sum())) * period_s  # each one unevenly
            t += rng.uniform(1.5, 3.0)
        delivered = np.maximum.accumulate(delivered)  # a port hands them over in order
        follower = ClockFollower()
        follower.feed(TransportStart(9.99))
        feed_ticks(follower, delivered)
        assert follower.lost_clocks == 0, seed
        assert_every_clock_counted(follower, tempo_bpm)


@pytest.mark.parametrize("tempo_bpm", [90.0, 140.0, 174.0])
def test_every_kind_of_port_trouble_at_once_still_counts_every_clock(tempo_bpm: float) -> None:
    """A loaded machine does all of it in one set, a second or two apart: clocks dropped, stalls handed over at
    once, stalls long enough to restart the line, clocks each about a period late for a while. Every clock still
    counts in the end (a 100-turn soak at 140 BPM put every bar line from turn 25 on a clock late). In a longer run
    of this mix, three faults showed: two restarts in a row left the second one judged by a line of a few clocks,
    which, extrapolated across the stall, was half a period off (41 clocks never counted); a restart whose clocks
    were back on the old line left the line short, the next judge (13); and clocks counted lost in a late episode
    could not be taken back across a restart (one clock early for good)."""
    period_s = clock_period_s(tempo_bpm)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        sent, delivered, keep = jack_delivered_clocks(tempo_bpm, rng)
        t = 11.0 + rng.uniform(0.5, 2.0)
        while t < sent[-1] - 3.0:
            trouble = rng.integers(4)
            if trouble == 0:
                drop_one_or_two(keep, sent, t, rng)
            elif trouble == 1:
                hold_up(delivered, t, rng.uniform(0.005, 0.3))
            elif trouble == 2:  # each clock about a period late, for a while
                late = (sent >= t) & (sent < t + rng.uniform(0.03, 0.6))
                delivered[late] += rng.uniform(0.8, 1.2, int(late.sum())) * period_s
            else:  # a long stall whose clocks are dropped
                keep[(sent >= t) & (sent < t + rng.uniform(0.12, 0.5))] = False
            t += rng.uniform(0.7, 2.5)
        delivered = np.maximum.accumulate(delivered)  # a port hands them over in order
        follower = ClockFollower()
        follower.feed(TransportStart(9.99))
        feed_ticks(follower, delivered[keep])
        assert follower.lost_clocks == SOAK_CLOCKS - keep.sum(), seed
        assert_every_clock_counted(follower, tempo_bpm)


def test_a_resume_after_stop_and_continue_is_not_taken_for_lost_clocks() -> None:
    """Clocks that stop with the transport and resume on Continue a whole number of periods on are not lost
    clocks: the song goes on from where it stopped."""
    period_s = clock_period_s(120.0)
    follower = ClockFollower()
    follower.feed(TransportStart(START_S))
    feed_ticks(follower, START_S + np.arange(96) * period_s)
    follower.feed(TransportStop(START_S + 96 * period_s))
    resume_s = START_S + 140 * period_s  # 44 periods on, to the microsecond
    follower.feed(TransportContinue(resume_s - 0.001))
    feed_ticks(follower, resume_s + np.arange(48) * period_s)
    assert follower.lost_clocks == 0
    assert follower.position_ticks == (96 + 47) * TICKS_PER_MIDI_CLOCK
