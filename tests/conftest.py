"""Shared fixtures: a JACK server (dummy driver) for the tests that need real MIDI and audio ports."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
        _release_portaudio()
        _stop(process)


def _release_portaudio() -> None:
    """Terminate PortAudio while the JACK server it may hold is still up: its exit handler asserts (and aborts the
    interpreter) when it finds the server gone."""
    sd = sys.modules.get("sounddevice")
    if sd is None:
        return
    while getattr(sd, "_initialized", 0) > 0:
        sd._terminate()


@dataclass
class LatentDelay:
    """A running `jack_latent_client`, and the xruns JACK reported since it started: each cycle the delay line
    misses leaves its delay one period shorter for the rest of its life."""

    name: str
    xruns: int = 0

    def _on_xrun(self, delay_usecs: float) -> None:
        self.xruns += 1


@pytest.fixture
def latent(jack_server: None) -> Iterator[LatentDelay]:
    """A running `jack_latent_client 1000`: a 1000-frame delay line that reports its latency to JACK, unhooked
    from the system ports it connects itself to."""
    if shutil.which("jack_latent_client") is None:
        pytest.skip("jack_latent_client is not installed (it ships with jackd2's example clients)")
    import jack

    delay = LatentDelay("")
    client = jack.Client("latent-probe", no_start_server=True)
    client.set_xrun_callback(delay._on_xrun)
    client.activate()
    before = {p.name for p in client.get_ports(is_audio=True)}
    process = subprocess.Popen(["jack_latent_client", "1000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        new: list[str] = []
        while len(new) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            new = sorted({p.name for p in client.get_ports(is_audio=True)} - before)
        assert len(new) == 2, f"jack_latent_client did not register its ports ({new})"
        delay.name = new[0].split(":")[0]
        while time.monotonic() < deadline and not all(client.get_all_connections(p) for p in new):
            time.sleep(0.05)  # it connects itself to the physical ports once active: wait, then undo that
        for port in new:
            for other in client.get_all_connections(port):
                if port.endswith(":output"):
                    client.disconnect(port, other.name)
                else:
                    client.disconnect(other.name, port)
        yield delay
    finally:
        process.terminate()
        process.wait(timeout=5)
        client.deactivate()
        client.close()


def push_in_odd_blocks(push: Callable[[np.ndarray], list[float]], audio: np.ndarray, seed: int = 0) -> list[float]:
    """Feed `audio` to a streaming tracker's `push` in seeded random blocks of 1-2999 samples; all it reported."""
    found: list[float] = []
    rng = np.random.default_rng(seed)
    start = 0
    while start < len(audio):
        size = int(rng.integers(1, 3000))
        found += push(audio[start : start + size])
        start += size
    return found


def median_f0(audio: np.ndarray, sample_rate: int = 48000) -> float:
    """The median pitch of confident frames (aubio's yin)."""
    import aubio

    detector = aubio.pitch("yin", 2048, 512, sample_rate)
    detector.set_unit("Hz")
    found = []
    for i in range(0, len(audio) - 512, 512):
        f0 = detector(audio[i:i + 512].astype(np.float32))[0]
        if detector.get_confidence() > 0.8 and 50 < f0 < 400:
            found.append(f0)
    return float(np.median(found))
