"""Round-trip latency: the stored compensation, and measuring it through a loopback the way jack_iodelay does.

A burst of noise goes out of an output port, comes back into an input port through the loop (a cable, a virtual
channel, the DAW), and the delay is the peak of the cross-correlation between what was sent and what came back,
to the sample. The measured round trip is the compensation the engine plays early by, on top of the latency the
output reports for its own port. On the reference rig JACK reported no latency and the loop measured 256 frames
at 48 kHz (`shared/reference/jack_iodelay_reference_rig.log`): that is the default until `cypher calibrate` has
stored a measurement. A loop made of JACK connections is a cycle in JACK's graph, which costs one period on top
of the latency of what is in the loop; JACK's reported port latencies are not meaningful inside such a cycle
(they are stored for reference only), which is why the round trip is measured rather than summed.

The result lives in `latency.toml` in `$XDG_CONFIG_HOME/cypher/` (else `~/.config/cypher/`); `CYPHER_CONFIG_DIR`
or an explicit path overrides it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import BackendMissingError, CypherError, PortError

logger = logging.getLogger(__name__)

REFERENCE_ROUND_TRIP_FRAMES = 256  # jack_iodelay on the reference rig: 256.000 frames, JACK reported 0
REFERENCE_SAMPLE_RATE = 48000
LATENCY_FILE = "latency.toml"
MIN_CORRELATION = 0.5  # normalised peak below this: the signal did not come back
SIGNAL_LEVEL = 0.25  # -12 dBFS noise burst
LATENCY_LINE = re.compile(r"port (playback|capture) latency = \[ *(\d+) +(\d+) *\]")


class CalibrationError(CypherError):
    """The loopback measurement failed or gave no stable answer."""


@dataclass(frozen=True)
class Compensation:
    """Frames to play early on top of the output's reported latency, at `sample_rate`, and where they came from."""

    frames: int
    sample_rate: int
    source: str

    def frames_at(self, sample_rate: int) -> int:
        """The same time span at another sample rate."""
        return int(round(self.frames * sample_rate / self.sample_rate))


REFERENCE_COMPENSATION = Compensation(REFERENCE_ROUND_TRIP_FRAMES, REFERENCE_SAMPLE_RATE,
                                      "reference rig (jack_iodelay: 256 frames at 48 kHz)")


@dataclass(frozen=True)
class LoopMeasurement:
    """One calibration: every repeat's round trip, and what JACK reported for the loop's ports."""

    round_trips_frames: tuple[int, ...]
    output_latency_frames: int  # playback latency JACK reports for our output port (the output subtracts it)
    input_latency_frames: int  # capture latency JACK reports for our input port
    sample_rate: int
    blocksize: int
    out_ports: tuple[str, ...]
    in_ports: tuple[str, ...]

    @property
    def round_trip_frames(self) -> int:
        """The median round trip."""
        return int(np.median(self.round_trips_frames))

    @property
    def compensation_frames(self) -> int:
        """What the engine plays early on top of the output's reported latency: the measured round trip."""
        return self.round_trip_frames


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where Cypher keeps per-user settings: CYPHER_CONFIG_DIR, else $XDG_CONFIG_HOME/cypher, else ~/.config/cypher."""
    env = os.environ if env is None else env
    if env.get("CYPHER_CONFIG_DIR"):
        return Path(env["CYPHER_CONFIG_DIR"])
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "cypher"


def latency_path(env: Mapping[str, str] | None = None) -> Path:
    """The stored calibration's file."""
    return config_dir(env) / LATENCY_FILE


def save_measurement(measurement: LoopMeasurement, path: Path) -> None:
    """Write the calibration as TOML (atomically: a temporary file renamed into place)."""
    lines = [
        "# written by `cypher calibrate`; delete this file to go back to the reference rig's 256 frames",
        f"compensation_frames = {measurement.compensation_frames}",
        f"sample_rate = {measurement.sample_rate}",
        f"round_trip_frames = {measurement.round_trip_frames}",
        f"round_trips_frames = [{', '.join(str(f) for f in measurement.round_trips_frames)}]",
        f"output_latency_frames = {measurement.output_latency_frames}",
        f"input_latency_frames = {measurement.input_latency_frames}",
        f"blocksize = {measurement.blocksize}",
        f"out_ports = [{', '.join(_toml_string(p) for p in measurement.out_ports)}]",
        f"in_ports = [{', '.join(_toml_string(p) for p in measurement.in_ports)}]",
        f"measured_at = {_toml_string(time.strftime('%Y-%m-%dT%H:%M:%S%z'))}",
    ]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise CalibrationError(f"cannot write {path}: {exc.strerror}; pass --config with a writable file") from None


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def load_compensation(path: Path | None = None) -> Compensation:
    """The stored calibration, or the reference rig's 256 frames at 48 kHz when none is stored."""
    path = latency_path() if path is None else path
    if not path.exists():
        return REFERENCE_COMPENSATION
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CalibrationError(f"{path} is not readable TOML ({exc}): run `cypher calibrate` again or delete it")
    frames, rate = data.get("compensation_frames"), data.get("sample_rate")
    if not isinstance(frames, int) or isinstance(frames, bool) or not 0 <= frames <= 48000:
        raise CalibrationError(f"{path}: compensation_frames must be a whole number 0-48000, got {frames!r}; "
                               "run `cypher calibrate` again or delete the file")
    if not isinstance(rate, int) or isinstance(rate, bool) or not 8000 <= rate <= 384000:
        raise CalibrationError(f"{path}: sample_rate must be a whole number 8000-384000, got {rate!r}; "
                               "run `cypher calibrate` again or delete the file")
    return Compensation(frames, rate, f"calibrated ({path})")


def probe_signal(num_samples: int, seed: int = 0) -> np.ndarray:
    """A noise burst (flat spectrum, one sharp correlation peak), faded in and out over 64 samples."""
    rng = np.random.default_rng(seed)
    burst = rng.uniform(-SIGNAL_LEVEL, SIGNAL_LEVEL, num_samples).astype(np.float32)
    fade = min(64, num_samples // 2)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    burst[:fade] *= ramp
    burst[num_samples - fade:] *= ramp[::-1]
    return burst


def find_delay(sent: np.ndarray, recorded: np.ndarray) -> int:
    """Samples by which `recorded` lags `sent` (peak of the FFT cross-correlation, to the sample); raises
    CalibrationError when nothing correlated came back."""
    n = len(sent) + len(recorded)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(recorded, size) * np.conj(np.fft.rfft(sent, size)), size)[: len(recorded)]
    lag = int(np.argmax(np.abs(corr)))
    energy = float(np.sqrt(np.sum(sent.astype(np.float64) ** 2)
                           * np.sum(recorded[lag:lag + len(sent)].astype(np.float64) ** 2)))
    score = abs(float(corr[lag])) / energy if energy > 0 else 0.0
    if score < MIN_CORRELATION:
        raise CalibrationError(f"the test signal did not come back (correlation {score:.2f}): check that the "
                               "loop really connects the output to the input, and that nothing else plays into it")
    return lag


def jack_port_latency(port_name: str, servername: str | None = None) -> tuple[int, int]:
    """(playback max, capture max) latency in frames that JACK reports for a port, read with `jack_lsp -l`
    (JACK-Client does not wrap jack_port_get_latency_range)."""
    jack_lsp = shutil.which("jack_lsp")
    if jack_lsp is None:
        raise BackendMissingError("jack_lsp is missing: install JACK's tools (apt-get install jackd2)")
    command = [jack_lsp, "-l"] + (["-s", servername] if servername else []) + [port_name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PortError(f"jack_lsp failed ({exc}); is the JACK server running?") from None
    found = {kind: int(high) for kind, _, high in LATENCY_LINE.findall(done.stdout)}
    if "playback" not in found or "capture" not in found:
        raise PortError(f"JACK did not report the latency of {port_name!r} (jack_lsp said: {done.stdout.strip()!r})")
    return found["playback"], found["capture"]


def matching_ports(client: object, pattern: str, *, is_input: bool) -> list[str]:
    """Audio ports of the running JACK server whose full name contains `pattern` (case-insensitive)."""
    ports = client.get_ports(is_audio=True, is_input=is_input, is_output=not is_input)  # type: ignore[attr-defined]
    return [p.name for p in ports if pattern.lower() in p.name.lower()]


class _LoopRecorder:
    """A JACK client that plays a prepared signal out of one port and records its input port, cycle by cycle."""

    def __init__(self, client: object, play: np.ndarray, record_samples: int) -> None:
        self.client = client
        self.play = play
        self.recorded = np.zeros(record_samples, dtype=np.float32)
        self.position = 0
        self.outport = client.outports.register("out")  # type: ignore[attr-defined]
        self.inport = client.inports.register("in")  # type: ignore[attr-defined]
        client.set_process_callback(self._process)  # type: ignore[attr-defined]

    def _process(self, frames: int) -> None:
        out = self.outport.get_array()
        pos = self.position
        end = min(pos + frames, len(self.recorded))
        n = max(0, end - pos)
        out.fill(0.0)
        if pos < len(self.play):
            m = min(frames, len(self.play) - pos)
            out[:m] = self.play[pos:pos + m]
        if n:
            self.recorded[pos:end] = self.inport.get_array()[:n]
        self.position = pos + frames


def measure_jack_loop(out_to: str, in_from: str, repeats: int = 5, signal_s: float = 0.2, max_delay_s: float = 0.5,
                      client_name: str = "cypher-calibrate", servername: str | None = None) -> LoopMeasurement:
    """Measure the round trip from our output port (connected to every input port matching `out_to`) back to our
    input port (fed by every output port matching `in_from`), `repeats` times; CalibrationError if they differ by
    more than one sample."""
    try:
        import jack
    except (ImportError, OSError) as exc:
        raise BackendMissingError(f"calibration needs JACK-Client and a JACK server ({exc})") from None
    if repeats < 1:
        raise CalibrationError(f"repeats must be at least 1, got {repeats}")
    try:
        client = jack.Client(client_name, no_start_server=True, servername=servername)
    except jack.JackError:
        raise PortError("no JACK server is running: start one (e.g. `jackd -d dummy -r 48000 -p 256`, QjackCtl) "
                        "and connect a loopback from an output to an input") from None
    try:
        rate, blocksize = client.samplerate, client.blocksize
        targets = matching_ports(client, out_to, is_input=True)
        sources = [p for p in matching_ports(client, in_from, is_input=False) if not p.startswith(client.name + ":")]
        if not targets:
            raise PortError(f"no JACK input port matches {out_to!r}; input ports: "
                            f"{', '.join(matching_ports(client, '', is_input=True)) or 'none'}")
        if not sources:
            raise PortError(f"no JACK output port matches {in_from!r}; output ports: "
                            f"{', '.join(matching_ports(client, '', is_input=False)) or 'none'}")
        signal = probe_signal(int(signal_s * rate))
        silence = int(max_delay_s * rate)
        play = np.concatenate([np.zeros(blocksize * 4, dtype=np.float32), signal])
        recorder = _LoopRecorder(client, play, len(play) + silence)
        client.activate()
        for t in targets:
            client.connect(recorder.outport, t)
        for s in sources:
            client.connect(s, recorder.inport)
        time.sleep(0.1)  # let JACK settle the graph and the latencies
        delays = []
        for _ in range(repeats):
            recorder.recorded.fill(0.0)
            recorder.position = 0
            _wait_until(lambda: recorder.position >= len(recorder.recorded), timeout_s=2.0 + 2 * len(play) / rate)
            delays.append(find_delay(play, recorder.recorded))
        out_latency, _ = jack_port_latency(recorder.outport.name, servername)
        _, in_latency = jack_port_latency(recorder.inport.name, servername)
    finally:
        client.close()
    if max(delays) - min(delays) > 1:
        raise CalibrationError(f"the round trip is not stable ({delays} frames): something in the loop resamples "
                               "or drops audio; close other clients and try again")
    logger.info("round trip %s frames at %d Hz (JACK reports %d out, %d in)", delays, rate, out_latency, in_latency)
    return LoopMeasurement(tuple(delays), out_latency, in_latency, rate, blocksize, tuple(targets), tuple(sources))


def _wait_until(done: Callable[[], bool], timeout_s: float) -> None:
    """Poll until `done()` or raise CalibrationError after `timeout_s` (the JACK server stopped processing)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise CalibrationError("the JACK server stopped processing during the measurement; is it running?")
        time.sleep(0.01)
