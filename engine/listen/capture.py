"""Live inputs: the beat bus and the opponent's vocal bus, captured from JACK ports, read back bar by bar.

`JackCapture` is a JACK client with one input port per bus. Its process callback only copies each port's block
into that bus's `CaptureRing` at the block's JACK frame time and stamps the block with the host time its cycle
began (no allocation of its own, no lock, no log). The turn's thread asks a `CaptureBus` for a bar's audio: the
bar's host times come from the clock follower, the nearest block stamps turn them into frames (capture latency
included), and the samples are copied out once the callback has written them. Stamping every block keeps the
mapping right when the audio clock and the host clock drift apart: the MIDI clock follows the host's.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from bridge.clock import ClockFollower
from engine.errors import BackendMissingError, ClockError, PortError
from engine.play.latency import jack_port_latency
from engine.timebase import TICKS_PER_BAR

log = logging.getLogger(__name__)

FRAME_MASK = 0xFFFFFFFF  # JACK frame times wrap at 32 bits
HALF_RANGE = 1 << 31
DEFAULT_CAPTURE_S = 30.0
ARRIVAL_WAIT_S = 0.1  # how long a reader waits for the last block of a bar that has just ended


class CaptureRing:
    """The last `capacity` samples of one input, by absolute frame: the writer overwrites, readers copy out."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data = np.zeros(capacity, dtype=np.float32)
        self.written_until: int | None = None  # absolute frame after the last written sample
        self.first: int | None = None  # absolute frame of the first sample since the last restart

    def write_at(self, frame: int, block: np.ndarray) -> None:
        """Store `block` as frames [frame, frame + len): the audio callback's copy. A jump back restarts."""
        if self.written_until is None or frame < self.written_until - self.capacity or frame < (self.first or 0):
            self.first = frame
        n = len(block)
        i = frame % self.capacity
        k = min(n, self.capacity - i)
        self._data[i:i + k] = block[:k]
        if k < n:
            self._data[: n - k] = block[k:]
        self.written_until = frame + n

    def read(self, start: int, frames: int) -> np.ndarray | None:
        """A copy of frames [start, start + frames), or None if any of them is not (or no longer) held."""
        until, first = self.written_until, self.first
        if until is None or first is None or frames <= 0:
            return None
        if start < max(first, until - self.capacity) or start + frames > until:
            return None
        i = start % self.capacity
        k = min(frames, self.capacity - i)
        out = np.empty(frames, dtype=np.float32)
        out[:k] = self._data[i:i + k]
        if k < frames:
            out[k:] = self._data[: frames - k]
        return out


class JackCapture:
    """A JACK client `client_name` with one input port per bus name, each connected from the output ports whose
    names contain the given source (`{"beat": "Live:out3", "vocal": "system:capture_1"}`)."""

    def __init__(self, sources: dict[str, str], sample_rate: int, client_name: str = "cypher-in",
                 capture_s: float = DEFAULT_CAPTURE_S, servername: str | None = None) -> None:
        try:
            import jack
        except (ImportError, OSError) as exc:
            raise BackendMissingError(f"JACK inputs need JACK-Client and libjack ({exc})") from None
        try:
            client = jack.Client(client_name, no_start_server=True, servername=servername)
        except jack.JackError:
            raise PortError("no JACK server is running: start one to hear the beat and vocal buses "
                            "(`jackd -d dummy -r 48000 -p 256` to try without a sound card)") from None
        if client.samplerate != sample_rate:
            client.close()
            raise PortError(f"JACK runs at {client.samplerate} Hz but the engine at {sample_rate} Hz")
        self.sample_rate = sample_rate
        self.rings = {name: CaptureRing(int(capture_s * sample_rate)) for name in sources}
        stamps = int(capture_s * sample_rate) // max(1, client.blocksize) + 1
        self._stamp_frame = np.full(stamps, -1, dtype=np.int64)  # each recent block's JACK frame
        self._stamp_host = np.full(stamps, np.nan, dtype=np.float64)  # and the host time its cycle began
        self._blocks = 0
        self.latency_frames: dict[str, int] = {}
        self._client = client
        self._ports: list[tuple[Any, CaptureRing]] = []
        try:
            outputs = [p.name for p in client.get_ports(is_audio=True, is_output=True)]
            wiring = []
            for name, source in sources.items():
                matches = [n for n in outputs if source.lower() in n.lower()]
                if not matches:
                    raise PortError(f"no JACK output port named like {source!r} for the {name} bus; output ports: "
                                    f"{', '.join(outputs) or 'none'}")
                port = client.inports.register(name)
                self._ports.append((port, self.rings[name]))
                wiring.append((matches[0], port))
            client.set_process_callback(self._process)
            client.activate()
            for source_port, port in wiring:
                client.connect(source_port, port)
                _, self.latency_frames[port.shortname] = jack_port_latency(port.name, servername)
        except BaseException:
            client.close()
            raise
        log.info("listening on %s", ", ".join(f"{p.name} <- {s}" for (p, _), s in zip(self._ports, sources.values())))

    def _process(self, frames: int) -> None:
        client = self._client
        frame = client.last_frame_time
        slot = self._blocks % len(self._stamp_frame)
        self._stamp_frame[slot] = frame
        self._stamp_host[slot] = time.monotonic() - client.frames_since_cycle_start / self.sample_rate
        self._blocks += 1
        for port, ring in self._ports:
            ring.write_at(frame, port.get_array())

    def frame_at(self, time_s: float) -> int:
        """The JACK frame captured at host time `time_s`, from the block stamped nearest to it; PortError before
        the first block."""
        if self._blocks == 0:
            raise PortError("the JACK inputs have not captured anything yet: is the JACK server running?")
        nearest = int(np.nanargmin(np.abs(self._stamp_host - time_s)))
        frame = int(self._stamp_frame[nearest])
        ring = next(iter(self.rings.values()))
        if ring.written_until is not None:  # unwrap the 32-bit frame time near the ring's frames
            frame = ring.written_until + ((frame - ring.written_until + HALF_RANGE) & FRAME_MASK) - HALF_RANGE
        return frame + round((time_s - float(self._stamp_host[nearest])) * self.sample_rate)

    def close(self) -> None:
        """Leave JACK."""
        try:
            self._client.deactivate()
            self._client.close()
        except Exception as exc:  # a server that went away cannot always be left cleanly
            log.debug("closing the JACK inputs: %s", exc)


class CaptureBus:
    """One captured bus as the turn reads it (`engine.turn.BusInput`): bar `bar`'s samples as they arrived."""

    def __init__(self, capture: JackCapture, name: str, follower: ClockFollower) -> None:
        self.capture = capture
        self.ring = capture.rings[name]
        self.latency_frames = capture.latency_frames.get(name, 0)
        self.follower = follower

    def bar_audio(self, bar: int) -> np.ndarray | None:
        """The samples of bar `bar` (from its bar line to the next, as the clock placed them), waiting briefly
        for the last block; None when the clock cannot place the bar or the audio is not held."""
        try:
            start_s = self.follower.predict_time_s(bar * TICKS_PER_BAR)
            end_s = self.follower.predict_time_s((bar + 1) * TICKS_PER_BAR)
        except (ClockError, PortError):
            return None
        start = self.capture.frame_at(start_s) + self.latency_frames
        end = self.capture.frame_at(end_s) + self.latency_frames
        deadline = time.monotonic() + ARRIVAL_WAIT_S
        while (self.ring.written_until or 0) < end and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.ring.read(start, end - start)
