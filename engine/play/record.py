"""What a DAW's tracks do, as JACK clients, for tests and benchmarks: a recorder that checks where audio lands,
and a player that plays a bus (a beat, an opponent's vocal) from a given JACK frame."""

from __future__ import annotations

import time

import numpy as np

from engine.play.output import read_beside_host

FRAME_MASK = 0xFFFFFFFF  # JACK frame times wrap at 32 bits


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
    """A JACK client playing one array from its output port `out` from a host time on, locked to the host clock
    (each cycle places its block by the host time the cycle began), as a DAW's audio stays locked to the MIDI
    clock it sends: on a machine whose audio clock drifts from the host's, a frame-counted player would not."""

    def __init__(self, name: str, sample_rate: int = 48000, servername: str | None = None) -> None:
        import jack

        self.sample_rate = sample_rate
        self.client = jack.Client(name, no_start_server=True, servername=servername)
        self.port = self.client.outports.register("out")
        self._audio = np.zeros(0, dtype=np.float32)
        self._start_s: float | None = None
        self.client.set_process_callback(self._process)
        self.client.activate()

    def play_at(self, time_s: float, audio: np.ndarray) -> None:
        """Play `audio` from host time `time_s` (`time.monotonic()`) on; a time already past plays the rest."""
        self._audio = np.asarray(audio, dtype=np.float32)
        self._start_s = time_s

    def _process(self, frames: int) -> None:
        out = self.port.get_array()
        out.fill(0.0)
        if self._start_s is None:
            return
        cycle_s = time.monotonic() - self.client.frames_since_cycle_start / self.sample_rate
        at = round((cycle_s - self._start_s) * self.sample_rate)
        lo, hi = max(at, 0), max(at + frames, 0)
        part = self._audio[lo:hi]
        out[lo - at:lo - at + len(part)] = part

    def close(self) -> None:
        """Stop playing and leave JACK."""
        self.client.deactivate()
        self.client.close()
