"""The offline exchange: the live path driven by a generated MIDI clock, with the DAW played by arrays.

A stand-in DAW synthesises the style's beat and has a second voice rap the opponent's verse on the grid; it sends
MIDI clock with jitter through real MIDI ports (JACK when a server runs, an in-process mido port otherwise). The
engine follows that clock, hears the buses bar by bar, writes and speaks its answer while the opponent raps, and
submits bars stamped with predicted host times. The collector plays the part of the DAW's recording track.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bridge.clock import ClockFollower
from bridge.clockgen import ClockSender
from bridge.midi import MidiEventSource, open_backend, open_output
from engine.errors import BackendMissingError, RenderError
from engine.listen.onsets import vowel_onsets_near
from engine.listen.vocal import Transcriber, TypedEars
from engine.presets import PRESETS_DIR, Style
from engine.synth import synth_beat
from engine.timebase import TICKS_PER_BAR, TICKS_PER_MIDI_CLOCK, bar_samples, ticks_to_seconds
from engine.timeline import Timeline
from engine.turn import AnswerTurn, BarRender, Ears
from engine.line import LineWriter, VoiceCache, load_filler
from engine.voice.speak import Voice, load_voice
from engine.write.fill_lexicon import LexiconFiller
from engine.write.grid import flow_grid
from engine.write.planner import assign_slots, syllables_per_word
from engine.write.phonetics import tokenize

log = logging.getLogger(__name__)

INTRO_BARS = 1
OUTRO_BARS = 1
VOCAL_BLEED = 0.05  # the beat leaking into the opponent's microphone
OPPONENT_VOICE = {"pitch_semitones": -2.0, "length_scale": 1.0}  # a second voice whisper still understands


@dataclass
class ArrayBus:
    """A bus the stand-in DAW plays from an array: bar `b` is samples [b * bar_len, (b + 1) * bar_len)."""

    audio: np.ndarray
    bar_len: int

    def bar_audio(self, bar: int) -> np.ndarray | None:
        """The samples of one bar, or None outside the array."""
        start = bar * self.bar_len
        if bar < 0 or start >= len(self.audio):
            return None
        return self.audio[start:start + self.bar_len]


@dataclass
class OfflineSink:
    """The DAW's recording of the virtual channel: host time `origin_s` is sample 0."""

    length: int
    sample_rate: int
    origin_s: float = 0.0
    renders: list[BarRender] = field(default_factory=list)
    cuts: list[tuple[int, float, float]] = field(default_factory=list)  # (renders before it, time_s, release_s)

    def submit(self, render: BarRender) -> None:
        """Keep a bar render; it is placed when the recording is mixed."""
        self.renders.append(render)

    def cut_from(self, time_s: float, release_s: float) -> None:
        """Fade what was submitted so far to silence from `time_s` over `release_s` (applied when mixed)."""
        self.cuts.append((len(self.renders), time_s, release_s))

    def bar_start_sample(self, render: BarRender) -> int:
        """Where the engine asked this bar's line to begin, in the recording's samples."""
        return round((render.start_time_s - self.origin_s) * self.sample_rate)

    def mix(self) -> np.ndarray:
        """The recorded stem: every bar placed where the engine predicted its bar line, cuts applied in order."""
        out = np.zeros(self.length, dtype=np.float32)
        cuts = iter(self.cuts)
        cut = next(cuts, None)
        for k, r in enumerate([*self.renders, None]):
            while cut is not None and cut[0] == k:
                start = max(0, round((cut[1] - self.origin_s) * self.sample_rate))
                ramp = min(round(cut[2] * self.sample_rate), max(0, self.length - start))
                out[start:start + ramp] *= np.linspace(1.0, 0.0, ramp, endpoint=False, dtype=np.float32)
                out[start + ramp:] = 0.0
                cut = next(cuts, None)
            if r is None:
                break
            start = self.bar_start_sample(r) - r.lead_samples
            lo, hi = max(0, start), min(self.length, start + len(r.audio))
            if hi > lo:
                out[lo:hi] += r.audio[lo - start:hi - start]
        return out


def opponent_text(style: Style, bars: int) -> list[str]:
    """The opponent's verse shipped for this style (or boom bap's), one line per bar, cycled to `bars`."""
    examples = PRESETS_DIR / "examples"
    path = examples / f"opponent_{style.name}.txt"
    if not path.exists():
        path = examples / "opponent_boom_bap.txt"
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    return [lines[i % len(lines)] for i in range(bars)]


def speak_on_grid(
    voice: Voice, style: Style, lines: list[str], first_bar: int, total_bars: int, tempo_bpm: float, sample_rate: int
) -> np.ndarray:
    """A verse rapped on the style's grid, one line per bar from `first_bar`, as one array."""
    bar_len = bar_samples(tempo_bpm, sample_rate)
    out = np.zeros(total_bars * bar_len, dtype=np.float32)
    for k, (text, grid) in enumerate(zip(lines, flow_grid(style.flow, len(lines)))):
        words = tokenize(text)
        counts = syllables_per_word(words)
        slots = assign_slots(grid, sum(counts))
        onsets = [ticks_to_seconds(grid.slot_ticks(s), tempo_bpm) for s in slots]
        fitted = voice.speak_fitted(words, counts, onsets, [int(s.stressed) for s in slots])
        start = (first_bar + k) * bar_len - fitted.lead_samples
        lo, hi = max(0, start), min(len(out), start + len(fitted.audio))
        out[lo:hi] += fitted.audio[lo - start:hi - start]
    return out


def load_ears(opponent_lines: list[str], model_dir: Path | None = None) -> tuple[Ears, str]:
    """Speech recognition when installed; else, with a warning, the opponent's lines as typed text."""
    try:
        return Transcriber(model_dir), "faster-whisper tiny.en"
    except BackendMissingError as exc:
        log.warning("speech recognition unavailable (%s); answering the opponent's text instead", exc)
        return TypedEars(opponent_lines), "typed text"


@dataclass(frozen=True)
class DemoConfig:
    """What `cypher demo` renders."""

    out_dir: Path
    style: Style
    bars: int = 8
    seed: int = 0
    words: str = "auto"  # auto | lm | lexicon
    midi: str = "auto"  # auto | jack | loopback
    sample_rate: int = 48000
    jitter_rms_s: float = 0.001


@dataclass
class Exchange:
    """The rendered exchange and everything measured on it."""

    beat: np.ndarray
    vocal: np.ndarray
    answer: np.ndarray
    sink: OfflineSink
    follower_tempo_bpm: list[float]
    turn: AnswerTurn
    backends: dict[str, str]
    midi_transport: str
    bar_len: int
    answer_start_bar: int
    wall_s: float
    beat_tempo_bpm: float | None
    clock_send_late_s: list[float]


Progress = Callable[[str, int, int], None]


def run_exchange(cfg: DemoConfig, progress: Progress) -> Exchange:
    """Render one exchange through the live path in real time; `progress(stage, done, total)` reports progress."""
    t_start = time.monotonic()
    style, sr = cfg.style, cfg.sample_rate
    tempo = style.tempo_bpm
    total_bars = INTRO_BARS + 2 * cfg.bars + OUTRO_BARS
    bar_len = bar_samples(tempo, sr)

    progress("loading models", 0, 4)
    filler, words_backend = load_filler(cfg.words, cfg.seed)
    progress("loading models", 1, 4)
    voices = VoiceCache(sr)
    voice = voices(style.voice)
    opponent_voice = load_voice("piper", sample_rate=sr, **OPPONENT_VOICE)
    progress("loading models", 2, 4)
    lines = opponent_text(style, cfg.bars)
    transcriber, ears_backend = load_ears(lines)
    progress("loading models", 3, 4)

    beat = np.zeros(total_bars * bar_len, dtype=np.float32)
    drums = synth_beat(style.beat, tempo, total_bars, sr, seed=cfg.seed)[: len(beat)]
    beat[: len(drums)] = drums
    vocal = speak_on_grid(opponent_voice, style, lines, INTRO_BARS, total_bars, tempo, sr)
    progress("loading models", 4, 4)

    events: queue.Queue = queue.Queue()
    follower = ClockFollower()
    sink = OfflineSink(total_bars * bar_len, sr)
    turn = AnswerTurn(
        style, cfg.bars, INTRO_BARS, follower,
        vocal_bus=ArrayBus(vocal + VOCAL_BLEED * beat, bar_len), beat_bus=ArrayBus(beat, bar_len),
        transcriber=transcriber, sink=sink, sample_rate=sr, seed=cfg.seed,
        writer=LineWriter(filler, voices, fallback=LexiconFiller() if words_backend != "lexicon" else None),
    )
    tempo_seen: list[float] = []

    def on_bar(bar: int, time_s: float) -> None:
        turn.on_bar(bar, time_s)
        if follower.tempo_bpm is not None and bar > 0:
            tempo_seen.append(follower.tempo_bpm)
        progress("exchange", min(bar, total_bars), total_bars)

    clocks = total_bars * TICKS_PER_BAR // TICKS_PER_MIDI_CLOCK + 1
    backend = open_backend(cfg.midi)
    port_name = f"cypher-demo-{os.getpid()}"
    output = open_output(backend, port_name, virtual=True)
    try:
        with MidiEventSource(backend, port_name, events):
            timeline = Timeline(events, follower, on_bar)
            stop = threading.Event()
            loop = threading.Thread(target=timeline.run, args=(stop,), name="cypher-timeline", daemon=True)
            loop.start()
            sender = ClockSender(output, tempo, jitter_rms_s=cfg.jitter_rms_s, seed=cfg.seed, max_clocks=clocks)
            sender.start()
            sender.wait(timeout_s=total_bars * 4 * 60.0 / tempo + 10.0)
            sender.stop()
            time.sleep(0.05)
            stop.set()
            loop.join(2.0)
            sink.origin_s = sender.ideal_time_s(0)
            late_s = [t - sender.ideal_time_s(i) for i, t in enumerate(sender.sent_times_s)]
    finally:
        output.close()
    turn.close()
    if turn.report.errors:
        log.warning("%d answer bars failed; see the log", len(turn.report.errors))

    return Exchange(
        beat=beat, vocal=vocal, answer=sink.mix(), sink=sink, follower_tempo_bpm=tempo_seen, turn=turn,
        backends={"words": words_backend, "voice": voice.name, "ears": ears_backend},
        midi_transport=str(getattr(backend, "name", "in-process loopback")), bar_len=bar_len, answer_start_bar=INTRO_BARS + cfg.bars,
        wall_s=time.monotonic() - t_start, beat_tempo_bpm=turn.beat_tracker.tempo_bpm, clock_send_late_s=late_s,
    )


@dataclass(frozen=True)
class OnsetMeasure:
    """Planned slot times on the true grid (seconds in the recording) and two measurements of the vowel onsets:
    the synthesizer's own alignment where the recording holds each line, and a detector run on the audio."""

    planned_s: list[float]
    aligned_s: list[float]
    detected_s: list[float | None]

    def errors_ms(self, which: str) -> list[float]:
        """Signed errors (measured minus planned) in ms; undetected syllables are left out."""
        got = self.aligned_s if which == "aligned" else self.detected_s
        return [1000.0 * (g - p) for p, g in zip(self.planned_s, got) if g is not None]


def measure_onsets(ex: Exchange, sample_rate: int, tempo_bpm: float) -> OnsetMeasure:
    """Where each answer syllable's vowel starts in the recording, against its slot on the true beat grid.

    The primary figure takes each line's position in the recording and adds the synthesizer's own per-syllable
    alignment (exact to a synthesis frame); the vowel-onset detector (engine.listen.onsets: periodic first-formant
    energy, found from the audio alone) is kept beside it as an independent cross-check, good to about 16 ms.
    """
    planned: list[float] = []
    aligned: list[float] = []
    for r in ex.sink.renders:
        bar_s = r.bar * ex.bar_len / sample_rate
        line_s = ex.sink.bar_start_sample(r) / sample_rate
        planned.extend(bar_s + ticks_to_seconds(r.line.plan.grid.slot_ticks(s), tempo_bpm) for s in r.line.slots)
        aligned.extend(line_s + v for v in r.vowel_onsets_s)
    window_s = ticks_to_seconds(TICKS_PER_BAR // 16, tempo_bpm) / 2
    detected = vowel_onsets_near(ex.answer, sample_rate, planned, window_s)
    return OnsetMeasure(planned, aligned, detected)


def check_writable(out_dir: Path) -> None:
    """Fail early, with one clear line, if the output folder cannot be written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".cypher-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RenderError(f"cannot write to {out_dir}: {exc.strerror}; choose another folder with --out") from None
