"""Benchmark the MIDI clock follower against the exponential-average-of-1/Δt baseline.

In-process (always): tempi 60-200 BPM, Gaussian timestamp jitter 0/1/3 ms RMS plus rare ±10 ms outliers
(each clock with probability 0.002). Rows, for the line-fit follower and the EMA baseline from the same ticks:
  tempo error one bar after Start (2σ = 2 × RMS over seeds, BPM), with the Cramér–Rao bound for one bar;
  beat-phase error (RMS, ms): each beat, the next beat's time predicted one beat ahead vs its ideal time;
  settle (ms, median): after a ±10 BPM step, until the tempo stays within 0.1 BPM;
  drift (ms) after 10 simulated minutes: the predicted next bar line vs its ideal time.
Through real JACK MIDI ports (when a JACK server runs or can be started): a subset, real time.

  python scripts/bench_clock.py            full run (about 2-3 minutes on 2 cores)
  python scripts/bench_clock.py --quick    fewer seeds, 2 simulated minutes, one JACK tempo
  python scripts/bench_clock.py --json     JSON records instead of tables
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import mido
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.clock import ClockFollower, EmaFollower, clock_period_s  # noqa: E402
from bridge.clockgen import ClockSender  # noqa: E402
from bridge.midi import MidiEventSource, jack_running, open_backend, open_output  # noqa: E402
from engine.events import ClockTick, TransportStart  # noqa: E402
from engine.timebase import TICKS_PER_MIDI_CLOCK  # noqa: E402

TEMPI_BPM = (60.0, 90.0, 120.0, 140.0, 174.0, 200.0)
JITTERS_MS = (0.0, 1.0, 3.0)
OUTLIER_PROBABILITY = 0.002
OUTLIER_S = 0.010
BAR_CLOCKS = 96
BEAT_CLOCKS = 24
STEP_BPM = 10.0
SETTLE_BPM = 0.1
START_S = 1000.0
FOLLOWERS = ("line fit", "EMA 1/Δt")
METRICS = {
    "tempo_2sigma_bpm": "tempo 2σ, 1 bar (BPM)",
    "phase_rms_ms": "phase RMS (ms)",
    "settle_ms": "settle ±10 BPM (ms)",
    "drift_ms": "drift {minutes} min (ms)",
}


@dataclass(frozen=True)
class Record:
    """One measured figure."""

    source: str
    tempo_bpm: float
    jitter_ms: float
    follower: str
    metric: str
    value: float


def observed_times_s(ideal_s: np.ndarray, jitter_ms: float, rng: np.random.Generator) -> np.ndarray:
    """Ideal tick times plus Gaussian jitter and rare ±10 ms outliers, in arrival order.

    MIDI is a serial stream: a message is never received before the one sent ahead of it, so a late
    clock holds back the ones behind it (receive times never decrease).
    """
    noise = rng.normal(0.0, jitter_ms / 1000.0, ideal_s.size) if jitter_ms > 0 else np.zeros(ideal_s.size)
    outliers = rng.random(ideal_s.size) < OUTLIER_PROBABILITY
    noise[outliers] += rng.choice([-OUTLIER_S, OUTLIER_S], int(outliers.sum()))
    return np.maximum.accumulate(ideal_s + noise)


def ideal_times_s(periods_s: np.ndarray) -> np.ndarray:
    """Tick times from START_S for a sequence of clock periods (one fewer than ticks)."""
    return START_S + np.concatenate([[0.0], np.cumsum(periods_s)])


class Ema:
    """The baseline with the phase estimate common followers use: the last tick plus clocks × averaged period."""

    def __init__(self) -> None:
        self.follower = EmaFollower()
        self.last_index = -1
        self.last_time_s = 0.0

    def feed(self, index: int, time_s: float) -> None:
        self.follower.feed(ClockTick(time_s))
        self.last_index, self.last_time_s = index, time_s

    @property
    def tempo_bpm(self) -> float | None:
        return self.follower.tempo_bpm

    def predict_clock_s(self, index: int) -> float:
        tempo = self.follower.tempo_bpm
        assert tempo is not None
        return self.last_time_s + (index - self.last_index) * clock_period_s(tempo)


class Line:
    """The line-fit follower, started with MIDI Start."""

    def __init__(self) -> None:
        self.follower = ClockFollower()
        self.follower.feed(TransportStart(START_S - 0.005))

    def feed(self, index: int, time_s: float) -> None:
        self.follower.feed(ClockTick(time_s))

    @property
    def tempo_bpm(self) -> float | None:
        return self.follower.tempo_bpm

    def predict_clock_s(self, index: int) -> float:
        return self.follower.predict_time_s(index * TICKS_PER_MIDI_CLOCK)


Follower = Line | Ema
MAKERS: dict[str, Callable[[], Follower]] = {"line fit": Line, "EMA 1/Δt": Ema}


def tempo_error_2sigma(tempo_bpm: float, jitter_ms: float, seeds: int, name: str) -> float:
    errors = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        times_s = observed_times_s(ideal_times_s(np.full(BAR_CLOCKS, clock_period_s(tempo_bpm))), jitter_ms, rng)
        follower = MAKERS[name]()
        for index, time_s in enumerate(times_s):
            follower.feed(index, float(time_s))
        assert follower.tempo_bpm is not None
        errors.append(follower.tempo_bpm - tempo_bpm)
    return 2.0 * float(np.sqrt(np.mean(np.square(errors))))


def phase_rms_ms(tempo_bpm: float, jitter_ms: float, seeds: int, name: str, bars: int = 8) -> float:
    errors = []
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        ideal_s = ideal_times_s(np.full(bars * BAR_CLOCKS, clock_period_s(tempo_bpm)))
        times_s = observed_times_s(ideal_s, jitter_ms, rng)
        follower = MAKERS[name]()
        for index, time_s in enumerate(times_s[: -BEAT_CLOCKS]):
            follower.feed(index, float(time_s))
            if index >= BAR_CLOCKS and index % BEAT_CLOCKS == 0:
                target = index + BEAT_CLOCKS
                errors.append(follower.predict_clock_s(target) - ideal_s[target])
    return 1000.0 * float(np.sqrt(np.mean(np.square(errors))))


def settle_ms(tempo_bpm: float, jitter_ms: float, seeds: int, name: str, bars: int = 4) -> float:
    times_to_settle = []
    for seed in range(seeds):
        rng = np.random.default_rng(2000 + seed)
        new_bpm = tempo_bpm + (STEP_BPM if seed % 2 == 0 else -STEP_BPM)
        periods_s = np.concatenate([np.full(bars * BAR_CLOCKS, clock_period_s(tempo_bpm)),
                                    np.full(bars * BAR_CLOCKS, clock_period_s(new_bpm))])
        ideal_s = ideal_times_s(periods_s)
        times_s = observed_times_s(ideal_s, jitter_ms, rng)
        step = bars * BAR_CLOCKS
        follower = MAKERS[name]()
        last_bad_s = ideal_s[step]
        for index, time_s in enumerate(times_s):
            follower.feed(index, float(time_s))
            tempo = follower.tempo_bpm
            if index >= step and (tempo is None or abs(tempo - new_bpm) > SETTLE_BPM):
                last_bad_s = ideal_s[min(index + 1, ideal_s.size - 1)]
        settled = last_bad_s < ideal_s[-1]
        times_to_settle.append(1000.0 * (last_bad_s - ideal_s[step]) if settled else math.inf)
    return float(np.median(times_to_settle))


def drift_ms(tempo_bpm: float, jitter_ms: float, minutes: float, name: str) -> float:
    clocks = int(minutes * 60.0 * tempo_bpm * BEAT_CLOCKS / 60.0)
    rng = np.random.default_rng(3000)
    ideal_s = ideal_times_s(np.full(clocks + BAR_CLOCKS, clock_period_s(tempo_bpm)))
    times_s = observed_times_s(ideal_s[:clocks], jitter_ms, rng)
    follower = MAKERS[name]()
    for index, time_s in enumerate(times_s):
        follower.feed(index, float(time_s))
    if isinstance(follower, Line) and follower.follower.position_ticks != (clocks - 1) * TICKS_PER_MIDI_CLOCK:
        return math.inf  # lost or invented clocks: the bar count itself drifted
    target = (clocks // BAR_CLOCKS + 1) * BAR_CLOCKS
    return 1000.0 * abs(follower.predict_clock_s(target) - ideal_s[target])


def cramer_rao_2sigma(tempo_bpm: float, jitter_ms: float, clocks: int = BAR_CLOCKS + 1) -> float:
    """Best 2σ tempo error any unbiased estimator reaches from `clocks` ticks of Gaussian jitter."""
    slope_rms_s = jitter_ms / 1000.0 / math.sqrt(clocks * (clocks**2 - 1) / 12)
    return 2.0 * tempo_bpm * slope_rms_s / clock_period_s(tempo_bpm)


def run_in_process(quick: bool, minutes: float) -> list[Record]:
    seeds_tempo, seeds_phase, seeds_settle = (30, 4, 4) if quick else (100, 10, 10)
    records = []
    for jitter_ms in JITTERS_MS:
        for tempo_bpm in TEMPI_BPM:
            for name in FOLLOWERS:
                figures = {
                    "tempo_2sigma_bpm": tempo_error_2sigma(tempo_bpm, jitter_ms, seeds_tempo, name),
                    "phase_rms_ms": phase_rms_ms(tempo_bpm, jitter_ms, seeds_phase, name),
                    "settle_ms": settle_ms(tempo_bpm, jitter_ms, seeds_settle, name),
                    "drift_ms": drift_ms(tempo_bpm, jitter_ms, minutes, name),
                }
                records += [Record("in-process", tempo_bpm, jitter_ms, name, k, v) for k, v in figures.items()]
            records.append(Record("in-process", tempo_bpm, jitter_ms, "Cramér–Rao bound", "tempo_2sigma_bpm",
                                  cramer_rao_2sigma(tempo_bpm, jitter_ms)))
    return records


# ----- through JACK ---------------------------------------------------------------------------------------------
@contextmanager
def jack_server() -> Iterator[bool]:
    """True while a JACK server runs: the one already up, or a dummy-driver jackd started (and stopped) here."""
    if jack_running():
        yield True
        return
    if shutil.which("jackd") is None:
        yield False
        return
    process = subprocess.Popen(["jackd", "-d", "dummy", "-r", "48000", "-p", "256"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        subprocess.run(["jack_wait", "-w", "-t", "10"], capture_output=True, timeout=15)
        yield jack_running()
    finally:
        process.terminate()
        process.wait(timeout=5)


def jack_run(tempo_bpm: float, jitter_ms: float, seed: int) -> dict[str, dict[str, float]]:
    """Two bars of clock through a real JACK MIDI port; tempo error after one bar and phase error per follower."""
    backend = open_backend("jack")
    events: queue.Queue = queue.Queue()
    clocks = 2 * BAR_CLOCKS + 1
    name = f"cypher-bench-{seed}"
    output = open_output(backend, name, virtual=True)
    received_s: list[float] = []
    try:
        with MidiEventSource(backend, name, events) as source:
            probe_deadline_s = time.monotonic() + 2.0
            while source.ignored == 0 and time.monotonic() < probe_deadline_s:  # connection settled
                output.send(mido.Message("tune_request"))
                time.sleep(0.02)
            sender = ClockSender(output, tempo_bpm, jitter_rms_s=jitter_ms / 1000.0, seed=seed, max_clocks=clocks)
            sender.start()
            sender.wait(timeout_s=30.0)
            deadline_s = time.monotonic() + 1.0
            while len(received_s) < clocks and time.monotonic() < deadline_s:
                try:
                    event = events.get(timeout=0.05)
                except queue.Empty:
                    continue
                if isinstance(event, ClockTick):
                    received_s.append(event.time_s)
            sender.stop()
    finally:
        output.close()
    ideal_s = np.array([sender.ideal_time_s(n) for n in range(clocks)])
    latency_s = float(np.median(np.array(received_s) - np.array(sender.sent_times_s[: len(received_s)])))
    out: dict[str, dict[str, float]] = {}
    for follower_name in FOLLOWERS:
        follower = MAKERS[follower_name]()
        phase = []
        tempo_error = math.nan
        for index, time_s in enumerate(received_s):
            follower.feed(index, time_s)
            if index == BAR_CLOCKS:
                tempo_error = (follower.tempo_bpm or math.nan) - tempo_bpm
            if index >= BAR_CLOCKS and index % BEAT_CLOCKS == 0 and index + BEAT_CLOCKS < clocks:
                phase.append(follower.predict_clock_s(index + BEAT_CLOCKS) - latency_s - ideal_s[index + BEAT_CLOCKS])
        out[follower_name] = {"tempo_error_bpm": tempo_error, "phase_ms": 1000.0 * float(np.sqrt(np.mean(np.square(phase)))),
                              "latency_ms": 1000.0 * latency_s, "received": float(len(received_s))}
    return out


def run_jack(quick: bool) -> list[Record]:
    tempi, repeats = ((174.0,), 2) if quick else ((90.0, 174.0), 3)
    records: list[Record] = []
    with jack_server() as running:
        if not running:
            return records
        for tempo_bpm in tempi:
            runs = [jack_run(tempo_bpm, 1.0, seed) for seed in range(repeats)]
            for name in FOLLOWERS:
                errors = [r[name]["tempo_error_bpm"] for r in runs]
                phases = [r[name]["phase_ms"] for r in runs]
                records += [
                    Record("JACK", tempo_bpm, 1.0, name, "tempo_2sigma_bpm", 2.0 * float(np.sqrt(np.mean(np.square(errors))))),
                    Record("JACK", tempo_bpm, 1.0, name, "phase_rms_ms", float(np.sqrt(np.mean(np.square(phases))))),
                ]
            records.append(Record("JACK", tempo_bpm, 1.0, "transport", "latency_ms",
                                  float(np.median([r[FOLLOWERS[0]]["latency_ms"] for r in runs]))))
    return records


# ----- report ---------------------------------------------------------------------------------------------------
def fmt(value: float) -> str:
    if math.isinf(value):
        return "never"
    return f"{value:.4f}" if value < 0.1 else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def print_tables(console: Console, records: list[Record], minutes: float, seconds: float) -> None:
    for source in ("in-process", "JACK"):
        for jitter_ms in JITTERS_MS:
            subset = [r for r in records if r.source == source and r.jitter_ms == jitter_ms]
            if not subset:
                continue
            tempi = sorted({r.tempo_bpm for r in subset})
            title = f"{source}: {jitter_ms:g} ms RMS jitter" + (" + rare ±10 ms outliers" if source != "JACK" else
                                                                  " at the sender, plus JACK's own")
            table = Table(title=title, caption="tempo 2σ: error one bar after Start; phase: next beat predicted "
                          "one beat ahead; settle: median time to stay within 0.1 BPM; drift: next bar line")
            table.add_column("row")
            table.add_column("follower")
            for tempo in tempi:
                table.add_column(f"{tempo:g} BPM", justify="right")
            rows = sorted({(r.metric, r.follower) for r in subset},
                          key=lambda k: (list(METRICS).index(k[0]) if k[0] in METRICS else 9, k[1] != "line fit"))
            for metric, follower in rows:
                label = METRICS.get(metric, "latency, median (ms)").format(minutes=f"{minutes:g}")
                cells = []
                for tempo in tempi:
                    hit = [r.value for r in subset if (r.metric, r.follower, r.tempo_bpm) == (metric, follower, tempo)]
                    cells.append(fmt(hit[0]) if hit else "")
                table.add_row(label, follower, *cells)
            console.print(table)
    console.print(verdicts(records), highlight=False)
    console.print(f"measured in {seconds:.0f} s", style="dim")


def verdicts(records: list[Record]) -> str:
    """The issue's done-when figures at 1 ms jitter, in-process."""
    def values(metric: str, follower: str) -> dict[float, float]:
        return {r.tempo_bpm: r.value for r in records
                if (r.source, r.jitter_ms, r.metric, r.follower) == ("in-process", 1.0, metric, follower)}

    tempo, phase, settle = (values(m, "line fit") for m in ("tempo_2sigma_bpm", "phase_rms_ms", "settle_ms"))
    bound = values("tempo_2sigma_bpm", "Cramér–Rao bound")
    beat_ms = {t: 60_000.0 / t for t in settle}
    worse = sorted({(r.source, r.jitter_ms, r.tempo_bpm, r.metric) for r in records if r.follower == "line fit"
                    for b in records if (b.follower == "EMA 1/Δt" and (b.source, b.jitter_ms, b.tempo_bpm, b.metric)
                                         == (r.source, r.jitter_ms, r.tempo_bpm, r.metric) and not r.value < b.value
                                         and not r.value == b.value == 0.0)})
    lines = [
        "at 1 ms jitter (in-process):",
        f"  tempo 2σ ≤ 0.05 BPM: {'all tempi' if all(v <= 0.05 for v in tempo.values()) else 'not at ' + ', '.join(f'{t:g} BPM ({fmt(v)}; bound {fmt(bound[t])})' for t, v in tempo.items() if v > 0.05)}",
        f"  phase ≤ 1 ms RMS: {'all tempi' if all(v <= 1.0 for v in phase.values()) else 'not at ' + ', '.join(f'{t:g}' for t, v in phase.items() if v > 1.0)}",
        f"  settle within one beat: {'all tempi' if all(settle[t] <= beat_ms[t] for t in settle) else 'not at ' + ', '.join(f'{t:g} BPM ({fmt(settle[t])} ms > {beat_ms[t]:.0f} ms)' for t in settle if settle[t] > beat_ms[t])}",
        f"  line fit better than EMA (or both exactly 0): {'every row' if not worse else 'not on ' + '; '.join(f'{s} {j:g} ms {t:g} BPM {m}' for s, j, t, m in worse)}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer seeds and 2 simulated minutes")
    parser.add_argument("--json", action="store_true", help="print JSON records instead of tables")
    parser.add_argument("--no-jack", action="store_true", help="skip the runs through JACK MIDI ports")
    args = parser.parse_args(argv)
    minutes = 2.0 if args.quick else 10.0
    started_s = time.perf_counter()
    records = run_in_process(args.quick, minutes)
    if not args.no_jack:
        records += run_jack(args.quick)
    seconds = time.perf_counter() - started_s
    if args.json:
        print(json.dumps({"drift_minutes": minutes, "seconds": round(seconds, 1),
                          "records": [{**asdict(r), "value": r.value if math.isfinite(r.value) else None}
                                      for r in records]}))
    else:
        print_tables(Console(), records, minutes, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
