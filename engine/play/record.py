"""What a DAW's tracks do, as JACK clients, for tests and benchmarks: a recorder that checks where audio lands,
and a player that plays a bus (a beat, an opponent's vocal) from a given JACK frame."""

from __future__ import annotations

import time

import numpy as np

from engine.play.output import FRAME_MASK, read_beside_host

SLIP_FRAMES = 48  # a player and the host clock apart by more than a millisecond
SLIP_CYCLES = 4  # for this many cycles in a row: the player is set again by the host clock (a late callback can read
# the next cycle's start, once; cycles lost or a drifting audio clock keep them apart)


class Recorder:
    """A JACK client recording its input port `in` by JACK frame time."""

    def __init__(self, name: str, seconds: float, sample_rate: int = 48000, servername: str | None = None,
                 buffer: np.ndarray | None = None) -> None:
        """Record `seconds` (into `buffer`, a float32 array of that many samples, when given: shared memory)."""
        import jack

        self.sample_rate = sample_rate
        self.client = jack.Client(name, no_start_server=True, servername=servername)
        self.port = self.client.inports.register("in")
        self.audio = buffer if buffer is not None else np.zeros(int(seconds * sample_rate), dtype=np.float32)
        self.first: int | None = None
        self.gaps = 0  # cycles whose start was not where the previous one ended: JACK lost cycles in between
        self.xruns = 0
        self._next: int | None = None
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._on_xrun)
        self.client.activate()

    def _process(self, frames: int) -> None:
        frame = self.client.last_frame_time
        if self.first is None:
            self.first = frame
        elif frame != self._next:
            self.gaps += 1
        self._next = (frame + frames) & FRAME_MASK
        at = (frame - self.first) & FRAME_MASK
        if at + frames <= len(self.audio):
            self.audio[at:at + frames] = self.port.get_array()

    def _on_xrun(self, delay_usecs: float) -> None:
        self.xruns += 1

    def frame_of(self, time_s: float) -> float:
        """JACK frame of a host time, from this client's own reading of JACK's clock."""
        frame, now_s = read_beside_host(lambda: self.client.frame_time)
        return frame + (time_s - now_s) * self.sample_rate

    def clicks(self) -> list[int]:
        """JACK frames of the recorded clicks (samples above 0.5)."""
        assert self.first is not None
        return [int(i) + self.first for i in np.nonzero(np.abs(self.audio) > 0.5)[0]]

    def close(self) -> None:
        """Stop recording and leave JACK."""
        self.client.deactivate()
        self.client.close()


class Player:
    """A JACK client playing one array from its output port `out` from a host time on, locked to the host clock,
    as a DAW's audio stays locked to the MIDI clock it sends (on a machine whose audio clock drifts from the host's,
    a frame-counted player would not).

    The clip plays on, each cycle from where the last one ended, and is set again by the host time its cycle began
    only when the two stay more than SLIP_FRAMES apart for SLIP_CYCLES cycles (cycles lost, a drifting audio
    clock); one late callback's odd reading is not followed. Set by the host time on every cycle, as it once was,
    the clip jumped back and forth by a few samples whenever a callback woke late on a loaded machine: clicks no
    DAW plays, which the beat bus's pulse tracker heard (under a CPU hog it started the transport 53 ms early, on
    the wrong beat, in 3 runs of 16; the same kit without the jumps, never)."""

    def __init__(self, name: str, sample_rate: int = 48000, servername: str | None = None) -> None:
        import jack

        self.sample_rate = sample_rate
        self.client = jack.Client(name, no_start_server=True, servername=servername)
        self.port = self.client.outports.register("out")
        self._clip: tuple[np.ndarray, float] | None = None  # the clip and its host start time, swapped whole
        self._playing: tuple[np.ndarray, float] | None = None  # the clip the callback plays (read from _clip)
        self._next_at = 0  # the clip position the next cycle plays from
        self._apart = 0  # cycles in a row the clip and the host clock have been apart
        self.slips = 0  # times the clip was set again by the host clock after it had started
        self.client.set_process_callback(self._process)
        self.client.activate()

    def play_at(self, time_s: float, audio: np.ndarray) -> None:
        """Play `audio` from host time `time_s` (`time.monotonic()`) on; a time already past plays the rest."""
        self._clip = (np.asarray(audio, dtype=np.float32), time_s)

    def _process(self, frames: int) -> None:
        out = self.port.get_array()
        out.fill(0.0)
        clip = self._clip
        if clip is None:
            return
        audio, start_s = clip
        cycle_s = time.monotonic() - self.client.frames_since_cycle_start / self.sample_rate
        by_host = round((cycle_s - start_s) * self.sample_rate)
        at = by_host
        if clip is not self._playing:
            self._playing, self._apart = clip, 0  # a new clip starts where the host clock puts it
        else:
            at = self._next_at
            self._apart = self._apart + 1 if abs(at - by_host) > SLIP_FRAMES else 0
            if self._apart >= SLIP_CYCLES:
                at = by_host
                self._apart = 0
                self.slips += 1
        self._next_at = at + frames
        lo, hi = max(at, 0), max(at + frames, 0)
        part = audio[lo:hi]
        out[lo - at:lo - at + len(part)] = part

    def close(self) -> None:
        """Stop playing and leave JACK."""
        self.client.deactivate()
        self.client.close()
