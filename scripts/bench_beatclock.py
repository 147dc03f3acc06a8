"""Benchmark audio-only mode (issue 7): the beat bus alone driving the timeline, with no MIDI clock.

Each clip is streamed in 1024-sample blocks (host stamps jittered by 0.5 ms RMS) through PulseTracker and BeatClock
(engine.listen.beatclock) into a real ClockFollower and Timeline, as `cypher live` would run it; the bar lines the
timeline announces are compared with the kit's true downbeats.

Kits: bench_listen's 18 clips (`make_clip`: boom bap, 60-180 BPM, two sections around a x1.08 / x0.92 tempo change,
swing 0 / 0.12 / 0.2, white noise 20 dB down), each stream cut to start on beat 2 so the stream's start says
nothing of the bar. Measures:
  bar-line error      |bar line - nearest true downbeat| over every bar line announced (median, p95, max);
  downbeat right      share of bar lines within 15 ms of a true downbeat (the rest are on another beat);
  next bar predicted  |follower.predict_time_s(next bar) - its true downbeat|, asked on each bar line (the
                      prediction asked on the tempo change itself left out: it has only the old tempo);
  first bar line      when the first bar line is announced, from the stream start;
  re-lock             from the tempo change to the first bar line from which every bar line is within 15 ms;
  tempo error         the follower's tempo at the end against the second section's.
Downbeat on other kits: the shipped presets' patterns at 70, 100 and 140 BPM, 8 bars, stream starting on beat 2:
share of bar lines on a true downbeat. Bad input: silence, white noise, randomly timed hits: transport starts.

    .venv/bin/python scripts/bench_beatclock.py --quick   # 3 clips, 3 presets x 1 tempo: a few seconds
    .venv/bin/python scripts/bench_beatclock.py           # 18 clips, 5 presets x 3 tempi: about a minute
    .venv/bin/python scripts/bench_beatclock.py --json
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_listen import make_clip  # noqa: E402  (the same 18 clips as the beat bus benchmark)
from bridge.clock import ClockFollower  # noqa: E402
from engine.events import TransportStart  # noqa: E402
from engine.errors import ClockError  # noqa: E402
from engine.listen.beatclock import stream_into  # noqa: E402
from engine.presets import load_style  # noqa: E402
from engine.synth import beat_times_s, synth_beat  # noqa: E402
from engine.timebase import TICKS_PER_BAR  # noqa: E402
from engine.timeline import Timeline  # noqa: E402

RATE = 48000
BLOCK = 1024
HOST0_S = 1000.0
JITTER_S = 0.0005
TOLERANCE_S = 0.015
PRESETS = ("boom_bap", "chopper", "drill", "grime", "trap")


@dataclass
class Run:
    """What one stream left: bar lines (host time of the line, stream time announced), predictions, the follower."""

    bars: list[tuple[float, float]] = field(default_factory=list)
    predictions: list[tuple[float, float]] = field(default_factory=list)  # (asked at, predicted next bar line)
    starts: int = 0
    follower: ClockFollower = field(default_factory=ClockFollower)


def drive(audio: np.ndarray, seed: int = 0) -> Run:
    """Stream `audio` through BeatClock into a real Timeline (host times = stream times here)."""
    run = Run()
    now = [0.0]

    def on_bar(bar: int, time_s: float) -> None:
        run.bars.append((time_s - HOST0_S, now[0]))
        try:
            run.predictions.append((time_s - HOST0_S,
                                    run.follower.predict_time_s((bar + 1) * TICKS_PER_BAR) - HOST0_S))
        except ClockError:
            pass

    def at(stream_s: float) -> None:
        now[0] = stream_s

    made = stream_into(Timeline(queue.Queue(), run.follower, on_bar), audio, RATE, HOST0_S, BLOCK, JITTER_S, seed,
                       on_block=at)
    run.starts = sum(isinstance(event, TransportStart) for event in made)
    return run


def _nearest(t: float, truth: np.ndarray) -> float:
    return float(truth[np.argmin(np.abs(truth - t))])


def bench_clips(tempi: tuple[float, ...], clips_per_tempo: int, section_s: float) -> list[dict[str, Any]]:
    """bench_listen's clips, each cut to start on beat 2, through audio-only mode."""
    rows = []
    for t_index, tempo in enumerate(tempi):
        for c in range(clips_per_tempo):
            clip = make_clip(tempo, t_index + c, section_s, seed=17 * t_index + c)
            cut_s = clip.truth_s[1]
            beats = np.array(clip.truth_s) - cut_s
            downbeats = beats[0::4]
            downbeats = downbeats[downbeats >= 0]
            change_s = clip.change_s - cut_s
            run = drive(clip.audio[round(cut_s * RATE):], seed=t_index + c)
            errors = [abs(t - _nearest(t, downbeats)) for t, _ in run.bars]
            after_change_s = min(d for d in downbeats if d > change_s + 0.1)
            predicted = [abs(p - _nearest(p, downbeats)) for _, p in run.predictions
                         if _nearest(p, downbeats) not in (after_change_s,) and p < downbeats[-1] + 0.5]
            relock = None
            for i, (t, announced) in enumerate(run.bars):
                if t >= change_s - 0.1 and all(e <= TOLERANCE_S for e in errors[i:]):
                    relock = announced - change_s
                    break
            tempo_now = run.follower.tempo_bpm
            rows.append({
                "clip": clip.name, "bars": len(run.bars), "starts": run.starts,
                "errors_ms": [round(1000 * e, 2) for e in errors],
                "predicted_ms": [round(1000 * e, 2) for e in predicted],
                "downbeat_right": sum(e <= TOLERANCE_S for e in errors),
                "first_bar_s": round(run.bars[0][1], 2) if run.bars else None,
                "relock_s": None if relock is None else round(relock, 2),
                "tempo_error_bpm": None if tempo_now is None else round(abs(tempo_now - clip.tempo_bpm[1]), 3),
            })
    return rows


def bench_presets(tempi: tuple[float, ...], presets: tuple[str, ...]) -> list[dict[str, Any]]:
    """The downbeat on each preset's pattern: share of bar lines on a true downbeat, stream starting on beat 2."""
    rows = []
    for name in presets:
        spec = load_style(name).beat
        for tempo in tempi:
            audio = synth_beat(spec, tempo, 8, RATE, seed=5)
            rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
            audio = audio + np.random.default_rng(5).normal(0.0, 0.1 * rms, len(audio)).astype(np.float32)
            beats = np.array(beat_times_s(tempo, 8, RATE))
            cut_s = float(beats[1])
            downbeats = beats[0::4][1:] - cut_s
            run = drive(audio[round(cut_s * RATE):])
            right = sum(abs(t - _nearest(t, downbeats)) <= TOLERANCE_S for t, _ in run.bars)
            rows.append({"preset": name, "tempo_bpm": tempo, "bars": len(run.bars), "downbeat_right": right,
                         "tempo_bpm_followed": None if run.follower.tempo_bpm is None
                         else round(run.follower.tempo_bpm, 1)})
    return rows


def bench_bad_input(seconds: float) -> list[dict[str, Any]]:
    """Inputs with no pulse: does the transport start?"""
    n = round(seconds * RATE)
    rng = np.random.default_rng(7)
    hits = np.zeros(n, dtype=np.float32)
    burst = (rng.uniform(-1, 1, 2400) * np.exp(-np.arange(2400) / 300.0)).astype(np.float32) * 0.5
    for start_s in np.sort(rng.uniform(0, seconds - 0.1, int(seconds * 2.2))):
        s = round(start_s * RATE)
        hits[s:s + len(burst)] += burst[:n - s]
    inputs = {"silence": np.zeros(n, dtype=np.float32), "white noise": rng.normal(0.0, 0.1, n).astype(np.float32),
              "randomly timed hits": hits}
    return [{"input": name, "starts": (run := drive(audio)).starts, "bars": len(run.bars)}
            for name, audio in inputs.items()]


def _stat(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def summarise(clips: list[dict[str, Any]], presets: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians, p95s and shares over every clip, measured in this run."""
    errors = [e for r in clips for e in r["errors_ms"]]
    predicted = [e for r in clips for e in r["predicted_ms"]]
    relocks = [r["relock_s"] for r in clips]
    firsts = [r["first_bar_s"] for r in clips if r["first_bar_s"] is not None]
    tempo_errors = [r["tempo_error_bpm"] for r in clips if r["tempo_error_bpm"] is not None]
    bars = sum(r["bars"] for r in clips)
    preset_bars = sum(r["bars"] for r in presets)
    return {
        "clips": len(clips), "bar_lines": bars,
        "error_median_ms": _stat(errors, 50), "error_p95_ms": _stat(errors, 95),
        "error_max_ms": round(max(errors), 2) if errors else None,
        "downbeat_right": round(sum(r["downbeat_right"] for r in clips) / bars, 3) if bars else None,
        "predicted_median_ms": _stat(predicted, 50), "predicted_p95_ms": _stat(predicted, 95),
        "first_bar_median_s": _stat(firsts, 50), "first_bar_max_s": max(firsts) if firsts else None,
        "relock_median_s": _stat([x for x in relocks if x is not None], 50),
        "relock_max_s": max((x for x in relocks if x is not None), default=None),
        "never_relocked": sum(x is None for x in relocks),
        "tempo_error_max_bpm": max(tempo_errors) if tempo_errors else None,
        "never_started": sum(r["starts"] == 0 for r in clips),
        "preset_downbeat_right": round(sum(r["downbeat_right"] for r in presets) / preset_bars, 3)
        if preset_bars else None,
    }


def print_tables(result: dict[str, Any], console: Console) -> None:
    """The benchmark as rich tables."""
    s = result["summary"]
    table = Table(title=f"Audio-only mode: {s['clips']} clips (bench_listen's), {s['bar_lines']} bar lines, "
                        f"60-180 BPM, tempo change, swing, noise, stream from beat 2")
    table.add_column("measure")
    table.add_column("value")
    table.add_row("bar-line error median / p95 / max", f"{s['error_median_ms']} / {s['error_p95_ms']} / "
                                                       f"{s['error_max_ms']} ms")
    table.add_row("downbeat right (bar lines within 15 ms of a true downbeat)", f"{s['downbeat_right']:.1%}")
    table.add_row("next bar line predicted by the follower, error median / p95",
                  f"{s['predicted_median_ms']} / {s['predicted_p95_ms']} ms")
    table.add_row("first bar line announced, median / max", f"{s['first_bar_median_s']} / {s['first_bar_max_s']} s")
    table.add_row("re-lock after the tempo change, median / max (never)",
                  f"{s['relock_median_s']} / {s['relock_max_s']} s ({s['never_relocked']})")
    table.add_row("follower tempo error at the end, max", f"{s['tempo_error_max_bpm']} BPM")
    table.add_row("clips where the transport never started", str(s["never_started"]))
    console.print(table)

    per = Table(title="Per clip")
    for col in ("clip", "bar lines", "downbeat right", "error median / max", "first bar line", "re-lock"):
        per.add_column(col)
    for r in result["clips"]:
        errors = r["errors_ms"]
        per.add_row(r["clip"], str(r["bars"]), f"{r['downbeat_right']}/{r['bars']}",
                    f"{_stat(errors, 50)} / {max(errors) if errors else None} ms", f"{r['first_bar_s']} s",
                    "—" if r["relock_s"] is None else f"{r['relock_s']} s")
    console.print(per)

    kits = Table(title=f"Downbeat on the presets' kits (stream from beat 2): {s['preset_downbeat_right']:.1%} right")
    for col in ("preset", "tempo", "tempo followed", "bar lines", "on a true downbeat"):
        kits.add_column(col)
    for r in result["presets"]:
        kits.add_row(r["preset"], f"{r['tempo_bpm']:.0f}", str(r["tempo_bpm_followed"]), str(r["bars"]),
                     f"{r['downbeat_right']}/{r['bars']}")
    console.print(kits)

    bad = Table(title="No pulse: the transport must not start")
    for col in ("input", "transport starts", "bar lines"):
        bad.add_column(col)
    for r in result["bad_input"]:
        bad.add_row(r["input"], str(r["starts"]), str(r["bars"]))
    console.print(bad)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 clips, 3 presets at one tempo (a few seconds)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    tempi = (60.0, 90.0, 140.0) if args.quick else (60.0, 75.0, 90.0, 110.0, 140.0, 180.0)
    clips = bench_clips(tempi, 1 if args.quick else 3, 15.0 if args.quick else 25.0)
    presets = bench_presets((100.0,) if args.quick else (70.0, 100.0, 140.0),
                            ("boom_bap", "grime", "trap") if args.quick else PRESETS)
    result: dict[str, Any] = {"mode": "quick" if args.quick else "full", "summary": summarise(clips, presets),
                              "clips": clips, "presets": presets,
                              "bad_input": bench_bad_input(8.0 if args.quick else 15.0)}
    result["wall_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        console = Console(width=150)
        print_tables(result, console)
        console.print(f"wall time {result['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
