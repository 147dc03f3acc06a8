"""Shared fixtures: a JACK server (dummy driver) for the tests that need real MIDI and audio ports."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.midi import jack_running

JACKD_COMMAND = ["jackd", "-d", "dummy", "-r", "48000", "-p", "256"]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the jackd this session started, by its PID."""
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A running JACK server: the one already up, or `jackd -d dummy -r 48000 -p 256`, stopped at the end."""
    if shutil.which("jackd") is None or shutil.which("jack_wait") is None:
        pytest.skip("jackd is not installed (apt-get install jackd2); JACK tests need it")
    if jack_running():
        yield
        return
    log_path: Path = tmp_path_factory.mktemp("jack") / "jackd.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(JACKD_COMMAND, stdout=log, stderr=subprocess.STDOUT)
    try:
        waited = subprocess.run(["jack_wait", "-w", "-t", "10"], capture_output=True, text=True, timeout=15)
        if waited.returncode != 0 or process.poll() is not None:
            pytest.fail(f"jackd did not start ({' '.join(JACKD_COMMAND)}); its log:\n{log_path.read_text()[-2000:]}")
        yield
    finally:
        _stop(process)
