"""Benchmark the voice on the grid and the live output (issue 6): a rich table, or JSON with --json.

Lines: the shipped example verses, one line per bar, fitted to three grids. Only boom bap exists as a preset,
so two grids are defined here: "double time" (dense sixteenths at 100 BPM, a faster feel) and "triplet" (eighth-
note triplets, 12 slots per bar, at 84 BPM). All three use the boom bap preset's voice and effects.

Vowel-onset error against the slot is measured three ways: Piper's own alignment of the fitted line (what the
fitting aims with), an onset detector on the rendered audio (first-formant band rise near each slot,
engine.listen.onsets), and whisper's word timestamps (each word's start against its first syllable's slot;
whisper marks the word's start, consonant included, on a 20 ms grid, so this bounds drift rather than measuring
vowels). Bar-line placement goes through a real JACK server: JackOutput -> a JACK-Client recorder, compensation
applied. Underruns are counted over a run at 256 frames while this process keeps rendering bars (the GIL load a
live set puts on the callback). The callback's allocations are measured with tracemalloc in a quiet window.

    .venv/bin/python scripts/bench_voice.py --quick        # about 1-2 minutes
    .venv/bin/python scripts/bench_voice.py --minutes 10   # the issue's 10-minute underrun run
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.errors import CypherError, PlanError  # noqa: E402
from engine.listen.onsets import vowel_onsets_near  # noqa: E402
from engine.listen.vocal import Transcriber  # noqa: E402
from engine.play.output import JackOutput, RingSink  # noqa: E402
from engine.play.ring import RingBuffer  # noqa: E402
from engine.presets import load_style  # noqa: E402
from engine.timebase import TICKS_PER_BAR, ticks_to_seconds  # noqa: E402
from engine.play.record import Recorder
from engine.turn import BarRender  # noqa: E402
from engine.line import LineJob  # noqa: E402
from engine.voice.fx import apply_chain, build_chain  # noqa: E402
from engine.worker import LineWorker, WorkerConfig  # noqa: E402
from engine.voice.speak import PiperVoice  # noqa: E402
from engine.write.grid import BarGrid, parse_pattern  # noqa: E402
from engine.write.phonetics import tokenize  # noqa: E402
from engine.write.planner import assign_slots, syllables_per_word  # noqa: E402

RATE = 48000
PAD_S = 0.5  # silence before a line handed to whisper (it pins a first word to the clip start)
DETECTOR_WINDOW_S = 0.08


@dataclass(frozen=True)
class Feel:
    """A grid to fit lines to: patterns cycled per bar, at a tempo."""

    name: str
    tempo_bpm: float
    slots_per_bar: int
    patterns: tuple[str, ...]


def feels() -> list[Feel]:
    """Boom bap from its preset, plus the two grids this script defines (see the module docstring)."""
    boom = load_style("boom_bap")
    return [
        Feel("boom_bap (preset)", boom.tempo_bpm, boom.flow.slots_per_bar, tuple(boom.flow.patterns)),
        Feel("double time (script)", 100.0, 16, ("xxxXxxxXxxxXxxR.", "xxxXxxxXxxxXx.R.", ".xxXxxxXxxxXxxR.")),
        Feel("triplet (script)", 84.0, 12, ("xxXxxXxxXxR.", ".xXxxXxxXxR.", "xxXx.XxxXxR.")),
    ]


def verse_lines() -> list[str]:
    """The shipped example verses, one line per bar."""
    lines = []
    for path in sorted((ROOT / "presets" / "examples" / "verses").glob("*.txt")):
        lines += [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    return lines


def words_only(text: str) -> list[str]:
    """Lower-case words for matching and WER."""
    return re.findall(r"[a-z0-9']+", text.lower())


def wer(reference: list[str], hypothesis: list[str]) -> tuple[int, int]:
    """(edits, reference length) by Levenshtein distance over words."""
    prev = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        cur = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ref != hyp))
        prev = cur
    return prev[-1], len(reference)


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Median and p95 of absolute values, or None when empty."""
    if not values:
        return {"median": None, "p95": None, "n": 0}
    a = np.abs(np.asarray(values))
    return {"median": round(float(np.median(a)), 2), "p95": round(float(np.percentile(a, 95)), 2), "n": len(values)}


def bench_lines(count: int, transcriber: Transcriber, voice: PiperVoice) -> dict[str, Any]:
    """Fit `count` lines over the three feels; measure onsets three ways, timing, and WER fitted vs natural."""
    style = load_style("boom_bap")
    lines = verse_lines()
    per_feel = [count // 3 + (1 if i < count % 3 else 0) for i in range(3)]
    own, detector, whisper_ms, ready_ms, rtf = [], [], [], [], []
    edits = {"fitted": [0, 0], "natural": [0, 0]}
    skipped = 0
    next_line = 0
    by_feel: dict[str, dict[str, Any]] = {}
    for feel, wanted in zip(feels(), per_feel):
        chain = build_chain(style.fx, feel.tempo_bpm, RATE)
        bar_s = ticks_to_seconds(TICKS_PER_BAR, feel.tempo_bpm)
        feel_own: list[float] = []
        done = 0
        while done < wanted:
            text = lines[next_line % len(lines)]
            next_line += 1
            grid = BarGrid(done, feel.slots_per_bar, parse_pattern(feel.patterns[done % len(feel.patterns)]))
            words = tokenize(text)
            counts = syllables_per_word(words)
            try:
                slots = assign_slots(grid, sum(counts))
            except PlanError:
                skipped += 1
                continue
            onsets = [ticks_to_seconds(grid.slot_ticks(s), feel.tempo_bpm) for s in slots]
            t0 = time.perf_counter()
            fitted = voice.speak_fitted(words, counts, onsets, [int(s.stressed) for s in slots])
            wet = apply_chain(chain, fitted.audio, RATE)
            seconds = time.perf_counter() - t0
            ready_ms.append(1000.0 * seconds)
            rtf.append(seconds / bar_s)
            errs = [1000.0 * (v - t) for v, t in zip(fitted.vowel_onsets_s, onsets)]
            own += errs
            feel_own += errs
            lead_s = fitted.lead_samples / RATE
            found = vowel_onsets_near(fitted.audio, RATE, [lead_s + t for t in onsets], DETECTOR_WINDOW_S)
            detector += [1000.0 * (f - lead_s - t) for f, t in zip(found, onsets) if f is not None]
            pad = np.zeros(int(PAD_S * RATE), dtype=np.float32)
            heard = transcriber.transcribe(np.concatenate([pad, wet]), RATE)
            first_onset = np.cumsum([0] + list(counts))[:-1]
            planned_words = words_only(" ".join(words))
            heard_words = [words_only(w.text)[0] if words_only(w.text) else "" for w in heard]
            if len(planned_words) == len(words):
                matcher = difflib.SequenceMatcher(a=planned_words, b=heard_words, autojunk=False)
                for block in matcher.get_matching_blocks():
                    for k in range(block.size):
                        i, j = block.a + k, block.b + k
                        start_s = heard[j].start_s - PAD_S - lead_s
                        whisper_ms.append(1000.0 * (start_s - onsets[first_onset[i]]))
            for key, audio in (("fitted", wet), ("natural", voice.speak(text))):
                said = transcriber.transcribe(np.concatenate([pad, audio]), RATE) if key == "natural" else heard
                e, n = wer(words_only(text), words_only(" ".join(w.text for w in said)))
                edits[key][0] += e
                edits[key][1] += n
            done += 1
        by_feel[feel.name] = percentiles(feel_own)
    return {
        "lines": count, "lines_skipped_not_fitting": skipped,
        "onset_error_ms": {"piper_alignment": percentiles(own), "onset_detector": percentiles(detector),
                           "whisper_word_start": percentiles(whisper_ms)},
        "onset_error_ms_by_feel_piper": by_feel,
        "words_to_audio_ms": percentiles(ready_ms), "rtf_voice_fit_fx": percentiles(rtf),
        "wer_fitted": round(edits["fitted"][0] / max(1, edits["fitted"][1]), 3),
        "wer_natural": round(edits["natural"][0] / max(1, edits["natural"][1]), 3),
    }


def click_render(bar: int, when_s: float, lead: int = 1000) -> BarRender:
    """A bar whose only sound is a click on its bar line."""
    audio = np.zeros(4 * lead, dtype=np.float32)
    audio[lead] = 1.0
    return BarRender(bar, when_s, audio, lead, None, (), (), time.monotonic())  # type: ignore[arg-type]


def bench_output(minutes: float, voice: PiperVoice, clicks: int) -> dict[str, Any]:
    """Bar-line placement through JACK, the callback's allocations, and underruns under rendering load."""
    recorder = Recorder("bench-rec", seconds=2.0 + 0.3 * clicks)
    output = JackOutput(RingBuffer(20 * RATE), RATE, connect_to="bench-rec:in", client_name="cypher-bench")
    output.start()
    try:
        sink = RingSink(output)  # the default compensation: the reference rig's 256 frames
        expected = []
        for k in range(clicks):
            when = time.monotonic() + 0.5 + 0.3 * k
            sink.submit(click_render(k, when))
            expected.append(recorder.frame_of(when) - sink.compensation_frames)
        time.sleep(0.5 + 0.3 * clicks + 0.3)
        assert recorder.first is not None
        got = [int(i) + recorder.first for i in np.nonzero(recorder.audio > 0.5)[0]]
        placement = [g - e for g, e in zip(got, expected)]

        tracemalloc.start(5)
        time.sleep(0.3)
        before = tracemalloc.take_snapshot()
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        calls = output.callbacks
        time.sleep(1.0)
        _, peak = tracemalloc.get_traced_memory()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        ours = [tracemalloc.Filter(True, "*engine/play/*")]
        retained = (sum(t.size for t in after.filter_traces(ours).traces)
                    - sum(t.size for t in before.filter_traces(ours).traces))
        quiet_calls = output.callbacks - calls

        # The live path: lines written, spoken and shaped in the line worker process, only audio comes back.
        style = load_style("boom_bap")
        worker = LineWorker(WorkerConfig("lexicon", RATE, warm_voice=style.voice))
        bar_s = ticks_to_seconds(TICKS_PER_BAR, style.tempo_bpm)
        lines = verse_lines()
        start = output.stats()
        end_at = time.monotonic() + 60.0 * minutes
        next_bar = time.monotonic() + bar_s
        bars = 0
        try:
            while time.monotonic() < end_at:
                heard = tuple(lines[(bars - bars % 4 + k) % len(lines)] for k in range(bars % 4 + 1))
                job = LineJob(bars // 4, bars % 4, style, heard, style.tempo_bpm, next_bar + bar_s)
                try:
                    made = worker.write(job)
                except CypherError:
                    bars += 1
                    continue
                sink.submit(BarRender(bars, next_bar, made.audio, made.lead_samples, made.line,
                                      made.planned_onsets_s, made.vowel_onsets_s, time.monotonic()))
                bars += 1
                next_bar += bar_s
                time.sleep(max(0.0, next_bar - bar_s - time.monotonic()))
        finally:
            worker.close()
        stop = output.stats()
    finally:
        output.close()
        recorder.client.deactivate()
        recorder.client.close()
    return {
        "bar_line_error_samples": percentiles([float(p) for p in placement]) | {"max": max(map(abs, placement))},
        "clicks_recorded": f"{len(got)}/{clicks}",
        "callback_retained_bytes": retained, "callback_quiet_peak_bytes": peak - base,
        "callbacks_in_quiet_window": quiet_calls,
        "run_minutes": minutes, "bars_rendered_during_run": bars, "rendered_in": "line worker process",
        "underruns": stop.underruns - start.underruns,
        "skipped_frames": stop.skipped_frames - start.skipped_frames,
        "late_frames": sink.late_frames, "blocksize": 256,
    }


def ensure_jack() -> subprocess.Popen[bytes] | None:
    """The running JACK server, or a dummy one started for the benchmark (returned, to stop afterwards)."""
    from bridge.midi import jack_running

    if jack_running():
        return None
    process = subprocess.Popen(["jackd", "-d", "dummy", "-r", str(RATE), "-p", "256"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    subprocess.run(["jack_wait", "-w", "-t", "10"], capture_output=True, timeout=15)
    return process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="12 lines, a 0.5-minute underrun run")
    parser.add_argument("--lines", type=int, default=None, help="lines over the three feels (default 50; quick 12)")
    parser.add_argument("--minutes", type=float, default=None, help="underrun run length (default 10; quick 0.5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    lines = args.lines or (12 if args.quick else 50)
    minutes = args.minutes if args.minutes is not None else (0.5 if args.quick else 10.0)
    console = Console(stderr=True)
    voice = PiperVoice(sample_rate=RATE, accent_db=3.0)
    with console.status("fitting lines and transcribing them"):
        result = bench_lines(lines, Transcriber(cpu_threads=1), voice)
    server = ensure_jack()
    try:
        with console.status(f"JACK output: placement, allocation, {minutes} min under load"):
            result["output"] = bench_output(minutes, voice, clicks=8)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=5)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    onset = result["onset_error_ms"]
    out = result["output"]
    table = Table(title=f"Voice on the grid and live output ({lines} lines, 3 feels; run {minutes} min)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")

    def mp(d: dict[str, Any]) -> str:
        return f"{d['median']} / {d['p95']} (n={d['n']})"

    table.add_row("vowel onset error, Piper alignment (ms, median / p95)", mp(onset["piper_alignment"]), "<= 5 / 15")
    table.add_row("vowel onset error, onset detector (ms)", mp(onset["onset_detector"]), "")
    table.add_row("word start error, whisper timestamps (ms)", mp(onset["whisper_word_start"]), "")
    for name, d in result["onset_error_ms_by_feel_piper"].items():
        table.add_row(f"  Piper alignment, {name}", mp(d), "")
    table.add_row("lines skipped (too many syllables for the grid)", str(result["lines_skipped_not_fitting"]), "")
    table.add_row("bar-line placement through JACK (samples, median / p95 / max)",
                  f"{out['bar_line_error_samples']['median']} / {out['bar_line_error_samples']['p95']} / "
                  f"{out['bar_line_error_samples']['max']:.1f} ({out['clicks_recorded']})", "<= 48")
    table.add_row("voice + fit + fx real-time factor (median / p95)", mp(result["rtf_voice_fit_fx"]), "")
    table.add_row("words to audio per bar (ms, median / p95)", mp(result["words_to_audio_ms"]), "<= 150")
    table.add_row(f"underruns / skipped frames in {minutes} min at 256 frames", f"{out['underruns']} / "
                  f"{out['skipped_frames']} ({out['bars_rendered_during_run']} bars rendered)", "0")
    table.add_row("callback: retained bytes / quiet-window peak bytes",
                  f"{out['callback_retained_bytes']} / {out['callback_quiet_peak_bytes']} "
                  f"({out['callbacks_in_quiet_window']} callbacks)", "0")
    table.add_row("whisper WER fitted / natural", f"{result['wer_fitted']} / {result['wer_natural']}", "<= 0.15")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
