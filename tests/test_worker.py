"""The line worker: answer lines written, spoken and shaped in a child process; errors come back as errors, and a
worker that dies is started again for the next line."""

import dataclasses
import os
import signal
import time

import numpy as np
import pytest

from engine.errors import BackendMissingError
from engine.line import LineJob
from engine.presets import load_style
from engine.worker import LineWorker, WorkerConfig, WorkerError

pytestmark = pytest.mark.models

RATE = 48000
HEARD = ("you came to the cypher with a borrowed rhyme", "your flow is stuck in a different time")


@pytest.fixture(scope="module")
def worker():
    writer = LineWorker(WorkerConfig("lexicon", RATE, warm_voice=load_style("boom_bap").voice))
    yield writer
    writer.close()


def job(index: int, turn: int = 0, **changes) -> LineJob:
    style = load_style("boom_bap")
    return dataclasses.replace(LineJob(turn, index, style, HEARD[: index + 1], style.tempo_bpm,
                                       time.monotonic() + 10.0), **changes)


def test_a_line_is_written_spoken_and_shaped_in_another_process(worker: LineWorker) -> None:
    assert worker.pid is not None and worker.pid != os.getpid() and worker.words_backend == "lexicon"
    made = worker.write(job(0))
    assert made.line.words and made.filler == "lexicon" and not made.fell_back
    assert len(made.planned_onsets_s) == made.line.syllable_count == len(made.line.slots)
    assert made.audio.dtype == np.float32 and float(np.max(np.abs(made.audio))) > 0.05
    assert 0 < made.lead_samples < len(made.audio)
    assert set(made.stage_s) == {"write_s", "voice_s", "fx_s"}


def test_the_worker_keeps_the_battle_so_no_line_is_said_twice(worker: LineWorker) -> None:
    first = worker.write(job(0, turn=1)).line.text
    again = worker.write(job(0, turn=1)).line.text  # the turn remembers its lines
    fresh = worker.write(job(0, turn=2)).line.text  # a new turn, same seed and lines: the battle remembers too
    assert len({first, again, fresh}) == 3 and fresh


def test_a_line_that_cannot_be_made_is_an_error_and_the_worker_goes_on(worker: LineWorker) -> None:
    style = load_style("boom_bap")
    broken = dataclasses.replace(style, voice=dataclasses.replace(style.voice, backend="coqui"))
    with pytest.raises(WorkerError, match="unknown voice backend 'coqui'"):
        worker.write(job(0, turn=5, style=broken))
    assert worker.write(job(0, turn=6)).line.words


def test_a_worker_that_died_starts_again_for_the_next_line(worker: LineWorker) -> None:
    old = worker.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    time.sleep(0.2)
    made = worker.write(job(0, turn=7))
    assert made.line.words and worker.restarts == 1 and worker.pid not in (None, old)


def test_a_words_backend_that_is_not_installed_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(BackendMissingError, match="the line worker did not start: .*missing.gguf"):
        LineWorker(WorkerConfig("lm", RATE, gguf_path=tmp_path / "missing.gguf"), start_timeout_s=120.0)
