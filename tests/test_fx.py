"""The style's effect chain: real pedalboard plugins, measured on real signals."""

from __future__ import annotations

import numpy as np
import pedalboard
import pytest

from engine.errors import PresetError
from engine.presets import FxSpec, load_style
from engine.voice.fx import apply_chain, build_chain, note_seconds

SAMPLE_RATE = 48000


def _impulse(seconds: float = 0.1) -> np.ndarray:
    audio = np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)
    audio[0] = 1.0
    return audio


@pytest.mark.parametrize(("note", "tempo_bpm", "expected_s"), [
    ("1/4", 90.0, 60 / 90), ("1/8", 90.0, 30 / 90), ("1/8d", 90.0, 45 / 90), ("1/16", 120.0, 0.125),
])
def test_delay_note_sets_an_echo_at_the_tempo(note: str, tempo_bpm: float, expected_s: float) -> None:
    chain = build_chain([FxSpec("delay", {"note": note, "feedback": 0.0, "mix": 0.5})], tempo_bpm, SAMPLE_RATE)
    out = apply_chain(chain, _impulse(), SAMPLE_RATE)
    echo_at = int(np.argmax(np.abs(out[100:]))) + 100  # past the dry impulse
    assert abs(echo_at / SAMPLE_RATE - expected_s) < 0.001
    assert chain[0].delay_seconds == pytest.approx(note_seconds(note, tempo_bpm))


def test_tempo_change_moves_the_echo() -> None:
    spec = [FxSpec("delay", {"note": "1/8", "feedback": 0.0, "mix": 0.5})]
    slow = apply_chain(build_chain(spec, 80.0, SAMPLE_RATE), _impulse(), SAMPLE_RATE)
    fast = apply_chain(build_chain(spec, 100.0, SAMPLE_RATE), _impulse(), SAMPLE_RATE)
    slow_echo = int(np.argmax(np.abs(slow[100:]))) + 100
    fast_echo = int(np.argmax(np.abs(fast[100:]))) + 100
    assert slow_echo - fast_echo == pytest.approx((30 / 80 - 30 / 100) * SAMPLE_RATE, abs=2)


@pytest.mark.parametrize(("spec", "words"), [
    (FxSpec("reverb", {"room_sise": 0.5}), ("reverb", "room_sise")),
    (FxSpec("compressor", {"threshold": -10}), ("compressor", "threshold")),
    (FxSpec("lowpass", {"note": "1/8"}), ("lowpass", "note")),
    (FxSpec("delay", {"note": "1/7"}), ("1/7",)),
    (FxSpec("delay", {"note": "1/8", "delay_seconds": 0.2}), ("delay_seconds",)),
    (FxSpec("reverb", {"room_size": 3.0}), ("reverb", "room_size")),
    (FxSpec("gain", {"gain_db": "loud"}), ("gain", "gain_db")),
    (FxSpec("flanger", {}), ("flanger",)),
])
def test_bad_parameters_raise_preset_error_naming_effect_and_key(spec: FxSpec, words: tuple[str, ...]) -> None:
    with pytest.raises(PresetError) as caught:
        build_chain([FxSpec("highpass", {"cutoff_frequency_hz": 80.0}), spec], 90.0, SAMPLE_RATE)
    message = str(caught.value)
    assert "#2" in message
    for word in words:
        assert word in message


def test_parameters_reach_the_plugins_and_shape_the_sound() -> None:
    chain = build_chain([FxSpec("highpass", {"cutoff_frequency_hz": 500.0}), FxSpec("gain", {"gain_db": 6.0})],
                        90.0, SAMPLE_RATE)
    assert isinstance(chain[0], pedalboard.HighpassFilter) and chain[0].cutoff_frequency_hz == 500.0
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    low = (0.2 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)
    high = (0.2 * np.sin(2 * np.pi * 4000 * t)).astype(np.float32)
    out_low, out_high = apply_chain(chain, low, SAMPLE_RATE), apply_chain(chain, high, SAMPLE_RATE)
    assert out_low.dtype == np.float32 and out_low.ndim == 1 and len(out_low) == len(low)  # no tail to ring
    rms = lambda x: float(np.sqrt(np.mean(x[SAMPLE_RATE // 4:SAMPLE_RATE] ** 2)))  # noqa: E731
    assert 20 * np.log10(rms(out_high) / rms(high)) == pytest.approx(6.0, abs=0.5)
    assert rms(out_low) < 0.3 * rms(low)  # 50 Hz loses about 20 dB against the 6 dB of gain


def test_shipped_style_chain_runs_and_keeps_its_reverb_tail() -> None:
    style = load_style("boom_bap")
    chain = build_chain(style.fx, style.tempo_bpm, SAMPLE_RATE)
    assert [type(p).__name__ for p in chain] == ["HighpassFilter", "Compressor", "Distortion", "Delay", "Reverb"]
    assert chain[3].delay_seconds == pytest.approx(0.75 * 60 / style.tempo_bpm)
    rng = np.random.default_rng(7)
    burst = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    burst[:4800] = rng.uniform(-0.5, 0.5, 4800)
    out = apply_chain(chain, burst, SAMPLE_RATE)
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) > len(burst) + SAMPLE_RATE // 10  # the echo and reverb ring past the input
    assert np.max(np.abs(out[len(burst):])) > 1e-3
