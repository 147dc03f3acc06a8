"""Live playback: bar renders placed in the ring buffer on their bar lines, drained by an audio callback.

`RingSink` (an `engine.turn.Sink`) turns a bar's predicted host time (seconds of `time.monotonic()`, as the
clock follower predicts it) into the ring position whose sample leaves the output at that moment, plays it
earlier by the round-trip compensation (`engine.play.latency`), and mixes the bar in ahead of the playhead.

Two outputs share one shape (`AudioOutput`); the callbacks only copy the ring out and count problems:

- `JackOutput` (JACK-Client) is the one used with a JACK server, Linux's virtual channel. Ring positions *are*
  JACK frame times: each cycle the callback reads JACK's `last_frame_time`, so a lost cycle shows as a jump the
  ring skips, never as drift. A host time becomes a frame through JACK's `frame_time` (its delay-locked loop)
  read beside `time.monotonic()`, exact to a fraction of a sample whenever the callback happened to run, and
  the port's latency is what JACK reports for it. This is why JACK-Client is preferred over PortAudio on JACK:
  PortAudio's JACK host API stamps each callback with JACK's frame time at the moment the callback *ran*, so
  its mapping jitters with the callback's wake-up delay.
- `DeviceOutput` (sounddevice over PortAudio) is for every other host: BlackHole/Loopback on macOS, VB-Cable on
  Windows, ALSA devices. Ring positions count frames since the stream started; the callback stamps where its
  block will reach the DAC (`outputBufferDacTime`, the stream's clock, latency included) and the control thread
  relates the stream's clock to `time.monotonic()`.

A JACK server that goes away (or a device whose stream stops) is reported once, the engine keeps running (bars
that arrive meanwhile are dropped and counted), and a watchdog reopens the output when it returns.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from dataclasses import dataclass, replace
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from engine.errors import BackendMissingError, CypherError, PortError
from engine.play.latency import REFERENCE_COMPENSATION, jack_port_latency
from engine.play.ring import RingBuffer

if TYPE_CHECKING:
    from engine.turn import BarRender

logger = logging.getLogger(__name__)
T = TypeVar("T")

FRAME_MASK = 0xFFFFFFFF  # JACK frame times are 32-bit and wrap (after 24.8 hours at 48 kHz)
HALF_RANGE = 1 << 31
CLOCK_READS = 5  # pairs of (monotonic, stream clock) read; the tightest pair wins
STAMP_SLOTS = 8
JACK_PREFIX = "jack:"
DEFAULT_RING_S = 20.0
DEFAULT_GUARD_FRAMES = 1024  # never write closer than this to the playhead (the callback may be reading there)
PLACE_AHEAD_S = 0.25  # a bar goes into the ring this long before it starts (see RingSink)
SETTLE_S = 0.06  # and is looked at again this long before it starts: moved if its frame has moved since
MOVE_MIN_FRAMES = 12  # a quarter millisecond at 48 kHz: closer than this, a placed bar stays where it is


def read_beside_host(read: Callable[[], T]) -> tuple[T, float]:
    """An audio clock's reading and the host time (`time.monotonic()`) beside it: of CLOCK_READS reads, the one
    whose two host readings lie closest (the thread was not interrupted between them)."""
    best: tuple[float, T, float] | None = None
    for _ in range(CLOCK_READS):
        t0 = time.monotonic()
        value = read()
        t1 = time.monotonic()
        if best is None or t1 - t0 < best[0]:
            best = (t1 - t0, value, 0.5 * (t0 + t1))
    assert best is not None
    return best[1], best[2]


@dataclass(frozen=True)
class OutputStats:
    """Counters the control thread reports (over OSC); the callback only increments them."""

    running: bool
    callbacks: int
    underruns: int  # cycles the device or JACK reported late (xruns, output underflow flags)
    skipped_frames: int  # frames the playhead jumped over because cycles were lost
    rewound_frames: int  # frames the playhead stepped back over because a late cycle had played them early
    reopened: int
    lost_reason: str | None


class AudioOutput(Protocol):
    """An output stream draining a RingBuffer."""

    ring: RingBuffer
    sample_rate: int
    output_latency_frames: int

    def start(self) -> None:
        """Open the device and start the callback; PortError if it cannot be opened."""
        ...

    def close(self) -> None:
        """Stop the callback and the watchdog; idempotent."""
        ...

    def frame_at(self, time_s: float) -> int:
        """The ring position whose sample leaves the output (latency included) at host time `time_s`;
        PortError while the output is not running."""
        ...

    def stats(self) -> OutputStats:
        """The counters so far."""
        ...


class _Watchdog:
    """A thread that notices a lost output, says so once, and reopens it every `retry_s` until it is back."""

    def __init__(self, name: str, is_lost: Any, reopen: Any, retry_s: float) -> None:
        self._is_lost = is_lost
        self._reopen = reopen
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"cypher-{name}-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._retry_s):
            reason = self._is_lost()
            if reason is None:
                continue
            try:
                self._reopen()
            except CypherError as exc:
                logger.debug("audio output still away: %s", exc)
            else:
                logger.warning("audio output is back (it had gone: %s)", reason)

    def stop(self) -> None:
        """End the thread."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


class JackOutput:
    """A JACK client with one output port, connected to every input port whose name contains `connect_to`
    (default: the physical playback ports). Ring positions are JACK frame times."""

    def __init__(self, ring: RingBuffer, sample_rate: int, connect_to: str | None = None,
                 client_name: str = "cypher", servername: str | None = None, retry_s: float = 1.0) -> None:
        self.ring = ring
        self.sample_rate = sample_rate
        self.connect_to = connect_to
        self.client_name = client_name
        self.servername = servername
        self.retry_s = retry_s
        self.output_latency_frames = 0
        self.callbacks = 0
        self.xruns = 0
        self.reopened = 0
        self.graph_changes = 0  # JACK's graph-order notifications (clients or connections came or went)
        self.lost_reason: str | None = None
        self._client: Any = None
        self._port: Any = None
        self._fresh = True
        self._latency_stale = True
        self._watchdog: _Watchdog | None = None

    @property
    def port_name(self) -> str | None:
        """Our output port's full JACK name, while open."""
        return None if self._port is None else str(self._port.name)

    def start(self) -> None:
        """Open the client and connect the port; then a watchdog reopens it whenever the server goes away."""
        self._open()
        self._watchdog = _Watchdog("jack", lambda: self.lost_reason, self._reopen, self.retry_s)

    def _open(self) -> None:
        try:
            import jack
        except (ImportError, OSError) as exc:
            raise BackendMissingError(f"JACK output needs JACK-Client and libjack ({exc}): pip install JACK-Client"
                                      ) from None
        try:
            client = jack.Client(self.client_name, no_start_server=True, servername=self.servername)
        except jack.JackError:
            raise PortError("no JACK server is running: start one (QjackCtl, or `jackd -d dummy -r 48000 -p 256`), "
                            "or choose a sound device with --audio-out") from None
        previous_reason = self.lost_reason
        try:
            if client.samplerate != self.sample_rate:
                raise PortError(f"JACK runs at {client.samplerate} Hz but the engine at {self.sample_rate} Hz: "
                                f"restart JACK with -r {self.sample_rate} or run the engine at {client.samplerate} Hz")
            inputs = [p.name for p in client.get_ports(is_audio=True, is_input=True)]
            if self.connect_to is None:
                targets = [p.name for p in client.get_ports(is_audio=True, is_input=True, is_physical=True)]
            else:
                targets = [n for n in inputs if self.connect_to.lower() in n.lower()]
            if not targets:
                wanted = "physical playback ports" if self.connect_to is None else f"ports named like {self.connect_to!r}"
                raise PortError(f"no JACK input {wanted}; JACK input ports: {', '.join(inputs) or 'none'} "
                                "(choose one with --audio-out jack:NAME)")
            port = client.outports.register("out")
            self._fresh = True
            self.lost_reason = None
            self._client, self._port = client, port
            client.set_process_callback(self._process)
            client.set_shutdown_callback(self._on_shutdown)
            client.set_xrun_callback(self._on_xrun)
            client.set_graph_order_callback(self._on_graph_order)
            client.activate()
            for target in targets:
                client.connect(port, target)
        except BaseException:
            self._client = self._port = None
            self.lost_reason = previous_reason
            client.close()
            raise
        self._refresh_latency()
        _wait_for(lambda: self.callbacks > 0 or self.lost_reason is not None, timeout_s=2.0)
        logger.info("JACK output %s -> %s (latency %d frames)", port.name, ", ".join(targets),
                    self.output_latency_frames)

    def _reopen(self) -> None:
        old, self._client, self._port = self._client, None, None
        if old is not None:
            _abandon(old)
        self._open()
        self.reopened += 1

    def _process(self, frames: int) -> None:
        """JACK's process callback: copies the ring out. No allocation beyond JACK-Client's port view, no lock.

        The playhead follows JACK's frame time both ways: forward over cycles JACK lost, and back when a callback
        that ran late had read the next cycle's frame time (JACK2 advances it when the next cycle starts), played
        that cycle's audio a period early and would otherwise leave every later bar a period early."""
        ring = self.ring
        frame = self._client.last_frame_time
        if self._fresh:
            ring.restart_at(frame)
            self._fresh = False
        else:
            ahead = (frame - ring.read_pos) & FRAME_MASK
            if 0 < ahead < HALF_RANGE:
                ring.advance_to(ring.read_pos + ahead)
            elif ahead >= HALF_RANGE:
                ring.rewind_to(ring.read_pos - ((1 << 32) - ahead))
        ring.read_into(self._port.get_array())
        self.callbacks += 1

    def _on_shutdown(self, status: Any, reason: str) -> None:
        self.lost_reason = f"the JACK server shut down ({reason})"
        logger.error("audio output lost: %s; the engine keeps running and reconnects when JACK is back",
                     self.lost_reason)

    def _on_xrun(self, delay_usecs: float) -> None:
        if self.callbacks:  # JACK reports xruns while clients join the graph: count those of a running stream
            self.xruns += 1

    def _on_graph_order(self) -> None:
        self.graph_changes += 1
        self._latency_stale = True

    def _refresh_latency(self) -> None:
        if self._port is not None:
            self.output_latency_frames, _ = jack_port_latency(self._port.name, self.servername)
            self._latency_stale = False

    def frame_at(self, time_s: float) -> int:
        """The ring position (JACK frame) whose sample leaves our port's downstream path at host time `time_s`."""
        client = self._client
        if client is None or self.lost_reason is not None:
            raise PortError(f"the JACK output is not running ({self.lost_reason or 'not started'})")
        if self._latency_stale:
            self._refresh_latency()
        frame, now_s = read_beside_host(lambda: client.frame_time)
        read = self.ring.read_pos
        position = read + ((frame - read + HALF_RANGE) & FRAME_MASK) - HALF_RANGE
        return position + round((time_s - now_s) * self.sample_rate) - self.output_latency_frames

    def stats(self) -> OutputStats:
        """The counters so far."""
        return OutputStats(self._client is not None and self.lost_reason is None, self.callbacks, self.xruns,
                           self.ring.skipped_samples, self.ring.rewound_samples, self.reopened, self.lost_reason)

    def close(self) -> None:
        """Stop the watchdog and close the client."""
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        client = self._client
        if client is not None and self.lost_reason is not None:
            _abandon(client)
            self._client = self._port = None
        elif client is not None:
            try:
                client.deactivate()
            except Exception as exc:  # the server may already be gone
                logger.debug("deactivating the JACK client: %s", exc)
            self._client = self._port = None
            try:
                client.close()
            except Exception as exc:  # a client whose server died cannot always be closed cleanly
                logger.debug("closing the JACK client: %s", exc)


def _abandon(client: Any) -> None:
    """Forget a JACK client whose server shut down without closing it: libjack 1.9 crashes the process in
    jack_client_close (and JACK-Client's __del__ calls it) once the server is gone. The client's small
    allocation is leaked instead; JACK-Client has no public way to do this, so its handle is cleared."""
    import jack

    client._ptr = jack._ffi.NULL


def _sounddevice() -> Any:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise BackendMissingError(f"audio devices need sounddevice and PortAudio ({exc}): pip install sounddevice; "
                                  "on Linux also apt-get install libportaudio2") from None
    return sounddevice


def _named_outputs(sd: Any) -> list[tuple[int, str]]:
    """(index, "device (host API)") of every PortAudio device that can play."""
    apis = sd.query_hostapis()
    return [(i, f"{d['name']} ({apis[d['hostapi']]['name']})") for i, d in enumerate(sd.query_devices())
            if d["max_output_channels"] > 0]


def _rescan(sd: Any) -> None:
    """Restart PortAudio so it lists the devices present now (sounddevice's documented way to refresh)."""
    sd._terminate()
    sd._initialize()


def output_devices() -> list[str]:
    """Names of the sound devices that can play (PortAudio's view, host API included)."""
    return [n for _, n in _named_outputs(_sounddevice())]


def find_output_device(name: str | None) -> int | None:
    """The PortAudio device index whose name contains `name` (case-insensitive), None for the default device;
    PortError listing the devices when nothing matches."""
    sd = _sounddevice()
    outputs = _named_outputs(sd)
    if name is not None and not any(name.lower() in n.lower() for _, n in outputs):
        _rescan(sd)  # a device (or JACK) that appeared after PortAudio started is only seen after a rescan
        outputs = _named_outputs(sd)
    if name is None:
        if not outputs:
            raise PortError("no sound device can play here: install a virtual channel (BlackHole on macOS, VB-Cable "
                            "on Windows) or start JACK on Linux")
        return None
    matches = [i for i, n in outputs if name.lower() in n.lower()]
    if not matches:
        raise PortError(f"no audio output named like {name!r}; outputs: {', '.join(n for _, n in outputs) or 'none'}. "
                        "Use --audio-out with part of one of these names (jack:NAME for a JACK port)")
    return matches[0]


class DeviceOutput:
    """A sounddevice OutputStream on a device chosen by name (mono ring to every channel, up to two)."""

    def __init__(self, ring: RingBuffer, sample_rate: int, device: str | None = None, blocksize: int = 256,
                 retry_s: float = 1.0) -> None:
        self.ring = ring
        self.sample_rate = sample_rate
        self.device = device
        self.blocksize = blocksize
        self.retry_s = retry_s
        self.output_latency_frames = 0
        self.callbacks = 0
        self.underflows = 0
        self.reopened = 0
        self.lost_reason: str | None = None
        self._stream: Any = None
        self._closing = False
        self._stamp_pos = np.zeros(STAMP_SLOTS, dtype=np.int64)  # ring position of each recent block's start
        self._stamp_dac = np.zeros(STAMP_SLOTS, dtype=np.float64)  # its DAC time on the stream's clock
        self._stamps = 0
        self._watchdog: _Watchdog | None = None

    def start(self) -> None:
        """Open the stream; a watchdog reopens it if it stops by itself."""
        self._open()
        self._watchdog = _Watchdog("device", lambda: self.lost_reason, self._reopen, self.retry_s)

    def _open(self) -> None:
        sd = _sounddevice()
        index = find_output_device(self.device)
        info = sd.query_devices(index, "output")
        channels = max(1, min(2, int(info["max_output_channels"])))
        try:
            sd.check_output_settings(device=index, channels=channels, dtype="float32", samplerate=self.sample_rate)
        except sd.PortAudioError as exc:
            raise PortError(f"{info['name']} cannot play {self.sample_rate} Hz float audio ({exc}): set the device "
                            f"to {self.sample_rate} Hz or run the engine at its rate "
                            f"({int(info['default_samplerate'])} Hz)") from None
        self._stamps = 0
        try:
            stream = sd.OutputStream(device=index, samplerate=self.sample_rate, blocksize=self.blocksize,
                                     channels=channels, dtype="float32", latency="low", callback=self._callback,
                                     finished_callback=self._on_finished)
            stream.start()
        except sd.PortAudioError as exc:
            raise PortError(f"cannot open {info['name']}: {exc}") from None
        self._stream = stream
        self.output_latency_frames = int(round(stream.latency * self.sample_rate))
        _wait_for(lambda: self._stamps > 0, timeout_s=2.0)
        self.lost_reason = None
        logger.info("audio output %s, %d channel(s), latency %d frames", info["name"], channels,
                    self.output_latency_frames)

    def _reopen(self) -> None:
        sd = _sounddevice()
        old, self._stream = self._stream, None
        if old is not None:
            old.close(ignore_errors=True)
        _rescan(sd)
        self._open()
        self.reopened += 1

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's callback: stamp, copy the ring out, count underflows. No allocation of our own, no lock."""
        if status.output_underflow:
            self.underflows += 1
        slot = self._stamps % STAMP_SLOTS
        self._stamp_pos[slot] = self.ring.read_pos
        self._stamp_dac[slot] = time_info.outputBufferDacTime
        self._stamps += 1
        self.ring.read_into(outdata[:, 0])
        if outdata.shape[1] > 1:
            outdata[:, 1] = outdata[:, 0]
        self.callbacks += 1

    def _on_finished(self) -> None:
        if not self._closing:
            self.lost_reason = "the audio device stopped"
            logger.error("audio output lost: %s; the engine keeps running and reopens it when it is back",
                         self.lost_reason)

    def frame_at(self, time_s: float) -> int:
        """The ring position whose sample reaches the DAC at host time `time_s`."""
        stream = self._stream
        if stream is None or self.lost_reason is not None or self._stamps == 0:
            raise PortError(f"the audio output is not running ({self.lost_reason or 'not started'})")
        stream_s, now_s = read_beside_host(lambda: stream.time)
        slot = (self._stamps - 1) % STAMP_SLOTS
        position, dac_s = int(self._stamp_pos[slot]), float(self._stamp_dac[slot])
        dac_host_s = dac_s + (now_s - stream_s)
        return position + round((time_s - dac_host_s) * self.sample_rate)

    def stats(self) -> OutputStats:
        """The counters so far."""
        return OutputStats(self._stream is not None and self.lost_reason is None, self.callbacks, self.underflows,
                           self.ring.skipped_samples, self.ring.rewound_samples, self.reopened, self.lost_reason)

    def close(self) -> None:
        """Stop the watchdog and the stream."""
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close(ignore_errors=True)


def open_output(audio_out: str | None, sample_rate: int, ring_s: float = DEFAULT_RING_S,
                blocksize: int = 256) -> AudioOutput:
    """The output `--audio-out` names, started: `jack:NAME` is a JACK port (JackOutput), anything else part of a
    sound device's name (DeviceOutput); a name no device has but a JACK input port does goes to JACK."""
    ring = RingBuffer(int(ring_s * sample_rate))
    if audio_out is not None and audio_out.lower().startswith(JACK_PREFIX):
        jack_output = JackOutput(ring, sample_rate, connect_to=audio_out[len(JACK_PREFIX):] or None)
        jack_output.start()
        return jack_output
    try:
        index_found = find_output_device(audio_out)
    except PortError as device_error:
        jack_output = JackOutput(ring, sample_rate, connect_to=audio_out)
        try:
            jack_output.start()
        except (PortError, BackendMissingError):
            raise device_error from None
        return jack_output
    logger.debug("audio device index %s for %r", index_found, audio_out)
    device_output = DeviceOutput(ring, sample_rate, device=audio_out, blocksize=blocksize)
    device_output.start()
    return device_output


@dataclass(frozen=True)
class Placement:
    """Where one bar went: the ring position of its bar line, how much of it came too late to play, the host time
    of its line the position was made from (the clock's word at placement, or at the look before it started), how
    far that look moved it, and whether the look came too late to move it (the bar had reached the playhead's
    guard: it played where it was placed)."""

    bar: int
    bar_frame: int
    late_frames: int
    line_time_s: float
    moved_frames: int = 0
    look_late: bool = False


class RingSink:
    """The live `Sink`: each bar's line goes at its predicted host time, played early by the compensation.

    A bar is written into the ring `place_ahead_s` before it starts, not when it is made (often a bar or more
    ahead): host time is turned into a ring position with the audio clock's mapping of that moment, and the audio
    clock can slip against the host's meanwhile (a loaded JACK dummy driver lost 120 ms in 110 s here; a sound card
    loses what an xrun drops). Until then it waits in a queue that a cut also clears.

    `bar_time_s`, when set (the live session sets its clock follower's), is asked for the bar line's host time
    again as the bar is placed: the clock's line has had a bar or more of clocks to settle since the bar was made.
    A bar whose line it cannot say keeps the time it was made with.

    A placed bar is looked at once more `settle_s` before it starts: its frame is worked out again (the clock's
    word, the audio clock's mapping) and, if it moved by MOVE_MIN_FRAMES or more, the bar is taken out of the ring
    and mixed in at the new frame. The JACK dummy driver drops the time of a late cycle from its frame clock (its
    anchor restarts), so a bar placed before such a cycle would otherwise play that much late; a sound card's
    clock does not stop, but JACK's mapping of it settles after an xrun. A bar already at the playhead's guard
    stays where it is, and is counted in `late_looks`."""

    def __init__(self, output: AudioOutput, compensation_frames: int | None = None,
                 guard_frames: int = DEFAULT_GUARD_FRAMES, place_ahead_s: float = PLACE_AHEAD_S,
                 bar_time_s: Callable[[int], float] | None = None, settle_s: float = SETTLE_S) -> None:
        self.output = output
        self.bar_time_s = bar_time_s
        self.compensation_frames = (REFERENCE_COMPENSATION.frames_at(output.sample_rate)
                                    if compensation_frames is None else compensation_frames)
        self.guard_frames = guard_frames
        self.place_ahead_s = place_ahead_s
        self.settle_s = settle_s
        self.placements: list[Placement] = []
        self.dropped_bars = 0
        self.late_frames = 0
        self.moved_bars = 0
        self.late_looks = 0
        # (when to act, order, bar, -1 to place it or the index in `placements` of the placed bar to look at), a heap
        self._waiting: list[tuple[float, int, BarRender, int]] = []
        self._order = 0
        self._lock = threading.Condition()
        self._closed = False
        self._placer = threading.Thread(target=self._place_when_due, name="cypher-sink", daemon=True)
        self._placer.start()

    def submit(self, render: BarRender) -> None:
        """Queue one bar to go into the ring `place_ahead_s` before it starts (at once when that is past)."""
        due_s = render.start_time_s - render.lead_samples / self.output.sample_rate - self.place_ahead_s
        with self._lock:
            if due_s <= time.monotonic():
                self._place(render)
                return
            self._queue(due_s, render, -1)
            self._lock.notify()

    def _queue(self, due_s: float, render: BarRender, index: int) -> None:
        heapq.heappush(self._waiting, (due_s, self._order, render, index))
        self._order += 1

    def _place_when_due(self) -> None:
        with self._lock:
            while not self._closed:
                now_s = time.monotonic()
                while self._waiting and self._waiting[0][0] <= now_s:
                    _due, _order, render, index = heapq.heappop(self._waiting)
                    if index < 0:
                        self._place(render)
                    else:
                        self._settle(render, index)
                self._lock.wait(timeout=(self._waiting[0][0] - now_s) if self._waiting else None)

    def _place(self, render: BarRender) -> None:
        """Mix one bar into the ring so that its `lead_samples` sample leaves on the bar line; bars that cannot be
        placed (output gone, too far ahead) are logged and counted, never raised: the engine keeps running.
        Called with the lock held."""
        line_time_s = self._line_time_s(render)
        try:
            bar_frame = self.output.frame_at(line_time_s) - self.compensation_frames
        except PortError as exc:
            self.dropped_bars += 1
            logger.warning("bar %d not played: %s", render.bar, exc)
            return
        ring = self.output.ring
        start = bar_frame - render.lead_samples
        audio = np.asarray(render.audio, dtype=np.float32).reshape(-1)
        earliest = ring.read_pos + self.guard_frames
        late = min(len(audio), max(0, earliest - start))
        if late:
            self.late_frames += late
            logger.warning("bar %d arrived %.1f ms late; its first %d samples are dropped", render.bar,
                           1000.0 * late / self.output.sample_rate, late)
        try:
            ring.write(start + late, audio[late:])
        except CypherError as exc:
            self.dropped_bars += 1
            logger.warning("bar %d not played: %s", render.bar, exc)
            return
        self.placements.append(Placement(render.bar, bar_frame, late, line_time_s))
        look_s = line_time_s - render.lead_samples / self.output.sample_rate - self.settle_s
        if not late and look_s > time.monotonic():
            self._queue(look_s, render, len(self.placements) - 1)

    def _settle(self, render: BarRender, index: int) -> None:
        """Look at a placed bar again just before it starts; move it if its frame has moved. Called with the lock
        held."""
        placed = self.placements[index]
        line_time_s = self._line_time_s(render)
        try:
            bar_frame = self.output.frame_at(line_time_s) - self.compensation_frames
        except PortError:
            return  # the output is away: nothing plays, nothing to move
        moved = bar_frame - placed.bar_frame
        ring = self.output.ring
        earliest = ring.read_pos + self.guard_frames
        if abs(moved) < MOVE_MIN_FRAMES:
            return
        if min(placed.bar_frame, bar_frame) - render.lead_samples < earliest:
            self.late_looks += 1
            self.placements[index] = replace(placed, look_late=True)
            return
        audio = np.asarray(render.audio, dtype=np.float32).reshape(-1)
        ring.write(placed.bar_frame - render.lead_samples, -audio)
        ring.write(bar_frame - render.lead_samples, audio)
        self.moved_bars += 1
        self.placements[index] = Placement(render.bar, bar_frame, 0, line_time_s, placed.moved_frames + moved)

    def _line_time_s(self, render: BarRender) -> float:
        """The host time of the bar's line: the clock's latest word on it, else what the bar was made with."""
        if self.bar_time_s is None:
            return render.start_time_s
        try:
            time_s = self.bar_time_s(render.bar)
        except CypherError:
            return render.start_time_s
        return time_s if math.isfinite(time_s) else render.start_time_s

    def cut_from(self, time_s: float, release_s: float) -> None:
        """Fade what is in the ring to silence from host time `time_s` (as heard, compensation included) over
        `release_s`, and clear what follows: a style switch's bar line, an early answer, a stop. Bars waiting to
        be placed that start before `time_s` are placed first (their ends fade); those from `time_s` on are
        dropped. Logged, never raised, if the output is away (then there is nothing to cut)."""
        with self._lock:
            keep = [entry for entry in self._waiting if entry[2].start_time_s < time_s and entry[3] < 0]
            for _due, _order, render, _index in sorted(keep):
                self._place(render)
            self._waiting = []  # placed bars are not looked at again: the cut fades them where they are
            try:
                frame = self.output.frame_at(time_s) - self.compensation_frames
            except PortError as exc:
                logger.warning("nothing cut: %s", exc)
                return
            self.output.ring.fade_out(frame, round(release_s * self.output.sample_rate))

    def close(self) -> None:
        """Stop placing (bars still waiting are dropped)."""
        with self._lock:
            self._closed = True
            self._waiting = []
            self._lock.notify()
        self._placer.join(1.0)


def _wait_for(done: Any, timeout_s: float) -> None:
    """Poll `done()` until true or `timeout_s` passes (then PortError: the stream is not running)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise PortError("the audio output opened but its callback never ran: is the device or JACK running?")
        time.sleep(0.005)
