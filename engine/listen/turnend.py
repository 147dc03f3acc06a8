"""Turn end on silence: the opponent's turn is over once the vocal bus has held no voice for a set time.

Pure logic over mono blocks of the vocal bus, each with the host time of its last sample. Voice is told from the
beat bleeding into the opponent's microphone per 10 ms frame: aubio's pitch tracker ("yinfast") is at least
`min_confidence` sure of a pitch between MIN_F0_HZ and MAX_F0_HZ, at least `min_voice_band_share` of the frame's
energy lies in the voice band (VOICE_BAND_HZ, where formants are), and the frame is louder than `min_level_db`;
voice is a run of at least `min_run_frames` such frames. Measured on the demo's renders (Piper's second voice over
engine.synth's boom bap kit): the kit's kick and snare tones are confidently pitched, but keep at most 13% of their
energy in the voice band (their noise sits above it), so the kit gives no voiced frame at the bleed's level
(engine.render.VOCAL_BLEED) nor at full level; the voice's loud frames have a median share of 74%, and runs of
up to 27 voiced frames on its vowels.
"""

from __future__ import annotations

import logging

import aubio
import numpy as np

from engine.errors import CypherError

log = logging.getLogger(__name__)

FRAME_S = 0.01
PITCH_WINDOW_S = 0.042  # yin's analysis window: two periods of a 50 Hz voice
MIN_F0_HZ = 55.0
MAX_F0_HZ = 500.0
VOICE_BAND_HZ = (250.0, 4000.0)


class SilenceWatch:
    """Watches the vocal bus for the end of the opponent's turn.

    `push(block, end_s)` returns the host time the turn ended (the end of the last voice) once the bus has been
    without voice for `hold_s` after at least `min_voice_s` of voice, then starts watching for the next turn;
    otherwise None. Call `reset()` when the turn ends another way (bar count, OSC "answer now").
    """

    def __init__(
        self,
        sample_rate: int,
        hold_s: float = 1.0,
        min_voice_s: float = 0.3,
        min_confidence: float = 0.6,
        min_level_db: float = -55.0,
        min_run_frames: int = 3,
        min_voice_band_share: float = 0.25,
    ) -> None:
        if sample_rate < 8000:
            raise CypherError(f"sample_rate must be 8000 Hz or more, got {sample_rate}; pass the vocal bus's rate")
        if hold_s <= 0 or min_voice_s < 0:
            raise CypherError(f"hold_s must be positive and min_voice_s not negative, got {hold_s} and {min_voice_s}")
        if not 0.0 < min_confidence <= 1.0 or min_run_frames < 1:
            raise CypherError(f"need 0 < min_confidence <= 1 and min_run_frames >= 1, got {min_confidence} and "
                              f"{min_run_frames}")
        self.sample_rate = sample_rate
        self.hold_s = hold_s
        self.min_voice_s = min_voice_s
        self.min_confidence = min_confidence
        self.min_level_db = min_level_db
        self.min_run_frames = min_run_frames
        self.min_voice_band_share = min_voice_band_share
        self._frame = round(FRAME_S * sample_rate)
        window = 1 << (round(PITCH_WINDOW_S * sample_rate) - 1).bit_length()
        freqs_hz = np.fft.rfftfreq(window, 1.0 / sample_rate)
        self._band = (freqs_hz >= VOICE_BAND_HZ[0]) & (freqs_hz <= VOICE_BAND_HZ[1])
        self._taper = np.hanning(window)
        self._recent = np.zeros(window)  # the last `window` samples, for the voice-band share
        self._pitch = aubio.pitch("yinfast", window, self._frame, sample_rate)
        self._pitch.set_unit("Hz")
        self._pitch.set_silence(min_level_db)
        self._pending = np.zeros(0, dtype=np.float32)
        self._last_end_s: float | None = None
        self._run = 0
        self.reset()

    def reset(self) -> None:
        """Start watching for a new turn: forget the voice heard so far."""
        self.voice_s = 0.0
        self.last_voice_end_s: float | None = None

    def voiced(self, frame: np.ndarray) -> bool:
        """Whether the next frame is voiced: a confident pitch in the voice's range, energy in the voice band,
        loud enough. Frames must come in stream order (the pitch tracker and the band share look back)."""
        f0_hz = float(self._pitch(frame)[0])
        confidence = float(self._pitch.get_confidence())
        self._recent = np.concatenate((self._recent[len(frame) :], frame))
        power = np.abs(np.fft.rfft(self._recent * self._taper)) ** 2
        share = float(power[self._band].sum() / (power.sum() + 1e-20))
        level_db = 10.0 * np.log10(float(np.mean(frame.astype(np.float64) ** 2)) + 1e-12)
        return (confidence >= self.min_confidence and MIN_F0_HZ <= f0_hz <= MAX_F0_HZ
                and share >= self.min_voice_band_share and level_db >= self.min_level_db)

    def push(self, block: np.ndarray, end_s: float) -> float | None:
        """Feed the next mono samples, `end_s` the host time of the last one; the turn's end time, or None."""
        samples = np.asarray(block, dtype=np.float32)
        if samples.ndim != 1:
            raise CypherError(f"SilenceWatch takes mono blocks, got shape {samples.shape}; mix the vocal bus to mono")
        if self._last_end_s is not None and end_s < self._last_end_s:
            raise CypherError(f"end_s went back from {self._last_end_s:.3f} to {end_s:.3f}; pass each block's "
                              "host time of its last sample")
        self._last_end_s = end_s
        data = np.concatenate((self._pending, samples)) if len(self._pending) else samples
        data = np.nan_to_num(data, nan=0.0, posinf=1.0, neginf=-1.0)
        whole = len(data) - len(data) % self._frame
        ended: float | None = None
        for start in range(0, whole, self._frame):
            frame_end_s = end_s - (len(data) - start - self._frame) / self.sample_rate
            if self.voiced(np.ascontiguousarray(data[start : start + self._frame])):
                self._run += 1
                if self._run == self.min_run_frames:
                    self.voice_s += self._run * FRAME_S
                    self.last_voice_end_s = frame_end_s
                elif self._run > self.min_run_frames:
                    self.voice_s += FRAME_S
                    self.last_voice_end_s = frame_end_s
            else:
                self._run = 0
            ended = ended if ended is not None else self._turn_over(frame_end_s)
        self._pending = data[whole:].copy()
        return ended

    def _turn_over(self, now_s: float) -> float | None:
        """The last voice's end once it lies `hold_s` back after enough voice; the watch then starts afresh."""
        last = self.last_voice_end_s
        if last is None or self.voice_s < self.min_voice_s or now_s - last < self.hold_s:
            return None
        log.info("vocal bus quiet for %.1f s after %.1f s of voice: turn over", now_s - last, self.voice_s)
        self.reset()
        return last
