"""Turn end on vocal-bus silence (SilenceWatch) on real audio: Piper's second voice rapping over the demo's kit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.errors import CypherError
from engine.listen.turnend import FRAME_S, SilenceWatch
from engine.presets import load_style
from engine.render import OPPONENT_VOICE, VOCAL_BLEED, speak_on_grid
from engine.synth import synth_beat
from engine.timebase import bar_samples
from engine.voice.speak import load_voice

RATE = 48000
HOST_START_S = 1000.0  # the host clock at the first sample
BLOCK = 512  # samples per block pushed, as a capture ring is read
BARS = 6  # voice on bars 1 and 2, the beat alone after it


@pytest.fixture(scope="module")
def takes() -> dict[str, np.ndarray | float]:
    """The clean voice, the kit, and where the voice ends (the last 10 ms within 40 dB of its peak)."""
    style = load_style("boom_bap")
    voice = load_voice("piper", sample_rate=RATE, **OPPONENT_VOICE)
    lines = ["I move in silence like a knight across the board", "every square I take is one you can't afford"]
    vocal = speak_on_grid(voice, style, lines, 1, BARS, style.tempo_bpm, RATE)
    beat = synth_beat(style.beat, style.tempo_bpm, BARS, RATE, seed=1)[: len(vocal)]
    frame = RATE // 100
    rms = np.sqrt((vocal[: len(vocal) // frame * frame].astype(np.float64).reshape(-1, frame) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > rms.max() * 0.01)
    assert len(vocal) == BARS * bar_samples(style.tempo_bpm, RATE)
    return {"vocal": vocal, "beat": beat, "voice_start_s": loud[0] / 100, "voice_end_s": (loud[-1] + 1) / 100}


def watch_stream(watch: SilenceWatch, audio: np.ndarray, block: int = BLOCK) -> list[tuple[float, float]]:
    """Feed the bus in blocks stamped with host time; (host time of the block that said so, turn end) each time."""
    ends = []
    for start in range(0, len(audio), block):
        chunk = audio[start : start + block]
        now_s = HOST_START_S + (start + len(chunk)) / RATE
        ended = watch.push(chunk, now_s)
        if ended is not None:
            ends.append((now_s, ended))
    return ends


@pytest.mark.parametrize("gain", [1.0, 8.0])  # 8: the voice clipped hard
def test_turn_ends_a_hold_after_the_last_voice_with_the_beat_bleeding_in(takes: dict, gain: float) -> None:
    bus = np.clip(gain * takes["vocal"] + VOCAL_BLEED * takes["beat"], -1.0, 1.0)
    watch = SilenceWatch(RATE, hold_s=1.0)
    ends = watch_stream(watch, bus)
    assert len(ends) == 1
    said_s, end_s = ends[0]
    voice_end_s = HOST_START_S + takes["voice_end_s"]
    assert voice_end_s - 0.35 <= end_s <= voice_end_s + 0.02  # the last voiced frame; a trailing consonant is not
    # said once the hold has passed since the voice's end: never before it, and within the block (and the 10 ms
    # frame carried over into it) that reaches it
    block_s = BLOCK / RATE
    due_s = end_s + 1.0
    first_block_s = HOST_START_S + math.ceil(round((due_s - HOST_START_S) / block_s, 9)) * block_s
    assert said_s >= due_s
    assert said_s == pytest.approx(first_block_s) or (
        said_s == pytest.approx(first_block_s + block_s) and first_block_s - due_s < FRAME_S), (said_s, due_s)
    # a longer hold says the same end, that much later
    (later_said_s, later_end_s), = watch_stream(SilenceWatch(RATE, hold_s=1.5), bus)
    assert later_end_s == end_s and 0.5 - BLOCK / RATE - FRAME_S < later_said_s - said_s < 0.5 + BLOCK / RATE + FRAME_S
    assert watch.voice_s == 0.0 and watch.last_voice_end_s is None  # watching for the next turn


@pytest.mark.parametrize("level", [VOCAL_BLEED, 1.0])  # the bleed alone, and a whole beat on the vocal bus
def test_the_beat_alone_is_not_voice(takes: dict, level: float) -> None:
    watch = SilenceWatch(RATE)
    assert watch_stream(watch, level * takes["beat"]) == []
    assert watch.voice_s == 0.0 and watch.last_voice_end_s is None


def test_silence_never_ends_a_turn() -> None:
    watch = SilenceWatch(RATE)
    assert watch_stream(watch, np.zeros(RATE * 5, dtype=np.float32)) == []
    assert watch.voice_s == 0.0


def test_hold_and_block_size_set_when_not_where(takes: dict) -> None:
    bus = takes["vocal"] + VOCAL_BLEED * takes["beat"]
    (said_1, end_1), = watch_stream(SilenceWatch(RATE, hold_s=1.0), bus, block=256)
    (said_long, end_long), = watch_stream(SilenceWatch(RATE, hold_s=1.5), bus, block=4099)
    assert end_1 == pytest.approx(end_long, abs=1e-9)
    assert said_long > said_1 and 1.5 <= said_long - end_long <= 1.5 + 4099 / RATE + 0.011
    # a hold shorter than the pause between two lines (about 0.6 s here) ends the turn inside the verse
    assert watch_stream(SilenceWatch(RATE, hold_s=0.3), bus)[0][1] < end_1 - 1.0


def test_too_little_voice_and_reset_start_nothing(takes: dict) -> None:
    bus = takes["vocal"] + VOCAL_BLEED * takes["beat"]
    assert watch_stream(SilenceWatch(RATE, min_voice_s=60.0), bus) == []
    watch = SilenceWatch(RATE)
    cut = round((takes["voice_start_s"] + 1.0) * RATE)
    assert watch_stream(watch, bus[:cut]) == [] and watch.voice_s > 0.0
    watch.reset()
    assert watch.voice_s == 0.0 and watch.last_voice_end_s is None


def test_bad_input_says_what_to_do() -> None:
    watch = SilenceWatch(RATE)
    with pytest.raises(CypherError, match="mono"):
        watch.push(np.zeros((2, 512), dtype=np.float32), 1.0)
    watch.push(np.zeros(512, dtype=np.float32), 2.0)
    with pytest.raises(CypherError, match="host time"):
        watch.push(np.zeros(512, dtype=np.float32), 1.0)
    with pytest.raises(CypherError, match="sample_rate"):
        SilenceWatch(0)
    with pytest.raises(CypherError, match="hold_s"):
        SilenceWatch(RATE, hold_s=0.0)
    assert watch.push(np.full(512, np.nan, dtype=np.float32), 3.0) is None  # a broken buffer is silence
