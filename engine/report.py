"""The demo's figures and files: report.json, answer.txt, the stems and grid.png, each written whole or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from engine.render import DemoConfig, Exchange, measure_onsets
from engine.write.phonetics import tokenize
from engine.write.planner import content_words
from engine.write.rhyme import rhyme_density, rhymes

PEAK_DBFS = -1.0


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary file beside `path`, then rename: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _normalize(audio: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    gain = 10 ** (PEAK_DBFS / 20) / peak if peak > 10 ** (PEAK_DBFS / 20) else 1.0
    return (audio * gain).astype(np.float32)


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.abs(values), q)), 2) if values else None


def build_report(cfg: DemoConfig, ex: Exchange) -> dict[str, Any]:
    """Every figure of the exchange, as report.json holds it."""
    tempo = cfg.style.tempo_bpm
    lines = ex.turn.report.lines
    onsets = measure_onsets(ex, cfg.sample_rate, tempo)
    errors = onsets.errors_ms("aligned")
    detected = onsets.errors_ms("detected")
    words = [w for line in lines for w in line.words]
    hits = [bool(line.words) and rhymes([line.words[-1]], line.plan.rhyme_words[:1]) for line in lines]
    heard_lines = [" ".join(w.text for w in bar) for bar in ex.turn.report.heard]
    heard = set(_content({t for line in heard_lines for t in tokenize(line)}))
    answered = sorted({w.lower() for w in words if w.lower() in heard})
    renders = ex.sink.renders
    cue = ex.turn.report.cue_time_s
    first = next((r for r in renders if r.line.plan.bar == 0), None)
    late = [r.bar for r in renders if r.ready_time_s > r.start_time_s]
    stages = ex.turn.report.stage_s
    stage = {k: round(float(np.median(v)), 3) for k, v in stages.items()}
    compute_s = sum(stages.get("total_s", []))
    answer_s = cfg.bars * ex.bar_len / cfg.sample_rate
    tempo_err = [abs(t - tempo) for t in ex.follower_tempo_bpm]
    return {
        "style": cfg.style.name,
        "seed": cfg.seed,
        "tempo_bpm": tempo,
        "tempo_error_bpm": round(float(np.median(tempo_err)), 4) if tempo_err else None,
        "tempo_error_max_bpm": round(float(np.max(tempo_err)), 4) if tempo_err else None,
        "beat_bus_tempo_bpm": round(ex.beat_tempo_bpm, 2) if ex.beat_tempo_bpm else None,
        "bars": cfg.bars,
        "lines_written": len(lines),
        "syllables": int(sum(line.syllable_count for line in lines)),
        "syllables_planned": int(sum(line.plan.budget for line in lines)),
        "syllable_fit": round(sum(abs(l.syllable_count - l.plan.budget) <= 1 for l in lines) / max(1, len(lines)), 3),
        "onset_error_ms": {
            "median": _percentile(errors, 50),
            "p95": _percentile(errors, 95),
            "mean_signed": round(float(np.mean(errors)), 2) if errors else None,
            "measured": len(errors),
            "planned": len(onsets.planned_s),
            "method": "synthesizer alignment, where the recording holds each line",
        },
        "onset_detector_error_ms": {
            "median": _percentile(detected, 50),
            "p95": _percentile(detected, 95),
            "mean_signed": round(float(np.mean(detected)), 2) if detected else None,
            "method": "first-formant band rise near each slot (fires early on consonants)",
        },
        "rhyme_density": round(rhyme_density(words), 3),
        "planned_end_rhymes_hit": round(sum(hits) / max(1, len(hits)), 3),
        "opponent_heard": heard_lines,
        "opponent_references": len(answered),
        "opponent_words_answered": answered,
        "answer_words_planned": sorted({w for line in lines for w in line.plan.answer_words}),
        "first_bar_ready_ms": round(1000 * (first.ready_time_s - cue), 1) if first and cue else None,
        "bar_ready_after_heard_ms_max": round(1000 * max(stages.get("total_s", [0.0])), 1),
        "bars_late": late,
        "lines_by_fallback_filler": ex.turn.report.fallback_lines,
        "stage_median_s": stage,
        "render_rtf": round(compute_s / answer_s, 3) if answer_s else None,
        "wall_s": round(ex.wall_s, 1),
        "midi_transport": ex.midi_transport,
        "clock_send_late_ms": {  # the stand-in DAW's clock against its own schedule (jitter included)
            "median": _percentile([1000 * x for x in ex.clock_send_late_s], 50),
            "max": round(1000 * max(ex.clock_send_late_s), 2) if ex.clock_send_late_s else None,
        },
        "backends": ex.backends,
        "errors": ex.turn.report.errors,
    }


def _content(words: set[str]) -> set[str]:
    return set(content_words(sorted(words)))


def write_outputs(cfg: DemoConfig, ex: Exchange, report: dict[str, Any]) -> list[Path]:
    """Write exchange.wav, answer.wav, answer.txt, grid.png and report.json into the output folder."""
    out = cfg.out_dir
    sr = cfg.sample_rate
    n = len(ex.beat)
    answer = ex.answer[:n]
    mix = 0.8 * ex.beat + ex.vocal + answer
    files = {
        "exchange.wav": lambda p: sf.write(p, _normalize(mix), sr, subtype="PCM_16", format="WAV"),
        "answer.wav": lambda p: sf.write(p, _normalize(answer), sr, subtype="PCM_16", format="WAV"),
        "answer.txt": lambda p: p.write_text("\n".join(line.text for line in ex.turn.report.lines) + "\n"),
        "grid.png": lambda p: _plot_grid(p, cfg, ex),
        "report.json": lambda p: p.write_text(json.dumps(report, indent=2) + "\n"),
    }
    written = []
    for name, write in files.items():
        path = out / name
        _atomic(path, write)
        written.append(path)
    return written


def _plot_grid(path: Path, cfg: DemoConfig, ex: Exchange) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sr, tempo = cfg.sample_rate, cfg.style.tempo_bpm
    onsets = measure_onsets(ex, sr, tempo)
    planned, aligned = onsets.planned_s, onsets.aligned_s
    start = ex.answer_start_bar * ex.bar_len
    shown = min(4, cfg.bars) * ex.bar_len
    seg = ex.answer[start:start + shown]
    t = (start + np.arange(len(seg))) / sr
    fig, ax = plt.subplots(figsize=(14, 4), dpi=100)
    ax.plot(t, seg, color="0.35", linewidth=0.4)
    beat_s = 60.0 / tempo
    t0, t1 = start / sr, (start + shown) / sr
    for i, b in enumerate(np.arange(t0, t1 + 1e-9, beat_s)):
        ax.axvline(b, color="tab:blue" if i % 4 == 0 else "lightsteelblue", linewidth=1.6 if i % 4 == 0 else 0.8)
    p = [x for x in planned if t0 <= x <= t1]
    d = [x for x in aligned if t0 <= x <= t1]
    peak = float(np.max(np.abs(seg))) if len(seg) else 1.0
    ax.plot(p, [0.9 * peak] * len(p), "v", color="tab:green", label="planned syllable slot")
    ax.plot(d, [-0.9 * peak] * len(d), "^", color="tab:red", label="vowel onset (synthesizer alignment)")
    ax.set_xlim(t0, t1)
    ax.set_xlabel("seconds in the exchange")
    ax.set_title(f"Cypher answer, {cfg.style.display_name} at {tempo:g} BPM: bars (dark) and beats, first bars")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
