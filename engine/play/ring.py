"""A preallocated ring buffer that workers fill ahead of the playhead and an audio callback drains.

The writer mixes bar renders in at absolute sample positions; the reader (the audio callback) copies out one
block at a time and clears what it read. Neither side allocates after construction. One writer, one reader:
positions are plain ints, published after the data they cover (the callback never waits on a lock).
"""

from __future__ import annotations

import numpy as np

from engine.errors import CypherError


class RingBuffer:
    """Mono float32 ring of `capacity` samples addressed by absolute sample position."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise CypherError(f"ring capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._data = np.zeros(capacity, dtype=np.float32)
        self.read_pos = 0  # absolute sample position of the next sample the callback plays
        self.late_samples = 0  # samples a writer offered behind the playhead (dropped)
        self.written_until = 0  # absolute position up to which data has been mixed in
        self.skipped_samples = 0  # samples the playhead jumped over (the device skipped cycles)
        self.rewound_samples = 0  # samples the playhead stepped back over (a late cycle had played them early)

    def write(self, start: int, audio: np.ndarray) -> None:
        """Mix `audio` in starting at absolute sample `start`; samples behind the playhead are dropped and
        counted; samples more than `capacity` ahead of the playhead are an error (the writer runs too far ahead)."""
        end = start + len(audio)
        if end - self.read_pos > self.capacity:
            raise CypherError(
                f"ring buffer overflow: writing up to {end - self.read_pos} samples ahead, capacity {self.capacity}"
            )
        skip = max(0, self.read_pos - start)
        self.late_samples += min(skip, len(audio))
        pos = start + skip
        audio = audio[skip:]
        while len(audio):
            i = pos % self.capacity
            n = min(len(audio), self.capacity - i)
            self._data[i:i + n] += audio[:n]
            audio = audio[n:]
            pos += n
        self.written_until = max(self.written_until, end)

    def fade_out(self, start: int, frames: int) -> None:
        """Fade what is mixed in from absolute sample `start` to silence over `frames`, and clear everything after
        it: a style switch cuts the old style's bars and effect tails. The part behind the playhead has played and
        is left alone. Called by the control side (it allocates its ramp), never by the callback."""
        start = max(start, self.read_pos)
        end = self.written_until
        if end <= start:
            return
        if end - start > self.capacity:
            raise CypherError(f"cannot fade {end - start} samples in a ring of {self.capacity}")
        gain = np.zeros(end - start, dtype=np.float32)
        ramp = min(max(frames, 0), len(gain))
        gain[:ramp] = np.linspace(1.0, 0.0, ramp, endpoint=False, dtype=np.float32)
        i = start % self.capacity
        n = min(len(gain), self.capacity - i)
        self._data[i:i + n] *= gain[:n]
        if n < len(gain):
            self._data[: len(gain) - n] *= gain[n:]
        self.written_until = start

    def read_into(self, out: np.ndarray) -> None:
        """Copy the next `len(out)` samples into `out` (the audio callback's buffer) and clear them. No allocation."""
        frames = len(out)
        i = self.read_pos % self.capacity
        n = min(frames, self.capacity - i)
        out[:n] = self._data[i:i + n]
        self._data[i:i + n] = 0.0
        if n < frames:
            out[n:] = self._data[: frames - n]
            self._data[: frames - n] = 0.0
        self.read_pos += frames

    def advance_to(self, position: int) -> None:
        """Move the playhead forward to absolute sample `position` without playing: what it jumps over is cleared
        and counted in `skipped_samples` (an output that lost cycles). No allocation; the audio callback may call it."""
        frames = position - self.read_pos
        if frames <= 0:
            return
        self.skipped_samples += frames
        if frames >= self.capacity:
            self._data.fill(0.0)
        else:
            i = self.read_pos % self.capacity
            n = min(frames, self.capacity - i)
            self._data[i:i + n] = 0.0
            if n < frames:
                self._data[: frames - n] = 0.0
        self.read_pos = position

    def rewind_to(self, position: int) -> None:
        """Move the playhead back to absolute sample `position`: the samples stepped over were already played (and
        cleared), so they are counted in `rewound_samples` and come back as silence. No allocation; the audio
        callback may call it."""
        frames = self.read_pos - position
        if frames <= 0:
            return
        self.rewound_samples += frames
        self.read_pos = position

    def restart_at(self, position: int) -> None:
        """Empty the ring and put the playhead at `position` (a new stream whose clock starts elsewhere). No
        allocation."""
        self._data.fill(0.0)
        self.read_pos = position
        self.written_until = position
