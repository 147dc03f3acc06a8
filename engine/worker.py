"""The line worker: a child process that owns the language model and the voices and writes the answer lines.

In a live set the audio callback, the clock and the OSC panel share one Python process; a model decoding or a
voice synthesising beside them holds the interpreter and the cores long enough for JACK to miss cycles. Measured
on this 2-core machine, synthesising and shaping bars in the JACK output's own process gave 85-95 xruns in 20 s,
with a shorter thread switch interval 81-82; in a child process at a lower priority, 0-1. So in `cypher live` the
writing, speaking and effects run here, and only finished audio comes back, over a pipe.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import BackendMissingError, CypherError
from engine.line import LineAudio, LineJob, LineWriter, VoiceCache, load_filler
from engine.listen.vocal import HeardWord, Transcriber
from engine.presets import VoiceSpec
from engine.write.fill_lexicon import LexiconFiller

log = logging.getLogger(__name__)

WORKER_NICE = 5  # below the audio process: when both want a core, the callback wins
START_TIMEOUT_S = 180.0  # the first start converts the language model (about 35 s on this machine)
STOP_TIMEOUT_S = 5.0


class WorkerError(CypherError):
    """The line worker could not start, or stopped."""


@dataclass(frozen=True)
class HearJob:
    """Transcribe one heard bar of the vocal bus (speech recognition is loaded on the first one)."""

    audio: np.ndarray
    sample_rate: int


@dataclass(frozen=True)
class WorkerConfig:
    """What the worker loads: the words backend (auto, lm or lexicon), the sample rate, the seed, and the voice
    to warm up before the set starts (a voice's first synthesis costs far more than the next ones)."""

    words: str = "auto"
    sample_rate: int = 48000
    seed: int = 0
    warm_voice: VoiceSpec | None = None
    warm_ears: bool = False  # load speech recognition before the set (a vocal bus is plugged in)
    gguf_path: Path | None = None  # other language model weights than the shipped SmolLM2


def _lower_priority() -> None:
    try:
        os.nice(WORKER_NICE)
    except (AttributeError, OSError) as exc:  # no nice() on Windows; a container may refuse
        log.debug("line worker keeps its priority: %s", exc)


def _serve(conn: Connection, config: WorkerConfig) -> None:
    """The child process: load, say ready, then write one line per job until told to stop."""
    logging.basicConfig(level=logging.WARNING, format="cypher worker: %(message)s")
    _lower_priority()
    try:
        filler, words_backend = load_filler(config.words, config.seed, config.gguf_path)
        voices = VoiceCache(config.sample_rate)
        if config.warm_voice is not None:
            voices(config.warm_voice).speak("check one two")
    except CypherError as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    writer = LineWriter(filler, voices, fallback=LexiconFiller() if words_backend != "lexicon" else None)
    transcriber: Transcriber | None = None
    if config.warm_ears:
        try:
            transcriber = Transcriber(cpu_threads=1)
            transcriber.transcribe(np.zeros(config.sample_rate, dtype=np.float32), config.sample_rate)
        except CypherError as exc:  # typed lines still work: the first heard bar says why recognition failed
            log.warning("speech recognition not loaded: %s", exc)
    conn.send(("ready", words_backend))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the engine went away
        if job is None:
            return
        try:
            if isinstance(job, HearJob):
                if transcriber is None:
                    transcriber = Transcriber(cpu_threads=1)
                conn.send(("ok", transcriber.transcribe(job.audio, job.sample_rate)))
            else:
                conn.send(("ok", writer.write(job)))
        except CypherError as exc:
            conn.send(("error", str(exc)))
        except Exception as exc:  # a bug must not end the set: the line is lost, the worker keeps serving
            log.exception("%s failed", type(job).__name__)
            conn.send(("error", f"internal error writing the line ({type(exc).__name__}: {exc})"))


class LineWorker:
    """`LineWriting` in a child process. `write` blocks its caller (the turn's thread) on the pipe, which holds
    no lock the audio side needs. A worker that died is started again for the next line, and says so once."""

    def __init__(self, config: WorkerConfig, start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.config = config
        self.start_timeout_s = start_timeout_s
        self.words_backend = ""
        self.restarts = 0
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Connection | None = None
        self._start()

    @property
    def pid(self) -> int | None:
        """The worker's process id, while it runs."""
        return None if self._process is None else self._process.pid

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process that runs JACK and rtmidi threads
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(child, self.config), name="cypher-line-worker", daemon=True)
        process.start()
        child.close()
        try:
            ready = parent.poll(self.start_timeout_s)
            kind, detail = parent.recv() if ready else ("failed", f"no answer in {self.start_timeout_s:.0f} s")
        except (EOFError, OSError):
            kind, detail = "failed", f"it exited with code {process.exitcode} while loading"
        if kind != "ready":
            process.kill()
            process.join(STOP_TIMEOUT_S)
            parent.close()
            error = BackendMissingError if detail.startswith("BackendMissingError") else WorkerError
            raise error(f"the line worker did not start: {detail}")
        self._process, self._conn, self.words_backend = process, parent, detail

    def write(self, job: LineJob) -> LineAudio:
        """The line for `job`, made in the worker; WorkerError (a CypherError) when it cannot be made."""
        return self._ask(job, f"answer line {job.index + 1}")  # type: ignore[no-any-return]

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> list[HeardWord]:
        """The words in one heard bar (`engine.turn.Ears`), recognised in the worker; WorkerError on failure."""
        return self._ask(HearJob(np.asarray(audio, dtype=np.float32), sample_rate), "a heard bar")  # type: ignore

    def _ask(self, job: LineJob | HearJob, what: str) -> Any:
        with self._lock:
            if self._conn is None or not self._process.is_alive():
                self._restart()
            assert self._conn is not None
            try:
                self._conn.send(job)
                kind, payload = self._conn.recv()
            except (EOFError, OSError):
                code = self._process.exitcode
                self._discard()
                raise WorkerError(f"the line worker stopped (exit code {code}) while on {what}; it starts again "
                                  "for the next one") from None
        if kind != "ok":
            raise WorkerError(payload)
        return payload

    def _restart(self) -> None:
        self._discard()
        self.restarts += 1
        log.warning("the line worker had stopped: starting it again")
        self._start()

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            self._process.join(0.1)
        self._conn = None

    def close(self) -> None:
        """Stop the worker; idempotent."""
        with self._lock:
            conn, process, self._conn = self._conn, self._process, None
        if conn is not None:
            try:
                conn.send(None)
            except OSError:
                pass  # already gone
            conn.close()
        if process is not None:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join(STOP_TIMEOUT_S)
