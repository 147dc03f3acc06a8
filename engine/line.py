"""One answer line from what was heard to shaped audio: plan, fill, speak on the grid, run the style's effects.

`LineWriter` does the work wherever it runs: in a thread beside the offline demo, or in the worker process of a
live set (`engine.worker`), where it keeps the models and the turns' contexts away from the audio callback.
Jobs and results are plain picklable data.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import BackendMissingError
from engine.perform import Knobs, shape_style
from engine.presets import Style, VoiceSpec
from engine.timebase import ticks_to_seconds
from engine.voice.fx import apply_chain, build_chain
from engine.voice.speak import Voice
from engine.write.fill_lexicon import LexiconFiller
from engine.write.memory import BattleMemory
from engine.write.plan import FillContext, FilledLine, Filler
from engine.write.planner import plan_line, spoken_line

log = logging.getLogger(__name__)

SLOW_FILLER_BUDGET_S = 4.0  # below this much time to a line's bar line, the fast fallback filler writes it
KEPT_TURNS = 2  # contexts kept: the turn being answered and the one before it
KEPT_VOICES = 32  # voice deliveries kept (each style's, and what the energy knob made of them)


@dataclass(frozen=True)
class LineJob:
    """Write answer line `index` of turn `turn`, to sound on a bar line predicted for host time `bar_time_s`
    (`time.monotonic()`, the same clock in every process; NaN when the clock cannot say yet)."""

    turn: int
    index: int
    style: Style
    heard_lines: tuple[str, ...]
    tempo_bpm: float
    bar_time_s: float
    seed: int = 0
    knobs: Knobs = Knobs()


@dataclass(frozen=True)
class LineAudio:
    """A written, spoken and shaped line: sample `lead_samples` of `audio` belongs on the bar line."""

    line: FilledLine
    audio: np.ndarray
    lead_samples: int
    planned_onsets_s: tuple[float, ...]
    vowel_onsets_s: tuple[float, ...]
    stage_s: dict[str, float] = field(default_factory=dict)
    filler: str = ""
    fell_back: bool = False


class LineWriter:
    """Plans, fills, speaks and shapes answer lines; keeps each turn's context (its lines so far) and the battle's
    memory (our lines of every turn, never said again; the opponent's earlier rounds, for callbacks)."""

    def __init__(self, filler: Filler, voice_for: Callable[[VoiceSpec], Voice], fallback: Filler | None = None
                 ) -> None:
        self.filler = filler
        self.fallback = fallback
        self.voice_for = voice_for
        self._contexts: dict[int, FillContext] = {}
        self.memory = BattleMemory()

    def context(self, job: LineJob) -> FillContext:
        """The turn's context, made on its first line; contexts of older turns are let go."""
        ctx = self._contexts.get(job.turn)
        if ctx is None:
            ctx = self._contexts[job.turn] = FillContext(opponent_lines=(), seed=job.seed)
            for old in sorted(self._contexts)[:-KEPT_TURNS]:
                del self._contexts[old]
        return ctx

    def _filler_in_time(self, job: LineJob) -> Filler:
        """The filler, or the fast fallback when the bar line is too close for the slow one: a plain line on the
        beat beats a good line that misses its bar."""
        if self.fallback is None or math.isnan(job.bar_time_s):
            return self.filler
        left_s = job.bar_time_s - time.monotonic()
        if left_s < SLOW_FILLER_BUDGET_S:
            log.warning("answer line %d is %.1f s from its bar line: writing it with the %s filler", job.index + 1,
                        left_s, self.fallback.name)
            return self.fallback
        return self.filler

    def write(self, job: LineJob) -> LineAudio:
        """The line for `job`; CypherError (from the planner, filler or voice) when it cannot be made."""
        t0 = time.monotonic()
        ctx = self.context(job)
        ctx.opponent_lines = job.heard_lines
        ctx.used_lines = self.memory.said()
        self.memory.hear(job.turn, job.heard_lines)
        style = shape_style(job.style, job.knobs)
        plan = plan_line(style, job.index, list(job.heard_lines), ctx.previous,
                         earlier_heard=self.memory.heard_before(job.turn), answer_count=job.knobs.answer_words)
        filler = self._filler_in_time(job)
        filled = filler.fill_line(plan, ctx)
        line = spoken_line(plan, filled.words)
        ctx.previous.append(line)
        self.memory.say(line.text)
        t1 = time.monotonic()

        onsets = tuple(ticks_to_seconds(plan.grid.slot_ticks(s), job.tempo_bpm) for s in line.slots)
        voice = self.voice_for(style.voice)
        fitted = voice.speak_fitted(line.words, line.syllables, onsets, [int(s.stressed) for s in line.slots])
        t2 = time.monotonic()
        wet = apply_chain(build_chain(style.fx, job.tempo_bpm, voice.sample_rate), fitted.audio,
                          voice.sample_rate)
        t3 = time.monotonic()
        return LineAudio(
            line=line, audio=wet.astype(np.float32), lead_samples=fitted.lead_samples, planned_onsets_s=onsets,
            vowel_onsets_s=tuple(fitted.vowel_onsets_s),
            stage_s={"write_s": t1 - t0, "voice_s": t2 - t1, "fx_s": t3 - t2},
            filler=filler.name, fell_back=filler is not self.filler,
        )


def load_filler(words: str, seed: int, gguf_path: Path | None = None) -> tuple[Filler, str]:
    """The words backend: the language model when installed (or asked for), else the lexicon with a warning."""
    if words == "lexicon":
        return LexiconFiller(), "lexicon"
    try:
        from engine.write.fill_lm import LMFiller

        return LMFiller(seed=seed, gguf_path=gguf_path), "smollm2-135m"
    except BackendMissingError as exc:
        if words == "lm":
            raise
        log.warning("language model unavailable (%s); writing with the lexicon filler", exc)
        return LexiconFiller(), "lexicon"


class VoiceCache:
    """Loaded voices per voice setting (backend, length, pitch, accent), made on first use; the least recently used
    deliveries are let go past KEPT_VOICES (the knobs make a new delivery as they move), never the loaded models."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._voices: OrderedDict[VoiceSpec, Voice] = OrderedDict()
        self._models: dict[str, Voice] = {}  # per backend, the first voice loaded: its model is shared

    def __call__(self, spec: VoiceSpec) -> Voice:
        """The voice for `spec`; another delivery of a loaded Piper voice shares its model (no load)."""
        from engine.voice.speak import PiperVoice, load_voice

        voice = self._voices.get(spec)
        if voice is not None:
            self._voices.move_to_end(spec)
            return voice
        base = self._models.get(spec.backend)
        if isinstance(base, PiperVoice):
            voice = base.with_delivery(spec.length_scale, spec.pitch_semitones, spec.accent_db)
        else:
            voice = load_voice(spec.backend, self.sample_rate, spec.length_scale, spec.pitch_semitones,
                               spec.accent_db)
            self._models.setdefault(spec.backend, voice)
        self._voices[spec] = voice
        while len(self._voices) > KEPT_VOICES:
            self._voices.popitem(last=False)
        return voice
