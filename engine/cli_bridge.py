"""`cypher ports`, `cypher clock` and `cypher learn`: see the ports, watch the DAW's clock, map a controller.

Register with `register(sub)`; each command's `run(args, console) -> int` raises CypherError for anything a
user can fix (a missing port names the ones there are).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bridge.clock import ClockFollower
from bridge.control import ControlRouter, default_user_map_path
from bridge.midi import LoopbackBackend, MidiBackend, MidiEventSource, jack_running, open_backend
from engine.errors import CypherError, PortError
from engine.events import MidiEvent
from engine.presets import CONTROL_TARGETS, available_styles, load_style
from engine.timebase import PPQN

log = logging.getLogger(__name__)

MIDI_IN_ENV = "CYPHER_MIDI_IN"
VIRTUAL_CLOCK_PORT = "cypher clock in"
VIRTUAL_LEARN_PORT = "cypher learn in"
LOOPMIDI_HINT = (
    "Windows has no virtual MIDI ports of its own: install loopMIDI (tobias-erichsen.de/software/loopmidi.html), "
    "add a port, send Live's MIDI clock to it and pass its name with --midi-in."
)

PORTS_EPILOG = """\
examples:
  cypher ports                 MIDI inputs and outputs on every backend, and the audio devices
  cypher ports --json          the same as one JSON object

A MIDI port is chosen elsewhere by its exact name or any unique part of it (--midi-in, env CYPHER_MIDI_IN).
On JACK, a virtual output one program opens is an input for the others (its name is `client:port`).
"""

CLOCK_EPILOG = """\
examples:
  cypher clock                          open a virtual input 'cypher clock in' and watch what arrives
  cypher clock --midi-in "IAC Bus 1"    listen to an existing port (exact name or a unique part of it)
  cypher clock --json --seconds 10      one JSON object a line for 10 seconds:
                                        {"tempo_bpm": 120.003, "bar": 3, "beat": 2, "transport": "playing",
                                         "jitter_ms": 0.41, ...}

At every beat it prints the tempo the follower reads, bar.beat (from 1.1), the transport (playing/stopped) and
the jitter it sees (RMS distance of the clocks from the fitted clock line). Start your DAW's transport to see
bar 1.1; a clock without Start is followed from wherever it joins. Stop with Ctrl-C.
"""

LEARN_EPILOG = """\
examples:
  cypher learn energy --midi-in nanoKONTROL          move a knob: it now sets the energy
  cypher learn style --value boom_bap --midi-in pad  press a pad: it now switches to boom bap

The mapping is saved to the controller map (default $XDG_CONFIG_HOME/cypher/controls.toml or
~/.config/cypher/controls.toml) and is read every time Cypher starts; it takes precedence over the preset's map.
Changes from controllers take effect at the next bar line.
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add `ports`, `clock` and `learn` to the `cypher` command."""
    formatter = argparse.RawDescriptionHelpFormatter
    ports = sub.add_parser("ports", help="list MIDI inputs/outputs and audio devices",
                           description="List the MIDI inputs and outputs on each backend, and the audio devices.",
                           epilog=PORTS_EPILOG, formatter_class=formatter)
    ports.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    ports.set_defaults(run=run_ports)

    clock = sub.add_parser("clock", help="watch the DAW's MIDI clock: tempo, bar.beat, transport, jitter",
                           description="A clock monitor for debugging sync: prints what Cypher reads at every beat.",
                           epilog=CLOCK_EPILOG, formatter_class=formatter)
    _add_midi_in(clock)
    clock.add_argument("--json", action="store_true", help="one JSON object a line")
    clock.add_argument("--seconds", type=_positive_seconds, default=None,
                       help="stop after this many seconds (default: run until Ctrl-C)")
    clock.set_defaults(run=run_clock)

    learn = sub.add_parser("learn", help="MIDI learn: bind the next control you move to a parameter or style",
                           description="MIDI learn: the next Control Change, Note or Program Change that arrives "
                                       "is bound to TARGET and saved to your controller map.",
                           epilog=LEARN_EPILOG, formatter_class=formatter)
    learn.add_argument("target", choices=sorted(CONTROL_TARGETS), help="what the control will set")
    learn.add_argument("--value", default="",
                       help="for style: the style to switch to; for a program change on a parameter: its level 0..1")
    learn.add_argument("--style", default="boom_bap", help="the preset whose controls are in force (default: boom_bap)")
    learn.add_argument("--map", type=Path, default=None,
                       help="controller map file (default: $XDG_CONFIG_HOME/cypher/controls.toml)")
    learn.add_argument("--seconds", type=_positive_seconds, default=30.0,
                       help="give up after this many seconds (default: 30)")
    _add_midi_in(learn)
    learn.set_defaults(run=run_learn)


def _add_midi_in(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--midi-in", default=None, metavar="PORT",
                        help=f"MIDI input: exact name or a unique part of it (env {MIDI_IN_ENV}); "
                             "default: a virtual input Cypher opens")
    parser.add_argument("--backend", choices=("auto", "jack", "system"), default="auto",
                        help="MIDI backend (default: JACK when a server runs, else the system's MIDI)")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number of seconds, got {text!r}") from None
    if not 0 < value < 1e7:
        raise argparse.ArgumentTypeError(f"takes a number of seconds above 0, got {text}")
    return value


# ----- ports -------------------------------------------------------------------------------------------------
def midi_backends() -> list[str]:
    """The MIDI backends worth listing here: JACK when a server runs, and the system's MIDI."""
    return (["jack"] if jack_running() else []) + ["system"]


def list_midi(kind: str) -> dict[str, Any]:
    """Inputs and outputs of one backend, or the reason it is unavailable."""
    try:
        backend = open_backend(kind)  # type: ignore[arg-type]
        return {"inputs": sorted(backend.get_input_names()), "outputs": sorted(backend.get_output_names())}
    except CypherError as err:
        return {"error": str(err)}
    except Exception as err:  # rtmidi raises its own errors when an API (ALSA, CoreMIDI) cannot start
        return {"error": f"{type(err).__name__}: {err}"}


def list_audio() -> dict[str, Any]:
    """Audio devices through sounddevice (PortAudio), or why there are none."""
    try:
        import sounddevice
    except (ImportError, OSError) as err:
        return {"error": f"PortAudio is not available ({err}): install libportaudio2 (or PortAudio)"}
    try:
        apis = sounddevice.query_hostapis()
        devices = sounddevice.query_devices()
    except Exception as err:  # PortAudio errors are sounddevice.PortAudioError
        return {"error": f"cannot list audio devices: {err}"}
    return {"devices": [
        {"index": i, "name": d["name"], "host_api": apis[d["hostapi"]]["name"], "inputs": d["max_input_channels"],
         "outputs": d["max_output_channels"], "sample_rate": d["default_samplerate"]}
        for i, d in enumerate(devices)
    ]}


def run_ports(args: argparse.Namespace, console: Console) -> int:
    """`cypher ports`."""
    notes = [LOOPMIDI_HINT] if sys.platform == "win32" else []
    if not jack_running() and sys.platform.startswith("linux"):
        notes.append("no JACK server runs: start one (e.g. `jackd -d dummy -r 48000 -p 256 &`) for virtual ports")
    found = {"midi": {kind: list_midi(kind) for kind in midi_backends()}, "audio": list_audio(), "notes": notes}
    if args.json:
        console.out(json.dumps(found), highlight=False)
        return 0
    for kind, ports in found["midi"].items():
        if "error" in ports:
            console.print(f"MIDI ({kind}): unavailable: {ports['error']}", highlight=False)
            continue
        table = Table(title=f"MIDI ports ({kind})")
        table.add_column("direction")
        table.add_column("name", overflow="fold")
        for direction in ("inputs", "outputs"):
            for name in ports[direction]:
                table.add_row(direction[:-1], name)
        if not ports["inputs"] and not ports["outputs"]:
            table.add_row("-", "none")
        console.print(table)
    audio = found["audio"]
    if "error" in audio:
        console.print(f"audio: unavailable: {audio['error']}", highlight=False)
    else:
        table = Table(title="audio devices")
        for column in ("#", "name", "host API", "in", "out", "rate (Hz)"):
            table.add_column(column, overflow="fold")
        for d in audio["devices"]:
            table.add_row(str(d["index"]), d["name"], d["host_api"], str(d["inputs"]), str(d["outputs"]),
                          f"{d['sample_rate']:g}")
        if not audio["devices"]:
            table.add_row("-", "none", "", "", "", "")
        console.print(table)
    for note in notes:
        console.print(note, highlight=False)
    return 0


# ----- opening an input ----------------------------------------------------------------------------------------
@contextmanager
def open_midi_in(
    args: argparse.Namespace, virtual_name: str, events: queue.Queue[MidiEvent], console: Console
) -> Iterator[MidiEventSource]:
    """The input named by --midi-in or CYPHER_MIDI_IN, else a virtual input where the platform has them."""
    wanted = args.midi_in or os.environ.get(MIDI_IN_ENV) or None
    backend: MidiBackend = open_backend(args.backend)
    if wanted is None:
        if sys.platform == "win32":
            raise PortError(LOOPMIDI_HINT)
        if isinstance(backend, LoopbackBackend):
            raise PortError("no JACK server runs, so there is no virtual MIDI port to open here: start JACK "
                            "(e.g. `jackd -d dummy -r 48000 -p 256 &`) or pass --midi-in PORT")
        source = MidiEventSource(backend, virtual_name, events, virtual=True)
        console.print(f"listening on the virtual input {source.name!r}: send your DAW's MIDI clock to it",
                      highlight=False, style="dim")
    else:
        source = MidiEventSource(backend, wanted, events)
    try:
        yield source
    finally:
        source.close()


def _events_until(
    events: queue.Queue[MidiEvent], seconds: float | None, poll_s: float = 0.05
) -> Iterator[MidiEvent]:
    """Events as they arrive, until `seconds` have passed (forever when None)."""
    deadline_s = None if seconds is None else time.monotonic() + seconds
    while deadline_s is None or time.monotonic() < deadline_s:
        timeout_s = poll_s if deadline_s is None else max(0.0, min(poll_s, deadline_s - time.monotonic()))
        try:
            yield events.get(timeout=timeout_s)
        except queue.Empty:
            continue


# ----- clock ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BeatReport:
    """What the clock monitor prints at a beat (or a transport change)."""

    tempo_bpm: float | None
    bar: int
    beat: int
    transport: str
    jitter_ms: float
    ignored: int

    def as_json(self) -> str:
        """One JSON line."""
        tempo = None if self.tempo_bpm is None else round(self.tempo_bpm, 3)
        return json.dumps({"tempo_bpm": tempo, "bar": self.bar, "beat": self.beat, "transport": self.transport,
                           "jitter_ms": round(self.jitter_ms, 3), "ignored": self.ignored})

    def as_text(self) -> str:
        """One line for people."""
        tempo = "   ---  " if self.tempo_bpm is None else f"{self.tempo_bpm:8.3f}"
        return (f"{tempo} BPM  {self.bar:>4}.{self.beat}  {self.transport:<8}  jitter {self.jitter_ms:5.2f} ms"
                + (f"  ignored {self.ignored}" if self.ignored else ""))


class BeatWatcher:
    """Feeds the follower and yields a report when a new beat starts or the transport changes."""

    def __init__(self, follower: ClockFollower) -> None:
        self.follower = follower
        self._last: tuple[str, int] | None = None

    def feed(self, event: object) -> BeatReport | None:
        """Feed one event; a report if it started a beat or changed the transport."""
        follower = self.follower
        follower.feed(event)
        beat_index = follower.position_ticks // PPQN
        key = (follower.transport, beat_index)
        if key == self._last:
            return None
        self._last = key
        position = follower.bar_beat()
        return BeatReport(follower.tempo_bpm, position.bar + 1, position.beat + 1, follower.transport,
                          follower.jitter_ms, follower.ignored)


def run_clock(args: argparse.Namespace, console: Console) -> int:
    """`cypher clock`."""
    events: queue.Queue[MidiEvent] = queue.Queue()
    watcher = BeatWatcher(ClockFollower())
    show: Callable[[BeatReport], None]
    if args.json:
        def show(report: BeatReport) -> None:
            console.out(report.as_json(), highlight=False)
    else:
        def show(report: BeatReport) -> None:
            console.print(report.as_text(), highlight=False)
    with open_midi_in(args, VIRTUAL_CLOCK_PORT, events, console) as source:
        if not args.json:
            console.print(f"watching {source.name!r}: tempo, bar.beat, transport, jitter at every beat",
                          highlight=False, style="dim")
        for event in _events_until(events, args.seconds):
            report = watcher.feed(event)
            if report is not None:
                show(report)
    return 0


# ----- learn ---------------------------------------------------------------------------------------------------
def run_learn(args: argparse.Namespace, console: Console) -> int:
    """`cypher learn`."""
    path = args.map or default_user_map_path()
    router = ControlRouter(load_style(args.style), path, known_styles=available_styles())
    router.arm(args.target, args.value)
    events: queue.Queue[MidiEvent] = queue.Queue()
    with open_midi_in(args, VIRTUAL_LEARN_PORT, events, console) as source:
        console.print(f"move a control on {source.name!r} to bind it to {args.target}", highlight=False)
        for event in _events_until(events, args.seconds):
            router.handle(event)
            learned = router.last_learned
            if learned is not None:
                channel = "any channel" if learned.channel is None else f"channel {learned.channel + 1}"
                value = f" = {learned.value}" if learned.value else ""
                console.print(f"{learned.kind} {learned.number} on {channel} -> {learned.target}{value}; "
                              f"saved to {path}", highlight=False)
                return 0
    console.print(f"no control arrived in {args.seconds:g} s; nothing was saved", highlight=False)
    return 1
