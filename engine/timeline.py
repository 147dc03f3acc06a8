"""The one control loop: clock events in, the clock follower updated, bar lines out.

Adapters put events on a queue; this loop is the only reader. It owns no audio and no model: on each bar line
it calls the turn logic, which hands heavy work to its worker.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from bridge.clock import ClockFollower
from engine.events import (
    ClockTick,
    ControlChange,
    ControlEvent,
    MidiEvent,
    NoteOn,
    ProgramChange,
    TransportContinue,
    TransportStart,
    TransportStop,
)
from engine.timebase import TICKS_PER_BAR

log = logging.getLogger(__name__)

BarCallback = Callable[[int, float], None]


class Timeline:
    """Feeds clock events to the follower and announces every bar line (`on_bar(bar, time_s)`)."""

    def __init__(
        self,
        events: "queue.Queue[MidiEvent]",
        follower: ClockFollower,
        on_bar: BarCallback,
        on_control: Callable[[ControlEvent], None] | None = None,
        on_stop: Callable[[float], None] | None = None,
    ) -> None:
        self.events = events
        self.follower = follower
        self.on_bar = on_bar
        self.on_control = on_control
        self.on_stop = on_stop  # told when the DAW's transport stops (the Stop's host time)
        self.stopped = threading.Event()  # set when the DAW's transport stops
        self._bar: int | None = None

    def handle(self, event: MidiEvent) -> None:
        """Apply one event; announce a bar line if the position crossed one."""
        if isinstance(event, (ControlChange, NoteOn, ProgramChange)):
            if self.on_control is not None:
                self.on_control(event)
            return
        self.follower.feed(event)
        if isinstance(event, TransportStop):
            was_playing = not self.stopped.is_set()
            self.stopped.set()
            if was_playing and self.on_stop is not None:
                self.on_stop(event.time_s)
            return
        if isinstance(event, (TransportStart, TransportContinue)):
            self.stopped.clear()
        if not isinstance(event, ClockTick) or self.follower.transport != "playing":
            return  # a bar line is announced on the clock that starts it, not on Start or a seek
        bar = self.follower.position_ticks // TICKS_PER_BAR
        if bar != self._bar:
            self._bar = bar
            self.on_bar(bar, event.time_s)

    def run(self, until: threading.Event, poll_s: float = 0.05) -> None:
        """Process events until `until` is set."""
        while not until.is_set():
            try:
                event = self.events.get(timeout=poll_s)
            except queue.Empty:
                continue
            self.handle(event)
