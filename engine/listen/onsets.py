"""Vowel onsets measured from audio, near where they were planned: the drift check of the offline render.

A vowel is loud in the first-formant band (about 300-900 Hz) where bursts and fricatives are weak, so its onset is
taken as the steepest rise of that band's smoothed level inside a search window around each planned time. The
band filters are pedalboard's; the rest is a frame-energy envelope.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pedalboard

HOP_S = 0.001
SMOOTH_S = 0.008
FLOOR_DB = -35.0  # rises below this level (relative to the loudest frame) are not vowels


def band_envelope_db(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Level of the first-formant band in dB, one value per millisecond, smoothed over a few milliseconds."""
    board = pedalboard.Pedalboard(
        [pedalboard.HighpassFilter(cutoff_frequency_hz=300.0), pedalboard.LowpassFilter(cutoff_frequency_hz=900.0)]
    )
    band = board(audio.astype(np.float32)[None, :], sample_rate)[0]
    hop = max(1, int(round(HOP_S * sample_rate)))
    frames = len(band) // hop
    power = (band[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1)
    width = max(1, int(round(SMOOTH_S / HOP_S)))
    power = np.convolve(power, np.ones(width) / width, mode="same")
    return 10.0 * np.log10(power + 1e-12)


def vowel_onsets_near(
    audio: np.ndarray, sample_rate: int, targets_s: Sequence[float], window_s: float
) -> list[float | None]:
    """For each target time, the detected vowel onset within ±`window_s` (seconds), or None if nothing rises."""
    env = band_envelope_db(audio, sample_rate)
    if not len(env):
        return [None for _ in targets_s]
    floor = env.max() + FLOOR_DB
    step = max(1, int(round(0.005 / HOP_S)))  # rise over 5 ms
    rise = np.concatenate([env[step:] - env[:-step], np.zeros(step)]) if len(env) > step else np.zeros(len(env))
    found: list[float | None] = []
    for t in targets_s:
        lo = max(0, int((t - window_s) / HOP_S))
        hi = min(len(env), int((t + window_s) / HOP_S))
        if hi <= lo:
            found.append(None)
            continue
        seg = rise[lo:hi].copy()
        seg[env[lo:hi] + seg < floor] = -np.inf  # the level reached must be a vowel's
        i = int(np.argmax(seg))
        found.append(None if not np.isfinite(seg[i]) or seg[i] <= 0 else (lo + i + step / 2) * HOP_S)
    return found
