"""`cypher calibrate`: measure the audio round trip through a loopback and store it as the latency compensation."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from engine.play.latency import (
    REFERENCE_COMPENSATION,
    CalibrationError,
    latency_path,
    load_compensation,
    measure_jack_loop,
    save_measurement,
)

DESCRIPTION = """\
Measure the round trip of the audio path the way jack_iodelay does: a noise burst leaves Cypher's output port,
comes back through your loop into Cypher's input port, and the delay is found by correlation, to the sample.
The result is stored and used afterwards as the latency compensation: each answer bar is played that many
frames early, so it lands on the bar line in the DAW's recording. Until you calibrate, the reference rig's
256 frames at 48 kHz are used.

Build the loop first: in the DAW, route the track that records Cypher back out to a JACK port (or patch a cable
from an output to an input of the sound card), then name both ends here.
"""

EPILOG = """\
examples:
  cypher calibrate --out system:playback_1 --in system:capture_1     a cable from output 1 to input 1
  cypher calibrate --out "Bitwig:in" --in "Bitwig:out" --repeats 9   through the DAW's own ports
  cypher calibrate --show                                             the compensation in use, measure nothing
  cypher calibrate --dry-run ...                                      measure, do not store

The result goes to $XDG_CONFIG_HOME/cypher/latency.toml (else ~/.config/cypher/latency.toml; CYPHER_CONFIG_DIR
or --config overrides). Delete the file to return to the reference value.
"""


def _repeats(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--repeats takes a whole number from 1 to 50, got {text!r}") from None
    if not 1 <= value <= 50:
        raise argparse.ArgumentTypeError(f"--repeats takes a whole number from 1 to 50, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add `cypher calibrate`."""
    parser = sub.add_parser("calibrate", help="measure the audio round trip and store the latency compensation",
                            description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="system:playback_1",
                        help="JACK input port(s) our test signal goes to, by part of the name "
                             "(default: system:playback_1)")
    parser.add_argument("--in", dest="in_from", default="system:capture_1",
                        help="JACK output port(s) the loop comes back from, by part of the name "
                             "(default: system:capture_1)")
    parser.add_argument("--repeats", type=_repeats, default=5, help="measurements, which must agree (default: 5)")
    parser.add_argument("--config", type=Path, default=None,
                        help=f"file to store the result in (default: {latency_path()})")
    parser.add_argument("--dry-run", action="store_true", help="measure and show, but do not store")
    parser.add_argument("--show", action="store_true", help="show the compensation in use and measure nothing")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Measure (unless --show), print a table, store the result (unless --dry-run)."""
    path = args.config if args.config is not None else latency_path()
    if args.show:
        current = load_compensation(path)
        console.print(f"compensation: {current.frames} frames at {current.sample_rate} Hz "
                      f"({1000.0 * current.frames / current.sample_rate:.3f} ms), {current.source}")
        return 0
    measurement = measure_jack_loop(args.out, args.in_from, repeats=args.repeats)
    rate = measurement.sample_rate
    table = Table(title=f"Round trip {', '.join(measurement.out_ports)} -> {', '.join(measurement.in_ports)}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("round trips (frames)", ", ".join(str(f) for f in measurement.round_trips_frames))
    table.add_row("round trip (frames / ms)",
                  f"{measurement.round_trip_frames} / {1000.0 * measurement.round_trip_frames / rate:.3f}")
    table.add_row("JACK reports out / in (frames)",
                  f"{measurement.output_latency_frames} / {measurement.input_latency_frames}")
    table.add_row("sample rate, period", f"{rate} Hz, {measurement.blocksize} frames")
    table.add_row("reference rig (frames)", f"{REFERENCE_COMPENSATION.frames} at {REFERENCE_COMPENSATION.sample_rate} Hz")
    console.print(table)
    if measurement.round_trip_frames == 0:
        raise CalibrationError("the loop came back with no delay at all: that is not a loop through the DAW or a "
                               "cable; check the --out and --in ports")
    if args.dry_run:
        console.print("dry run: nothing stored")
        return 0
    save_measurement(measurement, path)
    console.print(f"stored {measurement.compensation_frames} frames in {path}")
    return 0
