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


def test_the_playhead_follows_a_clock_that_jumps_both_ways():
    """A lost cycle skips ahead; a late cycle that played the next block early steps back: later audio stays on its
    absolute position either way, and both slips are counted."""
    ring = RingBuffer(4096)
    ring.write(1024, np.arange(1, 257, dtype=np.float32))  # a "bar" at sample 1024
    out = np.empty(256, dtype=np.float32)
    ring.read_into(out)  # 0..256
    ring.advance_to(512)  # the clock jumped: 256..512 was lost
    ring.read_into(out)  # 512..768
    ring.read_into(out)  # a late callback read the next cycle's clock: it played 768..1024 for cycle 512..768's slot
    ring.rewind_to(768)  # the next callback reads 768 again
    assert (ring.skipped_samples, ring.rewound_samples) == (256, 256)
    ring.read_into(out)  # 768..1024: already played, cleared: silence
    assert np.all(out == 0)
    ring.read_into(out)  # 1024..1280: the bar, on its sample
    assert np.array_equal(out, np.arange(1, 257, dtype=np.float32))
    ring.rewind_to(2000)  # forward is not a rewind
    assert ring.read_pos == 1280 and ring.rewound_samples == 256


def test_a_fade_out_ramps_what_is_mixed_in_to_silence_and_clears_the_rest():
    ring = RingBuffer(1000)
    out = np.empty(100, dtype=np.float32)
    ring.write(0, np.ones(900, dtype=np.float32))
    ring.read_into(out)  # 0..100 played
    ring.fade_out(50, 100)  # behind the playhead: the fade starts at the playhead, 100
    ring.read_into(out)
    assert out[0] == 1.0 and np.all(np.diff(out) < 0) and out[-1] < 0.02  # 1 -> 0 over 100 samples
    ring.read_into(out)
    assert np.all(out == 0)  # nothing after the ramp survives
    assert ring.written_until == 100
    ring.write(300, np.full(10, 0.5, dtype=np.float32))  # the new style mixes in after the cut as usual
    ring.read_into(out)
    assert np.all(out[:10] == 0.5)


def test_a_capture_ring_hands_back_what_it_holds_by_frame_and_nothing_else():
    from engine.listen.capture import CaptureRing

    ring = CaptureRing(1000)
    assert ring.read(0, 10) is None  # nothing captured yet
    for frame in range(5000, 6600, 256):  # JACK frame times: blocks of 256 from frame 5000
        ring.write_at(frame, np.arange(frame, frame + 256, dtype=np.float32))
    until = 5000 + 7 * 256
    assert ring.written_until == until
    got = ring.read(until - 600, 500)
    assert got is not None and np.array_equal(got, np.arange(until - 600, until - 100, dtype=np.float32))
    assert ring.read(until - 1001, 10) is None  # overwritten: older than the ring holds
    assert ring.read(until - 10, 20) is None  # not yet captured
