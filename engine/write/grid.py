"""Flow grids: per bar, the slots that carry syllables, which are stressed, and where the end rhyme falls."""

from __future__ import annotations

from dataclasses import dataclass

from engine.presets import FlowSpec
from engine.timebase import TICKS_PER_BAR


@dataclass(frozen=True)
class Slot:
    """One syllable position in a bar: `index` counts grid steps from the bar line."""

    index: int
    stressed: bool
    rhyme: bool


@dataclass(frozen=True)
class BarGrid:
    """The syllable slots of one bar of a flow."""

    bar: int
    slots_per_bar: int
    slots: tuple[Slot, ...]

    @property
    def budget(self) -> int:
        """Number of syllables this bar carries."""
        return len(self.slots)

    def slot_ticks(self, slot: Slot) -> int:
        """Ticks from the bar line to a slot."""
        return slot.index * TICKS_PER_BAR // self.slots_per_bar

    def onsets_ticks(self) -> list[int]:
        """Ticks from the bar line to every syllable slot, in order."""
        return [self.slot_ticks(s) for s in self.slots]


def parse_pattern(pattern: str) -> tuple[Slot, ...]:
    """`x` syllable, `X` stressed syllable, `R` stressed end rhyme, `.` rest."""
    return tuple(Slot(i, ch in "XR", ch == "R") for i, ch in enumerate(pattern) if ch != ".")


def flow_grid(flow: FlowSpec, bars: int) -> list[BarGrid]:
    """The grid for `bars` bars, cycling the style's patterns."""
    return [
        BarGrid(bar, flow.slots_per_bar, parse_pattern(flow.patterns[bar % len(flow.patterns)]))
        for bar in range(bars)
    ]
