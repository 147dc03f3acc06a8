"""The performer's knobs and how they shape a style for the next verse (pure).

The panel and the controllers set energy, aggression, density and wet (0..1, `bridge.addresses.PARAMS`). A turn
takes a snapshot of them when it starts (`Knobs.of`), and `shape_style` turns the preset into the style that turn
plays: at the defaults the preset is played as written.

- density: how many of the flow grid's slots carry syllables. Below 0.5 unstressed syllables on the weakest
  grid positions become rests (at 0, half of them); above 0.5 rests between syllables on the strongest positions
  take syllables (at 1, half of them). Stresses, the end rhyme and the breath after it are kept.
- energy: accents (the stressed syllables' lift) and pitch rise with it, and the delivery gets tighter.
- aggression: the saturation and compression harden, and each line takes up more of the opponent's words
  (`answer_words`: 1 at 0, 2 at the default, 3 at 1).
- wet: how much of the style's delays and reverbs is heard (1 as the preset says, 0 dry).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from engine.errors import CypherError
from engine.presets import FlowSpec, FxSpec, Style, VoiceSpec

NEUTRAL = 0.5
ENERGY_ACCENT_DB = 6.0  # accent change from energy 0.5 to 1 (and back to 0, never below 0 dB)
ENERGY_PITCH_SEMITONES = 1.5  # pitch change from energy 0.5 to 1
ENERGY_TIGHTEN = 0.15  # length_scale shrinks by this share at energy 1 (grows at 0)
AGGRESSION_DRIVE_DB = 8.0  # saturation drive change from aggression 0.5 to 1
AGGRESSION_RATIO = 0.6  # compressor ratio grows by this share at aggression 1 (shrinks at 0)
DENSITY_SHARE = 0.5  # at density 0 (1) this share of the candidate slots is emptied (filled)
WET_TYPES = frozenset({"delay", "reverb", "chorus"})
WET_KEYS = ("mix", "wet_level")


class KnobError(CypherError):
    """A knob value outside 0..1."""


@dataclass(frozen=True)
class Knobs:
    """A snapshot of the performance knobs, each 0..1; the defaults play the preset as written."""

    energy: float = NEUTRAL
    aggression: float = NEUTRAL
    density: float = NEUTRAL
    wet: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0.0 <= value <= 1.0:
                raise KnobError(f"{f.name} must be within 0..1, got {value}")

    @classmethod
    def of(cls, params: Mapping[str, float]) -> Knobs:
        """The knobs among the engine's parameters (others, such as temperature, are the filler's)."""
        return cls(**{f.name: float(params[f.name]) for f in fields(cls) if f.name in params})

    @property
    def answer_words(self) -> int:
        """How many of the opponent's words a line takes up: 1, 2 (default) or 3."""
        return 1 + round(2 * self.aggression)


def _strength(index: int, slots_per_bar: int) -> int:
    """Metrical strength of a grid step: 3 on the beat, 2 on the half beat, 1 on a quarter beat, 0 between."""
    per_beat = slots_per_bar // 4
    pos = index % per_beat
    if pos == 0:
        return 3
    if per_beat % 2 == 0 and pos == per_beat // 2:
        return 2
    if per_beat % 4 == 0 and pos % (per_beat // 4) == 0:
        return 1
    return 0


def shape_pattern(pattern: str, slots_per_bar: int, density: float) -> str:
    """One bar's flow pattern at `density` (0.5: unchanged)."""
    cells = list(pattern)
    if density < NEUTRAL:
        candidates = [i for i, c in enumerate(cells) if c == "x"]
        count = int(len(candidates) * DENSITY_SHARE * (NEUTRAL - density) / NEUTRAL + 0.5)
        candidates.sort(key=lambda i: (_strength(i, slots_per_bar), -i))  # weakest first, later first
        for i in candidates[:count]:
            cells[i] = "."
    elif density > NEUTRAL:
        last_syllable = max((i for i, c in enumerate(cells) if c != "."), default=-1)
        first_syllable = min((i for i, c in enumerate(cells) if c != "."), default=0)
        candidates = [i for i in range(first_syllable, last_syllable) if cells[i] == "."]
        count = int(len(candidates) * DENSITY_SHARE * (density - NEUTRAL) / NEUTRAL + 0.5)
        candidates.sort(key=lambda i: (-_strength(i, slots_per_bar), i))  # strongest first, earlier first
        for i in candidates[:count]:
            cells[i] = "x"
    return "".join(cells)


def _shape_flow(flow: FlowSpec, density: float) -> FlowSpec:
    return replace(flow, patterns=tuple(shape_pattern(p, flow.slots_per_bar, density) for p in flow.patterns))


def _shape_voice(voice: VoiceSpec, energy: float) -> VoiceSpec:
    lift = (energy - NEUTRAL) / NEUTRAL  # -1 .. 1
    return replace(
        voice,
        accent_db=max(0.0, voice.accent_db + lift * ENERGY_ACCENT_DB),
        pitch_semitones=voice.pitch_semitones + lift * ENERGY_PITCH_SEMITONES,
        length_scale=voice.length_scale * (1.0 - lift * ENERGY_TIGHTEN),
    )


def _shape_fx(spec: FxSpec, knobs: Knobs) -> FxSpec:
    params = dict(spec.params)
    push = (knobs.aggression - NEUTRAL) / NEUTRAL  # -1 .. 1
    if spec.type == "distortion" and "drive_db" in params:
        params["drive_db"] = max(0.0, float(params["drive_db"]) + push * AGGRESSION_DRIVE_DB)
    elif spec.type == "compressor" and "ratio" in params:
        params["ratio"] = max(1.0, float(params["ratio"]) * (1.0 + push * AGGRESSION_RATIO))
    elif spec.type in WET_TYPES:
        for key in WET_KEYS:
            if key in params:
                params[key] = float(params[key]) * knobs.wet
    return replace(spec, params=params)


def shape_style(style: Style, knobs: Knobs) -> Style:
    """`style` as the knobs play it: flow density, voice energy, effect hardness and wetness."""
    if knobs == Knobs():
        return style
    return replace(
        style,
        flow=_shape_flow(style.flow, knobs.density),
        voice=_shape_voice(style.voice, knobs.energy),
        fx=tuple(_shape_fx(spec, knobs) for spec in style.fx),
    )
