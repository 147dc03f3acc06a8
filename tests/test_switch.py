"""A style switch lands on the next bar line: the old style's sound fades out there (bars and effect tails), and the
answer bars from there on are made again in the new style. Real planner, lexicon, Piper voice and effects; the
sink is the demo's recording of the virtual channel."""

import time

import numpy as np
import pytest

from bridge.clock import ClockFollower
from engine.events import ClockTick, TransportStart
from engine.line import LineWriter, VoiceCache
from engine.listen.vocal import TypedEars
from engine.presets import load_style
from engine.render import ArrayBus, OfflineSink
from engine.turn import STYLE_RELEASE_S, AnswerTurn
from engine.write.grid import flow_grid
from engine.write.fill_lexicon import LexiconFiller

pytestmark = pytest.mark.models

RATE = 48000
TEMPO_BPM = 90.0
BAR_S = 4 * 60.0 / TEMPO_BPM
HEARD = ["you came to the cypher with a borrowed rhyme", "your flow is stuck in a different time",
         "i run this city and i run it on time", "your verses are little like a dollar and a dime"]


def running_clock() -> tuple[ClockFollower, float]:
    """A follower that has heard a steady 90 BPM clock from Start until now; the host time of bar 0's line."""
    follower = ClockFollower()
    period = 60.0 / (TEMPO_BPM * 24)
    now = time.monotonic()
    start = now - 96 * period
    follower.feed(TransportStart(start - 0.001))
    for n in range(97):
        follower.feed(ClockTick(start + n * period))
    return follower, start


def wait_for(condition, timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_a_switch_fades_the_old_style_at_its_bar_line_and_remakes_the_bars_after_it() -> None:
    boom_bap, grime = load_style("boom_bap"), load_style("grime")
    follower, origin_s = running_clock()
    bar_len = round(BAR_S * RATE)
    sink = OfflineSink(12 * bar_len, RATE, origin_s=origin_s)
    writer = LineWriter(LexiconFiller(), VoiceCache(RATE))
    turn = AnswerTurn(boom_bap, 4, 0, follower, vocal_bus=ArrayBus(np.zeros(4 * bar_len, np.float32), bar_len),
                      beat_bus=ArrayBus(np.zeros(4 * bar_len, np.float32), bar_len), transcriber=TypedEars(HEARD),
                      writer=writer, sink=sink, sample_rate=RATE)
    try:
        for bar in range(1, 5):  # the opponent's four bars heard: answer bars 4-7 written ahead, in boom bap
            turn.on_bar(bar, origin_s + bar * BAR_S)
        wait_for(lambda: len(turn.report.renders) == 4)
        before = list(turn.report.renders)
        assert all(r.line.plan.grid.slots_per_bar == 16 for r in before)

        turn.restyle(grime, from_bar=6)  # heard in bar 5: lands on bar 6's line
        wait_for(lambda: len(sink.renders) == 6)  # bars 6 and 7 made again
    finally:
        turn.close(timeout_s=10.0)
    after = {r.bar: r for r in turn.report.renders}
    assert sorted(after) == [4, 5, 6, 7] and len(turn.report.lines) == 4
    assert after[4] is before[0] and after[5] is before[1]  # before the switch: kept as they were
    for bar in (6, 7):
        assert after[bar] is not before[bar - 4]
        assert after[bar].line.plan.grid.slots == flow_grid(grime.flow, bar - 3)[bar - 4].slots
    # grime's syllables sit on eighth notes only: none on an odd sixteenth
    assert all(s.index % 2 == 0 for bar in (6, 7) for s in after[bar].line.slots)

    # the recording: from bar 6's line plus the release on, only the new style's bars sound
    cut_s = follower.predict_time_s(6 * 3840)
    assert sink.cuts == [(4, cut_s, STYLE_RELEASE_S)]
    mixed = sink.mix()
    only_new = OfflineSink(sink.length, RATE, origin_s=origin_s, renders=[after[6], after[7]]).mix()
    clean_from = sink.bar_start_sample(after[6]) + round(STYLE_RELEASE_S * RATE)
    assert np.allclose(mixed[clean_from:], only_new[clean_from:], atol=1e-6)
    old_tail = OfflineSink(sink.length, RATE, origin_s=origin_s, renders=before).mix()
    assert np.max(np.abs(old_tail[clean_from:])) > 0.01  # there was old sound there to cut (bar 6, 7, tails)
    # and before the switch's bar line nothing changed
    line_6 = sink.bar_start_sample(after[6]) - after[6].lead_samples
    assert np.allclose(mixed[:line_6], old_tail[:line_6] + only_new[:line_6], atol=1e-6)

