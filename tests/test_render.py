"""The offline render's parts: buses, the recording sink, and the fallbacks when a model is missing."""

import logging
import time

import numpy as np

from engine.listen.vocal import TypedEars
from engine.render import ArrayBus, OfflineSink, load_ears, load_filler
from engine.turn import BarRender
from engine.write.fill_lexicon import LexiconFiller
from engine.write.grid import BarGrid, parse_pattern
from engine.write.plan import FilledLine, LinePlan


def test_array_bus_hands_out_whole_bars():
    bus = ArrayBus(np.arange(10, dtype=np.float32), bar_len=4)
    assert list(bus.bar_audio(1)) == [4, 5, 6, 7]
    assert list(bus.bar_audio(2)) == [8, 9]
    assert bus.bar_audio(3) is None and bus.bar_audio(-1) is None


def _render(bar: int, start_time_s: float, audio: np.ndarray, lead: int) -> BarRender:
    grid = BarGrid(0, 16, parse_pattern("x...R..........."))
    line = FilledLine(LinePlan(0, grid, "A0", ("time",), ()), ("my", "time"), (1, 1))
    return BarRender(bar, start_time_s, audio, lead, line, (0.0, 0.5), (0.0, 0.5), start_time_s - 1.0)


def test_offline_sink_places_each_bar_at_its_predicted_host_time():
    sink = OfflineSink(length=1000, sample_rate=100, origin_s=50.0)
    # host time 52.0 is sample 200; the lead of 10 samples starts the audio at 190
    sink.submit(_render(1, 52.0, np.ones(30, dtype=np.float32), lead=10))
    sink.submit(_render(2, 59.95, np.ones(30, dtype=np.float32), lead=0))  # runs past the end: cut
    out = sink.mix()
    assert np.all(out[190:220] == 1) and out[189] == 0 and out[220] == 0
    assert np.all(out[995:] == 1) and len(out) == 1000


def test_missing_language_model_falls_back_to_the_lexicon(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        filler, name = load_filler("auto", seed=0, gguf_path=tmp_path / "missing.gguf")
    assert isinstance(filler, LexiconFiller) and name == "lexicon"
    assert "lexicon filler" in caplog.text and "make setup" in caplog.text


def test_missing_speech_recognition_falls_back_to_typed_text(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        ears, name = load_ears(["you came with a borrowed rhyme", "your flow is slow"], model_dir=tmp_path)
    assert isinstance(ears, TypedEars) and name == "typed text"
    assert "speech recognition unavailable" in caplog.text
    first = ears.transcribe(np.zeros(480, dtype=np.float32), 48000)
    assert [w.text for w in first] == "you came with a borrowed rhyme".split()
    assert first[-1].end_s == 0.01
    assert [w.text for w in ears.transcribe(np.zeros(480, dtype=np.float32), 48000)][-1] == "slow"
    assert ears.transcribe(np.zeros(480, dtype=np.float32), 48000) == []


def test_a_bar_too_close_for_the_slow_filler_is_written_by_the_fast_one():
    from engine.line import LineJob, LineWriter
    from engine.presets import load_style

    style = load_style("boom_bap")
    slow, fast = LexiconFiller(), LexiconFiller()
    writer = LineWriter(slow, lambda spec: None, fallback=fast)  # type: ignore[arg-type,return-value]

    def job(bar_in_s: float) -> LineJob:
        return LineJob(0, 0, style, ("you came with a borrowed rhyme",), 90.0, time.monotonic() + bar_in_s)

    assert writer._filler_in_time(job(2.7)) is fast  # one bar at 90 BPM away: too close
    assert writer._filler_in_time(job(8.0)) is slow  # three bars away: time enough
    assert writer._filler_in_time(job(float("nan"))) is slow  # the clock cannot say yet: no reason to hurry
