"""Integer musical time: ticks at a fine internal PPQN, conversions to samples and seconds.

MIDI clock runs at 24 pulses per quarter note; the engine counts 960, so one MIDI clock is 40 ticks.
Everything here is pure arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

MIDI_PPQN = 24
PPQN = 960
TICKS_PER_MIDI_CLOCK = PPQN // MIDI_PPQN
BEATS_PER_BAR = 4
TICKS_PER_BAR = PPQN * BEATS_PER_BAR
TICKS_PER_SIXTEENTH = PPQN // 4
MIDI_CLOCKS_PER_SIXTEENTH = MIDI_PPQN // 4


@dataclass(frozen=True)
class Position:
    """A musical position: zero-based bar, zero-based beat in the bar, ticks into the beat."""

    bar: int
    beat: int
    tick: int

    def __str__(self) -> str:
        return f"{self.bar + 1}.{self.beat + 1}.{self.tick:03d}"


def position_of(position_ticks: int) -> Position:
    """Split an absolute tick count into bar, beat and tick."""
    bar, rest = divmod(position_ticks, TICKS_PER_BAR)
    beat, tick = divmod(rest, PPQN)
    return Position(bar, beat, tick)


def seconds_per_tick(tempo_bpm: float) -> float:
    """Duration of one internal tick at a tempo."""
    return 60.0 / (tempo_bpm * PPQN)


def ticks_to_seconds(ticks: int, tempo_bpm: float) -> float:
    """Seconds spanned by a number of ticks at a constant tempo."""
    return ticks * seconds_per_tick(tempo_bpm)


def ticks_to_samples(ticks: int, tempo_bpm: float, sample_rate: int) -> int:
    """Samples spanned by a number of ticks at a constant tempo, rounded to the nearest sample."""
    return round(ticks * 60.0 * sample_rate / (tempo_bpm * PPQN))


def samples_to_ticks(samples: int, tempo_bpm: float, sample_rate: int) -> int:
    """Ticks spanned by a number of samples at a constant tempo, rounded to the nearest tick."""
    return round(samples * tempo_bpm * PPQN / (60.0 * sample_rate))


def bar_samples(tempo_bpm: float, sample_rate: int) -> int:
    """Samples in one 4/4 bar."""
    return ticks_to_samples(TICKS_PER_BAR, tempo_bpm, sample_rate)


def song_position_to_ticks(sixteenths: int) -> int:
    """A MIDI Song Position Pointer (in sixteenth notes) as internal ticks."""
    return sixteenths * TICKS_PER_SIXTEENTH
