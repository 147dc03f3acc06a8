"""What was said in earlier rounds of a battle: our lines (never said twice) and the opponent's (for callbacks).

Bounded, so a whole set does not grow it: the last `KEPT_LINES` of ours and the opponent's lines of the last
`KEPT_ROUNDS` rounds.
"""

from __future__ import annotations

from collections import OrderedDict, deque

KEPT_LINES = 512
KEPT_ROUNDS = 8


class BattleMemory:
    """Our lines across turns and the opponent's lines per turn."""

    def __init__(self, kept_lines: int = KEPT_LINES, kept_rounds: int = KEPT_ROUNDS) -> None:
        self._said: deque[str] = deque(maxlen=kept_lines)
        self._heard: OrderedDict[int, tuple[str, ...]] = OrderedDict()
        self._kept_rounds = kept_rounds

    def hear(self, turn: int, lines: tuple[str, ...]) -> None:
        """The opponent's lines of `turn` as heard so far (a later call for the same turn replaces them)."""
        self._heard[turn] = tuple(lines)
        self._heard.move_to_end(turn)
        while len(self._heard) > self._kept_rounds:
            self._heard.popitem(last=False)

    def say(self, text: str) -> None:
        """One of our lines, now said."""
        self._said.append(text)

    def said(self) -> set[str]:
        """Our lines kept from every turn."""
        return set(self._said)

    def heard_before(self, turn: int) -> tuple[str, ...]:
        """The opponent's lines of the rounds before `turn`, the latest round first."""
        return tuple(line for t, lines in reversed(self._heard.items()) if t < turn for line in lines)
