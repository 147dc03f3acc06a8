"""Events that adapters put on the timeline's queue: frozen, timestamped in seconds of the
receiving host's monotonic clock (`time_s`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClockTick:
    """One MIDI timing clock (24 per quarter note)."""

    time_s: float


@dataclass(frozen=True)
class TransportStart:
    """MIDI Start: play from the top; the next clock is position 0."""

    time_s: float


@dataclass(frozen=True)
class TransportStop:
    """MIDI Stop."""

    time_s: float


@dataclass(frozen=True)
class TransportContinue:
    """MIDI Continue: resume from the current song position."""

    time_s: float


@dataclass(frozen=True)
class SongPosition:
    """MIDI Song Position Pointer, in sixteenth notes from the top."""

    sixteenths: int
    time_s: float


@dataclass(frozen=True)
class ControlChange:
    """A MIDI Control Change (channel 0-15)."""

    channel: int
    control: int
    value: int
    time_s: float


@dataclass(frozen=True)
class NoteOn:
    """A MIDI Note On with velocity > 0."""

    channel: int
    note: int
    velocity: int
    time_s: float


@dataclass(frozen=True)
class ProgramChange:
    """A MIDI Program Change."""

    channel: int
    program: int
    time_s: float


ClockEvent = ClockTick | TransportStart | TransportStop | TransportContinue | SongPosition
ControlEvent = ControlChange | NoteOn | ProgramChange
MidiEvent = ClockEvent | ControlEvent
