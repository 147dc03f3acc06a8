"""The control loop: clock events in, bar lines out on the clock that starts each bar."""

import queue
import threading

from bridge.clock import ClockFollower
from engine.events import ClockTick, ControlChange, SongPosition, TransportContinue, TransportStart, TransportStop
from engine.timeline import Timeline

CLOCK_S = 60.0 / (120.0 * 24)  # 120 BPM


def test_bar_lines_fall_on_the_clocks_that_start_them():
    bars: list[tuple[int, float]] = []
    controls = []
    timeline = Timeline(queue.Queue(), ClockFollower(), lambda b, t: bars.append((b, t)), controls.append)
    timeline.handle(TransportStart(10.0))
    assert bars == []  # Start alone is not a bar line: the first clock is
    for n in range(2 * 96 + 1):
        timeline.handle(ClockTick(10.05 + n * CLOCK_S))
    assert [b for b, _ in bars] == [0, 1, 2]
    assert [round(t, 6) for _, t in bars] == [round(10.05 + n * 96 * CLOCK_S, 6) for n in range(3)]
    cc = ControlChange(0, 21, 100, 12.0)
    timeline.handle(cc)
    assert controls == [cc]
    timeline.handle(TransportStop(12.1))
    assert timeline.stopped.is_set()


def test_a_seek_announces_the_bar_it_lands_in_on_the_next_clock():
    bars: list[int] = []
    timeline = Timeline(queue.Queue(), ClockFollower(), lambda b, t: bars.append(b))
    timeline.handle(TransportStart(0.0))
    for n in range(10):
        timeline.handle(ClockTick(0.05 + n * CLOCK_S))
    timeline.handle(TransportStop(0.5))
    timeline.handle(SongPosition(16 * 4, 0.6))  # bar 5 (zero-based 4)

    timeline.handle(TransportContinue(0.7))
    timeline.handle(ClockTick(0.75))
    assert bars == [0, 4]


def test_run_drains_the_queue_until_told_to_stop():
    events: queue.Queue = queue.Queue()
    bars: list[int] = []
    timeline = Timeline(events, ClockFollower(), lambda b, t: bars.append(b))
    stop = threading.Event()
    worker = threading.Thread(target=timeline.run, args=(stop,))
    worker.start()
    events.put(TransportStart(0.0))
    for n in range(97):
        events.put(ClockTick(0.05 + n * CLOCK_S))
    deadline = threading.Event()
    for _ in range(100):
        if bars == [0, 1]:
            break
        deadline.wait(0.02)
    stop.set()
    worker.join(2.0)
    assert bars == [0, 1] and not worker.is_alive()
