"""The harness's DAW tracks over a real JACK server: a player's clip reaches a recorder whole, on its host time."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.play.record import SLIP_FRAMES, Player, Recorder

RATE = 48000
STEP = 1.0 / 65536  # the clip is a ramp of exact float32 steps: each sample says where in the clip it came from


@pytest.mark.jack
def test_a_player_plays_its_clip_whole_from_its_host_time(jack_server: None) -> None:
    recorder = Recorder("rec-ramp", seconds=2.0)
    player = Player("player-ramp")
    try:
        player.client.connect(player.port, recorder.port)
        clip = (np.arange(1, RATE + 1) * STEP).astype(np.float32)  # one second, every sample distinct
        start_s = time.monotonic() + 0.3
        player.play_at(start_s, clip)
        time.sleep(0.3 + len(clip) / RATE + 0.3)
        expected_frame = recorder.frame_of(start_s)
    finally:
        player.close()
        recorder.close()
    assert recorder.first is not None
    heard = np.nonzero(recorder.audio)[0]
    positions = np.round(recorder.audio[heard] / STEP).astype(np.int64)
    # the clip starts where the host clock put it, and goes on one sample per frame: a jump in what was played
    # (the player set again by the host clock) or in what was recorded (a cycle JACK lost: a hole, then the clip
    # on from where it was or from where it should be) is counted by them
    assert abs(heard[0] + recorder.first - expected_frame) <= SLIP_FRAMES
    assert positions[0] == 1
    jumps = int(np.count_nonzero((np.diff(positions) != 1) | (np.diff(heard) != 1)))
    assert jumps <= player.slips + 2 * recorder.gaps, (jumps, player.slips, recorder.gaps)
    if player.slips == 0 and recorder.gaps == 0:
        np.testing.assert_array_equal(recorder.audio[heard], clip)
