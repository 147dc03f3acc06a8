"""Benchmark the live battle loop against the harness DAW (engine/harness.py) over a real JACK server.

At each tempo a `cypher live` session runs in this process (its line worker in a child process, lexicon filler by
default) for its share of the turns (2 bars each way): the harness sends a jittered MIDI clock, types the
opponent's lines over OSC, switches styles over OSC every few turns early in the answer's first bar, and records
the engine's output. Rows:
  missed downbeats   answer bars not starting on their bar line (not made, dropped, late, silent or more than the
                     tolerance off the clock's ideal bar line, measured on the recording)     target 0
  onset error        where each answer bar's first sound was recorded vs the ideal bar line (median, max |.|)
  placement error    where the sink put the bar line vs the ideal bar line (median); of it (max |.|), the
                     clock follower's host time for the line as the bar was placed vs the ideal, and the rest:
                     the audio clock's host-to-frame mapping between placement and the bar line
  underruns          JACK xruns seen by the engine's output; recorder gaps (cycles the recorder lost)
  bars moved         placed bars the sink moved in its last look before they started (their frame had moved);
                     bars whose look came too late to move them (already at the playhead's guard)
  memory growth      VmRSS from the end of the fifth turn (the session's history of its last 4 exchanges is
                     full by then) to the last, engine process (less the switch clips kept for the classifier) and
                     worker   target < 5%; also from the first turn's end
  CPU load           CPU seconds per second, engine process (with the harness's scheduler thread; the DAW runs in its own process) and worker
  style bleed        the first answer bar after each switch, classified from the recording by a nearest-centroid
                     classifier trained on offline renders of the five styles at that tempo   target >= 90%
  classifier check   the same classifier on held-out offline renders (what it can do without bleed)

  python scripts/bench_live.py            100 turns over 90, 140 and 174 BPM (about 15 minutes)
  python scripts/bench_live.py --quick    3 turns per tempo, a switch in each of the last two (1-2 minutes)
  python scripts/bench_live.py --json     JSON instead of the table
Needs a running JACK server (`jackd -d dummy -r 48000 -p 256 &`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import multiprocessing
import statistics
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.errors import CypherError  # noqa: E402
from engine.harness import WARM_TURNS, HarnessConfig, HarnessRun, StyleClassifier, render_bars, run_harness  # noqa: E402
from engine.presets import available_styles  # noqa: E402

TEMPI_BPM = (90.0, 140.0, 174.0)
TURNS = 100
QUICK_TURNS_PER_TEMPO = 3
SWITCH_EVERY = 3
TRAIN_PER_STYLE = 16  # 8 named 2 trap bars of 10 chopper at 174 BPM in one soak; 16 is steadier (offline: 39 vs 38 of 40)
HELD_OUT_PER_STYLE = 8
QUICK_TRAIN_PER_STYLE = 6
QUICK_HELD_OUT_PER_STYLE = 2
TARGETS = {"missed_downbeats": "0", "style_bleed_right": ">= 90%", "memory_growth_engine": "< 5%",
           "memory_growth_worker": "< 5%"}


def share(right: int, total: int) -> float | None:
    return right / total if total else None


def train_classifier(styles: list[str], tempo_bpm: float, train: int, held_out: int
                     ) -> tuple[StyleClassifier, int, int]:
    """The classifier trained on `train` offline renders per style (seed 0), and how many of `held_out` more per
    style (seed 1) it names right."""
    classifier = StyleClassifier(tempo_bpm).fit(render_bars(styles, tempo_bpm, train, seed=0))
    held = render_bars(styles, tempo_bpm, held_out, seed=1)
    return classifier, sum(classifier.predict(audio) == style for style, audio in held), len(held)


def measure_tempo(tempo_bpm: float, turns: int, words: str, switch_every: int, train: int, held_out: int,
                  styles: list[str]) -> dict[str, Any]:
    """Train the classifier at this tempo, run the harness, classify the switches."""
    # trained in a child process: the renders' models and memory stay out of the engine process being measured
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        classifier, held_right, held_total = pool.apply(train_classifier, (styles, tempo_bpm, train, held_out))
    run = run_harness(HarnessConfig(tempo_bpm=tempo_bpm, turns=turns, bars=2, words=words, switch_every=switch_every,
                                    switch_styles=tuple(styles)))
    guesses = [(clip.style, classifier.predict(clip.audio)) for clip in run.switches]
    return summarise(run, guesses, held_right, held_total)


def summarise(run: HarnessRun, guesses: list[tuple[str, str]], held_right: int, held_total: int) -> dict[str, Any]:
    """One tempo's figures."""
    onsets = run.onset_errors_ms()
    placements = run.placement_errors_ms()
    lines = [b.line_error_ms for b in run.bars if b.line_error_ms is not None]
    mappings = [b.placement_error_ms - b.line_error_ms for b in run.bars
                if b.placement_error_ms is not None and b.line_error_ms is not None]
    growth_engine, growth_worker = run.memory_growth("engine", WARM_TURNS), run.memory_growth("worker", WARM_TURNS)
    return {
        "tempo_bpm": run.config.tempo_bpm,
        "turns": run.config.turns,
        "answer_bars": len(run.bars),
        "missed_downbeats": run.missed_downbeats,
        "onset_error_median_ms": statistics.median(onsets) if onsets else None,
        "onset_error_max_abs_ms": max(map(abs, onsets)) if onsets else None,
        "placement_error_median_ms": statistics.median(placements) if placements else None,
        "line_error_max_abs_ms": max(map(abs, lines)) if lines else None,
        "mapping_error_max_abs_ms": max(map(abs, mappings)) if mappings else None,
        "tolerance_ms": run.config.tolerance_ms,
        "underruns": run.underruns,
        "recorder_gaps": run.recorder_gaps,
        "dropped_bars": run.dropped_bars,
        "moved_bars": run.moved_bars,
        "late_looks": run.late_looks,
        "clock_restarts": run.clock_restarts,
        "clock_outliers": run.clock_outliers,
        "clock_lost": run.clock_lost,
        "memory_growth_engine": growth_engine,
        "memory_growth_worker": growth_worker,
        "memory_growth_engine_from_first_turn": run.memory_growth("engine"),
        "memory_growth_worker_from_first_turn": run.memory_growth("worker"),
        "engine_rss_mb": run.samples[-1].engine_rss_kb / 1024 if run.samples else None,
        "worker_rss_mb": run.samples[-1].worker_rss_kb / 1024 if run.samples else None,
        "cpu_engine": run.cpu_load("engine"),
        "cpu_worker": run.cpu_load("worker"),
        "switches": len(guesses),
        "style_bleed_right": share(sum(a == b for a, b in guesses), len(guesses)),
        "switch_guesses": guesses,
        "classifier_held_out": share(held_right, held_total),
        "errors": run.errors[:10],
        "missed": [dataclasses.asdict(b) for b in run.bars if not b.on_time],
    }


def overall(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures over every tempo."""
    switches = sum(r["switches"] for r in rows)
    right = sum(round((r["style_bleed_right"] or 0) * r["switches"]) for r in rows)
    growth = {k: max((r[k] for r in rows if r[k] is not None), default=None)
              for k in ("memory_growth_engine", "memory_growth_worker")}
    return {"turns": sum(r["turns"] for r in rows), "answer_bars": sum(r["answer_bars"] for r in rows),
            "missed_downbeats": sum(r["missed_downbeats"] for r in rows),
            "underruns": sum(r["underruns"] for r in rows), "switches": switches,
            "style_bleed_right": share(right, switches), **growth}


def fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "%":
        return f"{100 * value:.1f}%"
    if kind == "ms":
        return f"{value:+.2f} ms"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table(rows: list[dict[str, Any]], total: dict[str, Any], quick: bool) -> Table:
    """The rich table: one column per tempo, the targets beside."""
    out = Table(title=f"live loop against the harness DAW ({'quick' if quick else 'full'} run)")
    out.add_column("measure")
    for r in rows:
        out.add_column(f"{r['tempo_bpm']:g} BPM", justify="right")
    out.add_column("all", justify="right")
    out.add_column("target")
    lines = [
        ("turns / answer bars", lambda r: f"{r['turns']} / {r['answer_bars']}", f"{total['turns']} / "
                                                                                   f"{total['answer_bars']}", ""),
        ("missed downbeats", lambda r: str(r["missed_downbeats"]), str(total["missed_downbeats"]), "0"),
        ("onset error, median", lambda r: fmt(r["onset_error_median_ms"], "ms"), "", f"within ±{rows[0]['tolerance_ms']:g} ms"),
        ("onset error, max |.|", lambda r: fmt(r["onset_error_max_abs_ms"], "ms"), "", ""),
        ("placement error, median", lambda r: fmt(r["placement_error_median_ms"], "ms"), "", ""),
        ("  of it, max |.|: clock's line / audio mapping",
         lambda r: f"{fmt(r['line_error_max_abs_ms'], 'ms')} / {fmt(r['mapping_error_max_abs_ms'], 'ms')}", "", ""),
        ("underruns (engine output xruns)", lambda r: str(r["underruns"]), str(total["underruns"]), "0"),
        ("clocks lost on the port, counted", lambda r: str(r["clock_lost"]), "", ""),
        ("clock line restarts / outliers", lambda r: f"{r['clock_restarts']} / {r['clock_outliers']}", "", ""),
        ("recorder gaps / dropped bars", lambda r: f"{r['recorder_gaps']} / {r['dropped_bars']}", "", ""),
        ("bars moved after placement / looked at too late to move",
         lambda r: f"{r['moved_bars']} / {r['late_looks']}", "", ""),
        ("memory growth, engine", lambda r: fmt(r["memory_growth_engine"], "%"),
         fmt(total["memory_growth_engine"], "%") + " (max)", "< 5%"),
        ("memory growth, worker", lambda r: fmt(r["memory_growth_worker"], "%"),
         fmt(total["memory_growth_worker"], "%") + " (max)", "< 5%"),
        ("  from the first turn, engine / worker", lambda r: f"{fmt(r['memory_growth_engine_from_first_turn'], '%')} / "
         f"{fmt(r['memory_growth_worker_from_first_turn'], '%')}", "", ""),
        ("RSS engine / worker (MB)", lambda r: f"{fmt(r['engine_rss_mb'])} / {fmt(r['worker_rss_mb'])}", "", ""),
        ("CPU load engine / worker", lambda r: f"{fmt(r['cpu_engine'])} / {fmt(r['cpu_worker'])}", "", ""),
        ("style switches", lambda r: str(r["switches"]), str(total["switches"]), ""),
        ("first bar after switch = new style", lambda r: fmt(r["style_bleed_right"], "%"),
         fmt(total["style_bleed_right"], "%"), ">= 90%"),
        ("classifier, held-out renders", lambda r: fmt(r["classifier_held_out"], "%"), "", ""),
    ]
    for name, cell, all_cell, target in lines:
        out.add_row(name, *(cell(r) for r in rows), all_cell, target)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 turns per tempo (1-2 minutes)")
    parser.add_argument("--turns", type=int, default=None, help=f"turns over all tempi (default {TURNS})")
    parser.add_argument("--words", choices=("lexicon", "lm", "auto"), default="lexicon", help="words backend")
    parser.add_argument("--tempi", type=float, nargs="+", default=list(TEMPI_BPM), help="tempi in BPM")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    console = Console(stderr=args.json)
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    tempi = args.tempi
    if args.turns is not None:
        total_turns = args.turns
    else:
        total_turns = QUICK_TURNS_PER_TEMPO * len(tempi) if args.quick else TURNS
    if total_turns < len(tempi):
        console.print(f"--turns must be at least one per tempo ({len(tempi)})")
        return 2
    per_tempo = [total_turns // len(tempi) + (i < total_turns % len(tempi)) for i in range(len(tempi))]
    switch_every = 1 if args.quick else SWITCH_EVERY
    train, held = ((QUICK_TRAIN_PER_STYLE, QUICK_HELD_OUT_PER_STYLE) if args.quick
                   else (TRAIN_PER_STYLE, HELD_OUT_PER_STYLE))
    styles = available_styles()
    rows = []
    try:
        for tempo, turns in zip(tempi, per_tempo):
            with console.status(f"{tempo:g} BPM: training the style classifier, then {turns} turns"):
                rows.append(measure_tempo(tempo, turns, args.words, switch_every, train, held, styles))
    except CypherError as exc:
        console.print(f"[red]bench_live: {exc}[/red]")
        return 1
    total = overall(rows)
    if args.json:
        print(json.dumps({"quick": args.quick, "targets": TARGETS, "tempi": rows, "overall": total}, indent=2))
    else:
        console.print(table(rows, total, args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
