"""The `cypher` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.errors import CypherError
from engine.presets import available_styles, load_style
from engine.write.planner import MAX_BARS, MIN_TURN_BARS

log = logging.getLogger("cypher")

DESCRIPTION = """\
Cypher raps back, in time, inside a producer's set: it follows the DAW's MIDI clock, hears the beat and the
opponent's vocal, plans an answer on the beat grid, fills it with words, speaks it and plays it on the bar line.
"""

DEMO_EPILOG = """\
examples:
  cypher demo                          render the default exchange into out/demo
  cypher demo --bars 4 --seed 7        a shorter exchange, other words
  cypher demo --words lexicon          no language model: the lexicon filler

The demo runs in real time (the clock is sent through real MIDI ports), so an 8-bar exchange at 90 BPM takes
about a minute. It writes exchange.wav, answer.wav, answer.txt, grid.png and report.json.
"""


def _bars(text: str) -> int:
    why = f"--bars takes a whole number from {MIN_TURN_BARS} to {MAX_BARS} (each line is written one bar behind "
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{why}the opponent), got {text!r}") from None
    if not MIN_TURN_BARS <= value <= MAX_BARS:
        raise argparse.ArgumentTypeError(f"{why}the opponent), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per job."""
    parser = argparse.ArgumentParser(prog="cypher", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="render one battle exchange offline (no DAW, no sound card)",
                          description="Render one battle exchange offline through the live code path.",
                          epilog=DEMO_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default: out/demo)")
    demo.add_argument("--style", default="boom_bap",
                      help=f"style preset (default: boom_bap; shipped: {', '.join(available_styles())})")
    demo.add_argument("--bars", type=_bars, default=8, help=f"bars per turn, {MIN_TURN_BARS}-{MAX_BARS} (default: 8)")
    demo.add_argument("--seed", type=int, default=0, help="seed for the clock jitter, the beat and the words")
    demo.add_argument("--words", choices=("auto", "lm", "lexicon"), default="auto",
                      help="words backend: the language model, the lexicon, or auto (model if installed)")
    demo.add_argument("--midi", choices=("auto", "jack", "loopback"), default="auto",
                      help="how the stand-in DAW's clock reaches the engine: JACK MIDI, an in-process port, or auto "
                           "(JACK when a server runs)")
    demo.set_defaults(run=_demo)
    for register in _registrars():
        register(sub)
    return parser


def _registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    """The other subcommands: each module's `register(sub)` adds its parser with `set_defaults(run=...)`,
    where `run(args, console) -> int`."""
    from engine import cli_bridge, cli_calibrate, cli_live, cli_panel, cli_presets, cli_write

    return [cli_live.register, cli_bridge.register, cli_panel.register, cli_calibrate.register, cli_presets.register,
            cli_write.register]


def _demo(args: argparse.Namespace, console: Console) -> int:
    from engine.render import DemoConfig, check_writable, run_exchange
    from engine.report import build_report, write_outputs

    style = load_style(args.style)
    check_writable(args.out)
    cfg = DemoConfig(out_dir=args.out, style=style, bars=args.bars, seed=args.seed, words=args.words,
                     midi=args.midi)
    columns = (TextColumn("{task.description:<16}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, int] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done)

        exchange = run_exchange(cfg, report)
    figures = build_report(cfg, exchange)
    files = write_outputs(cfg, exchange, figures)
    table = Table(title=f"Cypher demo: {style.display_name}, {cfg.bars} bars, seed {cfg.seed}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    onset = figures["onset_error_ms"]
    rows = [
        ("tempo error (BPM, median)", figures["tempo_error_bpm"]),
        ("onset error median / p95 (ms)", f"{onset['median']} / {onset['p95']}"),
        ("syllables (planned)", f"{figures['syllables']} ({figures['syllables_planned']})"),
        ("planned end rhymes hit", figures["planned_end_rhymes_hit"]),
        ("rhyme density", figures["rhyme_density"]),
        ("opponent references", figures["opponent_references"]),
        ("first bar ready vs cue (ms)", figures["first_bar_ready_ms"]),
        ("bars late", len(figures["bars_late"])),
        ("render RTF (compute / audio)", figures["render_rtf"]),
        ("backends", ", ".join(f"{k}={v}" for k, v in figures["backends"].items())),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    console.print("\n".join(line.text for line in exchange.turn.report.lines))
    console.print(f"wrote {', '.join(str(p) for p in files)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cypher` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    console = Console(stderr=False)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args, console))
    except CypherError as exc:
        console.print(f"[bold red]cypher {args.command}:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print("stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
