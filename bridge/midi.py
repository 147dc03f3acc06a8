"""MIDI adapters: open ports by name and decode what arrives into `engine.events` on a queue.

Backends follow mido's `Backend` interface (`get_input_names`, `get_output_names`, `open_input`,
`open_output`): JACK through python-rtmidi when a JACK server runs, the system's MIDI (CoreMIDI, Windows MM)
on a producer's machine, and an in-process loopback (real mido ports where what is sent is received) when
neither is there, so the same sender and receiver code runs either way. Adapters never touch engine state:
`MidiEventSource` stamps each message with `time.monotonic()` in the port's callback and puts the decoded
event on a `queue.Queue`.
"""

from __future__ import annotations

import gc
import logging
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

import mido
import mido.ports

from engine.errors import BackendMissingError, PortError
from engine.events import (
    ClockTick,
    ControlChange,
    MidiEvent,
    NoteOn,
    ProgramChange,
    SongPosition,
    TransportContinue,
    TransportStart,
    TransportStop,
)

logger = logging.getLogger(__name__)

CLOCK_EVENTS = (ClockTick, TransportStart, TransportStop, TransportContinue, SongPosition)
JACK_BACKEND = "mido.backends.rtmidi/UNIX_JACK"
SYSTEM_BACKEND = "mido.backends.rtmidi"
CLIENT_NAME = "cypher"
BackendKind = Literal["auto", "jack", "system", "loopback"]


class MidiBackend(Protocol):
    """The part of `mido.Backend` Cypher uses."""

    def get_input_names(self) -> list[str]: ...

    def get_output_names(self) -> list[str]: ...

    def open_input(
        self, name: str | None = None, virtual: bool = False, callback: Callable[[mido.Message], None] | None = None,
        **kwargs: Any,
    ) -> mido.ports.BaseInput: ...

    def open_output(self, name: str | None = None, virtual: bool = False, **kwargs: Any) -> mido.ports.BaseOutput: ...


def jack_running() -> bool:
    """True when a JACK server is running (reads `jack_wait -c`, whose exit code is 0 either way)."""
    jack_wait = shutil.which("jack_wait")
    if jack_wait is not None:
        try:
            done = subprocess.run([jack_wait, "-c"], capture_output=True, text=True, timeout=15)  # slow when busy
        except (OSError, subprocess.TimeoutExpired):
            return False
        return any(line.strip() == "running" for line in done.stdout.splitlines())
    try:
        import jack
    except (ImportError, OSError):
        return False
    try:
        jack.Client("cypher-probe", no_start_server=True).close()
    except jack.JackError:
        return False
    return True


def decode_message(message: mido.Message, time_s: float) -> MidiEvent | None:
    """The engine event for a MIDI message received at `time_s`, or None for messages Cypher ignores."""
    match message.type:
        case "clock":
            return ClockTick(time_s)
        case "start":
            return TransportStart(time_s)
        case "stop":
            return TransportStop(time_s)
        case "continue":
            return TransportContinue(time_s)
        case "songpos":
            return SongPosition(message.pos, time_s)
        case "control_change":
            return ControlChange(message.channel, message.control, message.value, time_s)
        case "note_on" if message.velocity > 0:
            return NoteOn(message.channel, message.note, message.velocity, time_s)
        case "program_change":
            return ProgramChange(message.channel, message.program, time_s)
        case _:
            return None


def resolve_port_name(wanted: str, available: list[str], direction: str) -> str:
    """The one available port named `wanted` exactly, or else the one containing it (case-insensitive)."""
    if wanted in available:
        return wanted
    matches = [name for name in available if wanted.lower() in name.lower()]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(repr(name) for name in available) or "none"
    if matches:
        raise PortError(f"MIDI {direction} {wanted!r} matches several ports ({listed}); give a longer name")
    raise PortError(
        f"no MIDI {direction} matches {wanted!r}; available: {listed}. "
        "Check the port name (`cypher ports` lists them) and that the other side has opened it."
    )


class LoopbackPort(mido.ports.BaseIOPort):
    """An in-process MIDI cable: a real mido port where every message sent is received.

    With `callback` set, messages go to it from the sender's thread (like rtmidi's callback thread);
    otherwise they wait for `receive()` / `poll()`.
    """

    def __init__(self, name: str, callback: Callable[[mido.Message], None] | None = None) -> None:
        self.callback = callback
        super().__init__(name)

    def _send(self, message: mido.Message) -> None:
        callback = self.callback
        if callback is not None:
            callback(message)
        else:
            self._messages.append(message)


class LoopbackBackend:
    """A `mido.Backend` look-alike of named `LoopbackPort`s, for when no JACK server runs.

    As on JACK, a virtual output becomes an input others can open, and a virtual input an output.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readable: dict[str, LoopbackPort] = {}
        self._writable: dict[str, LoopbackPort] = {}

    def get_input_names(self) -> list[str]:
        """Names of virtual outputs, which inputs can open."""
        with self._lock:
            return [name for name, port in self._readable.items() if not port.closed]

    def get_output_names(self) -> list[str]:
        """Names of virtual inputs, which outputs can open."""
        with self._lock:
            return [name for name, port in self._writable.items() if not port.closed]

    def open_input(
        self, name: str | None = None, virtual: bool = False, callback: Callable[[mido.Message], None] | None = None,
        **_: Any,
    ) -> LoopbackPort:
        """Create a virtual input, or attach to a virtual output's cable by name."""
        if virtual:
            return self._create(self._writable, name, callback)
        port = self._find(self._readable, name, "input")
        with port._lock:  # the port's own send lock: nothing slips in between
            if callback is not None and port.callback is None:
                for message in list(port.iter_pending()):  # what was sent before anyone listened
                    callback(message)
            port.callback = callback
        return port

    def open_output(self, name: str | None = None, virtual: bool = False, **_: Any) -> LoopbackPort:
        """Create a virtual output, or attach to a virtual input's cable by name."""
        if virtual:
            return self._create(self._readable, name, None)
        return self._find(self._writable, name, "output")

    def _create(
        self, table: dict[str, LoopbackPort], name: str | None, callback: Callable[[mido.Message], None] | None
    ) -> LoopbackPort:
        if not name:
            raise PortError("a virtual MIDI port needs a name")
        with self._lock:
            if name in table and not table[name].closed:
                raise PortError(f"a virtual MIDI port named {name!r} is already open; close it or pick another name")
            table[name] = port = LoopbackPort(name, callback)
        return port

    def _find(self, table: dict[str, LoopbackPort], name: str | None, direction: str) -> LoopbackPort:
        with self._lock:
            port = table.get(name or "")
        if port is None or port.closed:
            names = self.get_input_names() if direction == "input" else self.get_output_names()
            raise PortError(f"no MIDI {direction} named {name!r}; available: {', '.join(names) or 'none'}")
        return port


def open_backend(kind: BackendKind = "auto") -> MidiBackend:
    """A MIDI backend: "jack", "system" (rtmidi's default API), "loopback", or "auto".

    "auto" takes JACK when a server runs, else the system's MIDI on macOS and Windows, else the loopback.
    """
    if kind == "auto":
        if jack_running():
            kind = "jack"
        else:
            kind = "system" if sys.platform in ("darwin", "win32") else "loopback"
    if kind == "loopback":
        return LoopbackBackend()
    if kind == "jack" and not jack_running():
        raise PortError("no JACK server runs: start one (e.g. `jackd -d dummy -r 48000 -p 256 &`) or use loopback")
    if kind not in ("jack", "system"):
        raise PortError(f"unknown MIDI backend {kind!r}; use auto, jack, system or loopback")
    try:
        return mido.Backend(JACK_BACKEND if kind == "jack" else SYSTEM_BACKEND, load=True)
    except ImportError as err:
        raise BackendMissingError(f"python-rtmidi is missing ({err}): pip install python-rtmidi") from err


def _open(opener: Callable[..., Any], name: str, virtual: bool, **kwargs: Any) -> Any:
    """Call a backend's open_* and turn its errors into PortError."""
    if virtual:
        kwargs["client_name"] = CLIENT_NAME
    try:
        return opener(name, virtual=virtual, **kwargs)
    except PortError:
        raise
    except Exception as err:  # rtmidi raises its own error types and OSError
        raise PortError(f"cannot open MIDI port {name!r}: {err}") from err


def open_output(backend: MidiBackend, name: str, *, virtual: bool = False) -> mido.ports.BaseOutput:
    """Open an output by exact name or substring, or create a virtual output named `name`."""
    if not virtual:
        name = resolve_port_name(name, backend.get_output_names(), "output")
    return _open(backend.open_output, name, virtual)


CALLBACK_DRAIN_S = 0.05
"""After the callback is cancelled, how long the GIL is left free for a call already on its way to finish."""


def close_rtmidi_input(port: Any, drain_s: float = CALLBACK_DRAIN_S) -> None:
    """Close a python-rtmidi input so that no thread of the driver is left waiting for the GIL.

    JACK kills a client's process thread when the client closes (pthread_cancel). python-rtmidi closes holding the
    GIL, so a process thread that was calling our Python callback waits for it; cancelled there, it takes the GIL's
    own lock with it and every thread of the process stops for good (seen in CI: the suite hung until its
    90-minute limit; a stress test here hung within 30 closes). So: cancel the callback (the thread stops calling
    into Python), sleep with the GIL free until a call already on its way is done, and only then close the port and
    its client. The driver's thread holds the callback only as a raw pointer, and cancelling drops python-rtmidi's
    reference to it: what the port refers to is held here until then, or a call on its way runs on freed memory
    (a segfault in the same stress test).
    """
    on_its_way = gc.get_referents(port)
    port.cancel_callback()
    time.sleep(drain_s)
    port.close_port()
    port.delete()
    del on_its_way


DRIVER_DRIFT = 1e-4  # how fast the driver-to-host offset may rise (s per s): 100 ppm of clock-rate difference


class MidiEventSource:
    """Decodes a MIDI input into engine events on `events`, stamped in the port callback with `clock()`.

    Opens the input by exact name or substring, or creates a virtual input named `name`. Messages that
    are not clock, transport, Song Position, CC, Note On or Program Change are counted in `ignored`.
    """

    def __init__(
        self,
        backend: MidiBackend,
        name: str,
        events: queue.Queue[MidiEvent],
        *,
        virtual: bool = False,
        clock: Callable[[], float] = time.monotonic,
        take_clock: bool = True,
    ) -> None:
        self._events = events
        self._clock = clock
        self.take_clock = take_clock  # False: clock, transport and song position are left out (audio-only mode)
        self.received = 0
        self.ignored = 0
        if not virtual:
            name = resolve_port_name(name, backend.get_input_names(), "input")
        self._port: mido.ports.BaseInput = _open(backend.open_input, name, virtual, callback=self._on_message)
        self.name: str = self._port.name
        self._driver_s = 0.0  # the driver's own time of the latest message, summed from its deltas
        self._offset_s: float | None = None  # host clock minus driver time, the least delay seen
        self._rtmidi_in = getattr(self._port, "_rt", None)  # mido's rtmidi port: take the driver's timestamps
        if self._rtmidi_in is not None:
            self._rtmidi_in.set_callback(self._on_driver_message)
        logger.info("listening to MIDI input %r", self.name)

    def _on_driver_message(self, event: tuple[list[int], float], _data: object = None) -> None:
        """rtmidi's callback: the message with the driver's delta time, taken before Python runs.

        The callback itself can run late (another thread holding the GIL, a busy machine) and then several
        clocks arrive at once; stamping them on arrival would bunch them up. The driver's deltas keep their
        spacing; the host time they map to is the least arrival delay seen, let rise by 100 ppm of elapsed
        time so two clocks that run at slightly different rates stay together.
        """
        data, delta_s = event
        arrival_s = self._clock()
        self._driver_s += max(0.0, float(delta_s))
        candidate = arrival_s - self._driver_s
        if self._offset_s is None or candidate < self._offset_s + DRIVER_DRIFT * max(0.0, float(delta_s)):
            self._offset_s = candidate
        else:
            self._offset_s += DRIVER_DRIFT * max(0.0, float(delta_s))
        try:
            message = mido.Message.from_bytes(data)
        except (ValueError, TypeError, IndexError):
            self.ignored += 1
            return
        self._deliver(message, self._driver_s + self._offset_s)

    def _on_message(self, message: mido.Message) -> None:
        self._deliver(message, self._clock())

    def _deliver(self, message: mido.Message, time_s: float) -> None:
        event = decode_message(message, time_s)
        if event is None or (not self.take_clock and isinstance(event, CLOCK_EVENTS)):
            self.ignored += 1
            return
        self.received += 1
        self._events.put(event)

    def close(self) -> None:
        """Close the input port, with no Python callback left for the driver's thread (see `close_rtmidi_input`)."""
        if self._rtmidi_in is None:
            self._port.close()  # the loopback, or a backend with no driver thread
        elif not self._port.closed:
            close_rtmidi_input(self._rtmidi_in)
            self._port.closed = True  # mido's own close would install its callback again first: that hung the set

    def __enter__(self) -> MidiEventSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_virtual_pair(
    backend: MidiBackend, name: str, events: queue.Queue[MidiEvent]
) -> tuple[MidiEventSource, mido.ports.BaseOutput]:
    """Open Cypher's own virtual ports: an input `<name> in` (decoded onto `events`) and an output `<name> out`."""
    source = MidiEventSource(backend, f"{name} in", events, virtual=True)
    try:
        output = open_output(backend, f"{name} out", virtual=True)
    except PortError:
        source.close()
        raise
    return source, output
