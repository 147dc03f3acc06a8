"""Vowel onsets measured from audio alone: an independent check of where a fitted line's vowels start.

A vowel onset is where voicing and the vowel's own loudness begin together. Each syllable's nucleus is a
prominent peak of the first-formant band's level (about 300-900 Hz) on periodic frames (the normalised
autocorrelation of the low band peaks at a pitch lag between 70 and 400 Hz); its onset is found by walking back
from that peak while the sound stays periodic and within OPEN_DB of the peak. Bursts and fricatives (the `t` of
"stop", the `s` of "see", the `sh` of "shock") are aperiodic, so the walk stops where they end and they never pull
the onset early; nasals and liquids are voiced but their first-formant level stays more than OPEN_DB below the
vowel's. The band level is averaged over more than one pitch period (a voice's level rises and falls within
each period by 20 dB and more in this band).

`vowel_onsets(audio, rate)` finds every onset in a recording without being told where to look;
`vowel_onsets_near(audio, rate, targets_s, window_s)` then takes, for each planned time, the nearest of those
within the window (None when there is none), so a planned time never moves what is found.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np
import pedalboard

from engine.errors import CypherError
from engine.voice import fit

HOP_S = 0.001  # one analysis frame a millisecond
SMOOTH_S = 0.0125  # the band level is averaged over this long (a period of an 80 Hz voice)
NUCLEUS_SMOOTH_S = 0.0125  # nuclei are peaks of the band level smoothed again over this long
PROMINENCE_DB = 3.0  # a nucleus stands this far above the dip before its neighbour
OPEN_DB = 10.0  # a vowel has begun once its band is within this many dB of its nucleus' peak
FLOOR_DB = -30.0  # a vowel reaches at least this level, relative to the recording's loud frames
LOUD_PERCENTILE = 99.0  # the level the floor is relative to (a percentile, so one click does not set it)
PITCH_HZ = (70.0, 400.0)  # the pitch range searched for periodicity
VOICED = 0.5  # periodicity above which a frame is voiced
PERIOD_WINDOW_S = 0.025  # autocorrelation window (two periods of a 80 Hz voice)
PERIOD_RATE = 12000  # the periodicity analysis runs on the low band, decimated to this rate
SILENCE_DB = -50.0  # frames this far below the loudest are not analysed for periodicity
MIN_GAP_S = 0.05  # two nuclei closer than this are one syllable


class OnsetError(CypherError):
    """Audio that cannot be analysed for onsets."""


def _check(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The audio as float32 mono, or OnsetError saying what to pass instead."""
    if not isinstance(sample_rate, Integral) or sample_rate < 8000:
        raise OnsetError(f"sample_rate must be an integer of at least 8000 Hz, got {sample_rate!r}")
    array = np.asarray(audio)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.number):
        raise OnsetError(f"audio must be a 1-D array of samples (mono), got shape {array.shape} of {array.dtype}")
    return np.nan_to_num(array.astype(np.float32))


def _frames_power(signal: np.ndarray, hop: int) -> np.ndarray:
    """Mean power of each whole `hop`-sample frame."""
    frames = len(signal) // hop
    return (signal[: frames * hop].reshape(frames, hop).astype(np.float64) ** 2).mean(axis=1)


def band_envelope_db(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Level of the first-formant band (300-900 Hz) in dB, one value per millisecond, lightly smoothed."""
    audio = _check(audio, sample_rate)
    board = pedalboard.Pedalboard(
        [pedalboard.HighpassFilter(cutoff_frequency_hz=300.0), pedalboard.LowpassFilter(cutoff_frequency_hz=900.0)]
    )
    band = board(audio[None, :], sample_rate)[0]
    power = _frames_power(band, max(1, int(round(HOP_S * sample_rate))))
    if not len(power):
        return power
    width = max(1, int(round(SMOOTH_S / HOP_S)))
    power = np.convolve(power, np.ones(width) / width, mode="same")
    return 10.0 * np.log10(power + 1e-12)


def periodicity(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """How periodic the sound is around each millisecond: the highest normalised correlation of the low band with
    itself one pitch period later (0 for noise and silence, near 1 for a steady voiced vowel)."""
    audio = _check(audio, sample_rate)
    low = pedalboard.Pedalboard([pedalboard.LowpassFilter(cutoff_frequency_hz=1000.0)])(audio[None, :], sample_rate)
    step = max(1, sample_rate // PERIOD_RATE)
    x = low[0, ::step].astype(np.float64)
    rate = sample_rate / step
    hop = max(1, int(round(HOP_S * sample_rate)))
    count = len(audio) // hop
    if count == 0:
        return np.zeros(0)
    win = int(round(PERIOD_WINDOW_S * rate))
    lags = np.arange(int(rate / PITCH_HZ[1]), int(np.ceil(rate / PITCH_HZ[0])) + 1)
    padded = np.concatenate([np.zeros(win // 2), x, np.zeros(win)])
    starts = np.round(np.arange(count) * hop / step).astype(np.int64)  # frame k's window, centred on it
    quiet = float(np.max(x ** 2)) * 10.0 ** (SILENCE_DB / 10.0) * win
    size = int(2 ** np.ceil(np.log2(2 * win)))
    out = np.zeros(count)
    for first in range(0, count, 512):
        frames = padded[starts[first:first + 512][:, None] + np.arange(win)[None, :]]
        spectrum = np.fft.rfft(frames, size, axis=1)
        acf = np.fft.irfft(np.abs(spectrum) ** 2, size, axis=1)[:, lags]
        power = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames ** 2, axis=1)], axis=1)
        head = power[:, win - lags]  # energy of the part that is compared...
        tail = power[:, -1:] - power[:, lags]  # ...with the part one lag later
        ratio = acf / np.sqrt(np.maximum(head * tail, 1e-30))
        out[first:first + 512] = np.where(power[:, -1] > quiet, ratio.max(axis=1), 0.0)
    return np.clip(out, 0.0, 1.0)


def nucleus_peaks(env_db: np.ndarray, vowel: np.ndarray) -> list[int]:
    """Frames where a syllable's vowel is loudest: maxima of the smoothed band level on vowel-like frames, each
    standing at least PROMINENCE_DB above the dip that separates it from its neighbour (else the louder one wins)."""
    width = max(1, int(round(NUCLEUS_SMOOTH_S / HOP_S)))
    smooth = np.convolve(env_db, np.ones(width) / width, mode="same")
    reach = max(1, int(round(MIN_GAP_S / HOP_S)))
    peaks = [k for k in range(len(smooth)) if vowel[k]
             and smooth[k] >= smooth[max(0, k - reach):k + reach + 1].max()]
    kept: list[int] = []
    for k in peaks:
        if kept:
            dip = float(smooth[kept[-1]:k + 1].min())
            if min(smooth[kept[-1]], smooth[k]) - dip < PROMINENCE_DB:
                if smooth[k] > smooth[kept[-1]]:
                    kept[-1] = k
                continue
        kept.append(k)
    return kept


def vowel_onsets(audio: np.ndarray, sample_rate: int) -> list[float]:
    """Every vowel onset in the recording (seconds from its first sample), found without any planned times.

    Each syllable nucleus (a prominent peak of the first-formant level on voiced frames) is followed back to
    where its vowel began: the last frame, going back from the peak, that is voiced and within OPEN_DB of the
    peak's level.
    """
    env = band_envelope_db(audio, sample_rate)
    if not len(env):
        return []
    voiced = periodicity(audio, sample_rate)[: len(env)] > VOICED
    floor = float(np.percentile(env, LOUD_PERCENTILE)) + FLOOR_DB
    vowel = voiced & (env > floor)
    onsets: list[float] = []
    previous = -1
    for peak in nucleus_peaks(env, vowel):
        level = env[peak] - OPEN_DB
        k = peak
        while k - 1 > previous and voiced[k - 1] and env[k - 1] > level:
            k -= 1
        onsets.append(float(k * HOP_S))
        previous = peak
    return onsets


def vowel_onsets_near(
    audio: np.ndarray, sample_rate: int, targets_s: Sequence[float], window_s: float
) -> list[float | None]:
    """For each target time, the nearest detected vowel onset within ±`window_s` (seconds), or None."""
    found = np.asarray(vowel_onsets(audio, sample_rate))
    out: list[float | None] = []
    for t in targets_s:
        if not len(found):
            out.append(None)
            continue
        i = int(np.argmin(np.abs(found - t)))
        out.append(float(found[i]) if abs(found[i] - t) <= window_s else None)
    return out


def alignment_vowel_starts(phonemes: Sequence[str], num_samples: Sequence[int], sample_rate: int) -> list[float]:
    """Where a synthesizer's phoneme alignment says each syllable's vowel starts (seconds), for checking the
    detector: the start of the vowel's phoneme, taken back over a stress or length mark just before it (a mark
    has no sound of its own; in Piper's output its frames already carry the vowel)."""
    if len(phonemes) != len(num_samples):
        raise OnsetError(f"{len(phonemes)} phonemes but {len(num_samples)} durations: pass one duration each")
    edges = np.concatenate([[0], np.cumsum(np.asarray(num_samples, dtype=np.int64))])
    starts = [s - 1 if s > 0 and phonemes[s - 1] in fit.MARKS else s for s in fit.nucleus_starts(list(phonemes))]
    return [float(edges[s]) / sample_rate for s in starts]
