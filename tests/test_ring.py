"""The playback ring buffer: bars mixed in at absolute positions, read out block by block without allocation."""

import tracemalloc

import numpy as np
import pytest

from engine.errors import CypherError
from engine.play.ring import RingBuffer


def test_bars_land_at_their_absolute_sample_and_wrap():
    ring = RingBuffer(1000)
    out = np.empty(256, dtype=np.float32)
    got = []
    for _ in range(2):  # the playhead moves to 512 first, so 900..1100 fits and wraps the storage
        ring.read_into(out)
        got.append(out.copy())
    ring.write(900, np.ones(200, dtype=np.float32))
    ring.write(950, np.ones(10, dtype=np.float32))  # overlapping renders mix
    for _ in range(3):
        ring.read_into(out)
        got.append(out.copy())
    audio = np.concatenate(got)
    assert np.all(audio[:900] == 0)
    assert np.all(audio[900:950] == 1) and np.all(audio[950:960] == 2) and np.all(audio[960:1100] == 1)
    assert np.all(audio[1100:] == 0)  # what was read was cleared, nothing repeats a lap later


def test_late_samples_are_dropped_and_counted():
    ring = RingBuffer(1000)
    out = np.empty(100, dtype=np.float32)
    ring.read_into(out)
    ring.write(50, np.ones(100, dtype=np.float32))
    assert ring.late_samples == 50
    ring.read_into(out)
    assert np.all(out[:50] == 1) and np.all(out[50:] == 0)


def test_writing_too_far_ahead_is_an_error():
    ring = RingBuffer(1000)
    with pytest.raises(CypherError, match="overflow"):
        ring.write(900, np.ones(200, dtype=np.float32)[:150])  # ends 1050 samples ahead of the playhead


def test_reading_allocates_nothing():
    ring = RingBuffer(48000)
    ring.write(0, np.ones(40000, dtype=np.float32))
    out = np.empty(256, dtype=np.float32)
    ring.read_into(out)  # warm up
    tracemalloc.start()
    for _ in range(100):
        ring.read_into(out)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1024
