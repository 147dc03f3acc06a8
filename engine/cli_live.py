"""`cypher live`: the engine against real ports."""

from __future__ import annotations

import argparse
import os
import queue
import threading
from pathlib import Path

from rich.console import Console

from bridge.control import ControlRouter, default_user_map_path
from bridge.midi import MidiEventSource, open_backend
from bridge.osc import add_server_arguments, open_from_args
from engine.control import EngineState
from engine.errors import PortError
from engine.listen.beatclock import BeatBusClock
from engine.listen.capture import JackCapture
from engine.live import DEFAULT_SILENCE_ENDS_TURN_S, SAMPLE_RATE, VIRTUAL_MIDI_IN, LiveParts, LiveSession
from engine.play.latency import load_compensation
from engine.play.output import RingSink, open_output
from engine.presets import available_styles, load_style
from engine.worker import LineWorker, WorkerConfig

EPILOG = """\
examples:
  cypher live --audio-out jack:system                 Cypher opens a virtual MIDI input "Cypher clock in"
  cypher live --audio-out jack:system --vocal-in system:capture_1 --beat-in Live:out3
                                                      hear the opponent's mic and the beat (JACK ports)
  cypher live --audio-out jack:system --beat-in Live:out3 --no-clock
                                                      no MIDI clock: the beat itself drives the timeline
  cypher live --midi-in IAC --audio-out BlackHole     macOS: Live sends clock to the IAC bus
  cypher live --midi-in loopMIDI --audio-out "CABLE Input"   Windows

Then, from the Max for Live device or `cypher panel --send ...`:
  /cypher/arm/set 1                       arm: the next bar starts the opponent's turn
  /cypher/opponent/text "your line here"  one line per bar of the opponent's verse (overrides --vocal-in)
  /cypher/turn/opponent 4                 the opponent's bars (Cypher answers for as many)
  /cypher/turn/answer                     answer now: Cypher's turn starts on the next bar line
With --vocal-in, the opponent's turn also ends when they have been quiet for --silence-ends-turn seconds.

The answer starts on the bar line after the opponent's verse, placed by the clock's prediction, early by the
output latency and the round trip measured by `cypher calibrate` (or the reference rig's 256 frames).
"""


def _seconds(text: str) -> float:
    """A number of seconds, 0 or more (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.0 <= value <= 60.0:
        raise argparse.ArgumentTypeError(f"{value:g} s is outside 0..60 s")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add `cypher live`."""
    parser = sub.add_parser("live", help="run against real ports: MIDI clock in, OSC panel, answer out",
                            description="Follow the DAW's MIDI clock, take the panel's commands over OSC, and "
                                        "answer the opponent on the bar line through an audio output.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--midi-in", default=os.environ.get("CYPHER_MIDI_IN"),
                        help=f"MIDI input carrying Live's clock, by name or part of it (env CYPHER_MIDI_IN); "
                             f"default: a virtual input '{VIRTUAL_MIDI_IN}'")
    parser.add_argument("--audio-out", default=None,
                        help="audio output for the answer: part of a device's name, or jack:PORT")
    parser.add_argument("--beat-in", default=None, metavar="PORT",
                        help="JACK output port carrying the beat bus (part of its name), to follow the beat")
    parser.add_argument("--vocal-in", default=None, metavar="PORT",
                        help="JACK output port carrying the opponent's vocal bus: their words are recognised bar by "
                             "bar (typed lines from the panel still win)")
    parser.add_argument("--no-clock", action="store_true",
                        help="audio-only mode: no MIDI clock; the beat bus (--beat-in) drives the timeline, bar 1 on "
                             "the kick's downbeat (the MIDI input still carries your controllers)")
    parser.add_argument("--silence-ends-turn", type=_seconds, default=DEFAULT_SILENCE_ENDS_TURN_S,
                        metavar="SECONDS",
                        help="with --vocal-in: the opponent's turn ends when their bus has been quiet this long after "
                             "they rapped, and the answer starts on the next bar line (default "
                             f"{DEFAULT_SILENCE_ENDS_TURN_S:g}; 0: only the bar count and the panel's answer-now)")
    parser.add_argument("--style", default="boom_bap", help=f"starting style ({', '.join(available_styles())})")
    parser.add_argument("--words", choices=("auto", "lm", "lexicon"), default="auto",
                        help="words backend (default: the language model if installed)")
    parser.add_argument("--controls", type=Path, default=None,
                        help="your MIDI controller map (default: ~/.config/cypher/controls.toml)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    add_server_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Start the line worker, open the ports, run until Ctrl-C (or --seconds), close everything."""
    if args.no_clock and not args.beat_in:
        raise PortError("--no-clock needs the beat: give its JACK port with --beat-in PORT")
    style = load_style(args.style)
    state = EngineState.initial(style.name)
    events: queue.Queue = queue.Queue()
    commands: queue.Queue = queue.Queue()
    with console.status("loading the language model and the voice in the line worker"):
        writer = LineWorker(WorkerConfig(args.words, SAMPLE_RATE, seed=0, warm_voice=style.voice,
                                         warm_ears=bool(args.vocal_in)))
    try:
        backend = open_backend("auto")
        take_clock = not args.no_clock  # one clock: two would fight over the follower
        midi = (MidiEventSource(backend, args.midi_in, events, take_clock=take_clock) if args.midi_in
                else MidiEventSource(backend, VIRTUAL_MIDI_IN, events, virtual=True, take_clock=take_clock))
        try:
            output = open_output(args.audio_out, SAMPLE_RATE)
            server, replies = open_from_args(args, commands)
        except BaseException:
            midi.close()
            raise
        sources = {name: port for name, port in (("beat", args.beat_in), ("vocal", args.vocal_in)) if port}
        try:
            capture = JackCapture(sources, SAMPLE_RATE) if sources else None
        except BaseException:
            midi.close()
            output.close()
            replies.close()
            raise
        router = ControlRouter(style, args.controls or default_user_map_path(), known_styles=state.styles)
        sink = RingSink(output, load_compensation().frames_at(SAMPLE_RATE))
        beat_clock = BeatBusClock(capture, events) if args.no_clock and capture is not None else None
        session = LiveSession(LiveParts(midi, server, replies, sink, writer, router, capture,
                                        hearing=writer if args.vocal_in else None, beat_clock=beat_clock),
                              state, events, commands,
                              silence_ends_turn_s=args.silence_ends_turn)
        sink.bar_time_s = session.bar_time_s
        clock_from = f"the beat bus ({args.beat_in})" if args.no_clock else f"'{midi.name}'"
        console.print(f"Cypher live: clock from {clock_from}, answer to {args.audio_out or 'the default output'}, "
                      f"OSC on {args.osc_host}:{args.osc_port}, words by {writer.words_backend} (worker process "
                      f"{writer.pid}). Ctrl-C stops.")
        stop = threading.Event()
        if args.seconds:
            threading.Timer(args.seconds, stop.set).start()
        try:
            session.run(stop)
        except KeyboardInterrupt:
            stop.set()
        finally:
            sink.close()
            output.close()
            replies.close()
            if capture is not None:
                capture.close()
    finally:
        writer.close()
    console.print(f"started {session.turns_started} turns; {sink.dropped_bars} bars dropped")
    return 0
