"""Round-trip calibration: correlation to the sample, the stored compensation, and a real loop on JACK measured
the way jack_iodelay measures it (and compared with jack_iodelay itself)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from conftest import LatentDelay
from engine.cli_calibrate import register
from engine.errors import PortError
from engine.play.latency import (
    REFERENCE_COMPENSATION,
    CalibrationError,
    LoopMeasurement,
    config_dir,
    find_delay,
    load_compensation,
    measure_jack_loop,
    save_measurement,
    probe_signal,
)

LATENT_FRAMES = 1000


def test_find_delay_is_exact_to_the_sample_under_noise() -> None:
    rng = np.random.default_rng(3)
    sent = probe_signal(9600, seed=1)
    for delay in (0, 1, 256, 1256, 7777):
        recorded = np.zeros(len(sent) + 10000, dtype=np.float32)
        recorded[delay:delay + len(sent)] = 0.3 * sent
        recorded += rng.normal(0, 0.01, len(recorded)).astype(np.float32)
        assert find_delay(sent, recorded) == delay


def test_find_delay_refuses_a_loop_that_brings_nothing_back() -> None:
    rng = np.random.default_rng(4)
    with pytest.raises(CalibrationError, match="did not come back"):
        find_delay(probe_signal(4800), rng.normal(0, 0.1, 20000).astype(np.float32))


def test_the_stored_value_round_trips_and_defaults_to_the_reference_rig(tmp_path: Path) -> None:
    path = tmp_path / "cypher" / "latency.toml"
    assert load_compensation(path) == REFERENCE_COMPENSATION
    assert REFERENCE_COMPENSATION.frames == 256 and REFERENCE_COMPENSATION.frames_at(44100) == 235
    save_measurement(LoopMeasurement((300, 301, 300), 0, 0, 48000, 256, ("a:in",), ('b "x":out',)), path)
    loaded = load_compensation(path)
    assert (loaded.frames, loaded.sample_rate) == (300, 48000) and str(path) in loaded.source
    path.write_text("compensation_frames = -4\nsample_rate = 48000\n")
    with pytest.raises(CalibrationError, match="compensation_frames must be a whole number 0-48000, got -4"):
        load_compensation(path)
    path.write_text("compensation_frames = [")
    with pytest.raises(CalibrationError, match="not readable TOML"):
        load_compensation(path)


def test_config_dir_follows_xdg_and_the_override(tmp_path: Path) -> None:
    assert config_dir({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "cypher"
    assert config_dir({"XDG_CONFIG_HOME": str(tmp_path), "CYPHER_CONFIG_DIR": "/x/y"}) == Path("/x/y")
    assert config_dir({}) == Path.home() / ".config" / "cypher"


def jack_iodelay_frames(out_port: str, in_port: str) -> float:
    """What jack_iodelay itself measures on the same loop (its 'total roundtrip latency')."""
    process = subprocess.Popen(["stdbuf", "-oL", "jack_iodelay"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        time.sleep(0.5)
        for a, b in (("jack_delay:out", out_port), (in_port, "jack_delay:in")):
            subprocess.run(["jack_connect", a, b], check=True, timeout=5)
        assert process.stdout is not None
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            found = re.search(r"([\d.]+) frames\s+[\d.]+ ms total roundtrip latency", process.stdout.readline())
            if found:
                return float(found.group(1))
        pytest.fail("jack_iodelay measured nothing")
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_a_jack_loop_measures_stable_and_agrees_with_jack_iodelay(latent: LatentDelay) -> None:
    if shutil.which("jack_iodelay") is None or shutil.which("stdbuf") is None:
        pytest.skip("jack_iodelay (jackd2's example clients) and stdbuf are needed to compare with")
    measured = measure_jack_loop(f"{latent.name}:input", f"{latent.name}:output", repeats=3)
    # a loop of JACK connections is a cycle in JACK's graph: one period on top of the delay line's latency
    assert measured.round_trips_frames == (LATENT_FRAMES + measured.blocksize,) * 3
    assert measured.compensation_frames == measured.round_trip_frames
    assert round(jack_iodelay_frames(f"{latent.name}:input", f"{latent.name}:output")) == measured.round_trip_frames


def test_cypher_calibrate_stores_what_it_measured(latent: LatentDelay, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    path = tmp_path / "latency.toml"
    console = Console(record=True, width=120)
    args = parser.parse_args(["calibrate", "--out", f"{latent.name}:input", "--in", f"{latent.name}:output", "--repeats", "2",
                              "--config", str(path)])
    assert args.run(args, console) == 0
    assert load_compensation(path).frames == LATENT_FRAMES + 256
    assert f"stored {LATENT_FRAMES + 256} frames" in console.export_text()
    shown = parser.parse_args(["calibrate", "--show", "--config", str(path)])
    assert shown.run(shown, console) == 0 and "1256 frames at 48000 Hz" in console.export_text()
    missing = parser.parse_args(["calibrate", "--out", "no-such-cable", "--config", str(path)])
    with pytest.raises(PortError, match="no JACK input port matches 'no-such-cable'; input ports: .*system:playback"):
        missing.run(missing, console)
    with pytest.raises(SystemExit):
        parser.parse_args(["calibrate", "--repeats", "0"])
