"""The verse plan and filled lines: what the planner decides and what a filler returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from engine.write.grid import BarGrid, Slot


@dataclass(frozen=True)
class LinePlan:
    """One bar of the answer: its syllable slots, the rhyme it must land and the opponent's words to take up."""

    bar: int
    grid: BarGrid
    rhyme_label: str
    rhyme_words: tuple[str, ...]
    answer_words: tuple[str, ...]
    callback: str = ""  # an answer word taken from an earlier round, "" when none

    @property
    def budget(self) -> int:
        """Planned syllables in this line."""
        return self.grid.budget

    @property
    def stresses(self) -> tuple[int, ...]:
        """Per planned syllable, 1 where the grid puts a stress."""
        return tuple(int(s.stressed) for s in self.grid.slots)


@dataclass(frozen=True)
class VersePlan:
    """A whole answer: one line per bar, plus what was heard that it answers."""

    style: str
    lines: tuple[LinePlan, ...]
    opponent_lines: tuple[str, ...]
    opponent_words: tuple[str, ...]


@dataclass(frozen=True)
class FilledLine:
    """Words for one planned line, with each word's syllable count and the slot each syllable lands on."""

    plan: LinePlan
    words: tuple[str, ...]
    syllables: tuple[int, ...]
    slots: tuple[Slot, ...] = field(default=())

    @property
    def text(self) -> str:
        """The line as text."""
        return " ".join(self.words)

    @property
    def syllable_count(self) -> int:
        """Total syllables in the line."""
        return sum(self.syllables)


@dataclass
class FillContext:
    """What a filler may look at: the opponent's verse, our lines so far, and lines used in earlier turns."""

    opponent_lines: tuple[str, ...]
    previous: list[FilledLine] = field(default_factory=list)
    used_lines: set[str] = field(default_factory=set)
    seed: int = 0


class Filler(Protocol):
    """Fills one planned line with words. `fill_line` returns a line whose syllables are within one of the budget
    and whose last word rhymes with the plan's rhyme words wherever the filler can manage it."""

    name: str

    def fill_line(self, line: LinePlan, context: FillContext) -> FilledLine:
        """Words for one line of the plan."""
        ...
