"""The vocal bus followed as it arrives, to hear the opponent stop: `SilenceWatch` fed from the capture ring.

A thread reads what the JACK callback has written to the vocal bus's `CaptureRing` every `poll_s` (it only copies
out; the callback never waits on it) and pushes it to a `SilenceWatch`; when the watch says the opponent's turn
is over, `on_end(end_s)` is called with the host time the last voice ended. `reset()` starts watching a new turn.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from engine.errors import CypherError
from engine.listen.capture import CaptureRing
from engine.listen.turnend import SilenceWatch

log = logging.getLogger(__name__)

POLL_S = 0.05


class VocalTurnEnd:
    """Calls `on_end(end_s)` when the vocal bus has held no voice for `hold_s` after the opponent rapped."""

    def __init__(self, ring: CaptureRing, sample_rate: int, on_end: Callable[[float], None], hold_s: float,
                 poll_s: float = POLL_S) -> None:
        self.ring = ring
        self.watch = SilenceWatch(sample_rate, hold_s=hold_s)
        self.on_end = on_end
        self.poll_s = poll_s
        self._reset = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cypher-vocal-watch", daemon=True)
        self._thread.start()

    def reset(self) -> None:
        """A new opponent turn: forget the voice heard before it (taken up by the watch's thread)."""
        self._reset.set()

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        read_from: int | None = None
        while not self._stop.wait(self.poll_s):
            if self._reset.is_set():
                self._reset.clear()
                self.watch.reset()
            until, now_s = self.ring.written_until, time.monotonic()
            if until is None:
                continue
            if read_from is None or read_from < until - self.ring.capacity // 2:  # first read, or fell far behind
                read_from = until
                continue
            block = self.ring.read(read_from, until - read_from) if until > read_from else None
            read_from = until
            if block is None:
                continue
            try:
                ended_s = self.watch.push(block, now_s)  # the last sample arrived within a JACK period of now
            except CypherError as exc:
                log.warning("vocal bus not followed: %s", exc)
                continue
            if ended_s is not None:
                self.on_end(ended_s)
