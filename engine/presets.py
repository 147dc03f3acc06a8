"""Styles as data: load and validate `presets/*.toml` (schema 1) into frozen `Style` objects.

Errors name the file, the key and what is allowed, so a producer can fix a preset by hand.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import PresetError

log = logging.getLogger(__name__)

SCHEMA = 1
PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
FLOW_SYMBOLS = frozenset("xXR.")
FX_TYPES = frozenset(
    {"highpass", "lowpass", "peak", "compressor", "distortion", "chorus", "delay", "reverb", "gain", "pitch"}
)
CONTROL_KINDS = frozenset({"cc", "note", "program"})
GRID_STEPS = (8, 12, 16, 24, 32)  # steps per 4/4 bar that put every beat on a step: 8ths .. 32nds, and triplets
CONTROL_TARGETS = frozenset({"energy", "aggression", "density", "wet", "style"})
RHYME_SCHEMES = frozenset({"AABB", "ABAB", "AAAA", "ABBA"})


@dataclass(frozen=True)
class FlowSpec:
    """Per bar, which grid slots carry a syllable: `x` syllable, `X` stressed, `R` end rhyme, `.` rest.

    `slots_per_bar` is one of GRID_STEPS: 16 for sixteenths, 12 for eighth-note triplets, 32 for double time.
    """

    patterns: tuple[str, ...]
    slots_per_bar: int


@dataclass(frozen=True)
class BeatSpec:
    """The drum pattern the offline render synthesises for this style: one bar per instrument, each string as
    long as its own grid (one of GRID_STEPS: 16 for sixteenths, 24 for sixteenth triplets, ...)."""

    kick: str
    snare: str
    hat: str
    swing: float


@dataclass(frozen=True)
class VoiceSpec:
    """Voice backend and delivery."""

    backend: str
    length_scale: float
    pitch_semitones: float
    accent_db: float


@dataclass(frozen=True)
class FxSpec:
    """One effect of the chain: its type and parameters (pedalboard names)."""

    type: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ControlSpec:
    """A controller mapping: MIDI message kind and number to a parameter or a style."""

    kind: str
    number: int
    target: str
    value: str = ""


@dataclass(frozen=True)
class Style:
    """A validated style preset."""

    name: str
    display_name: str
    tempo_bpm: float
    tempo_range_bpm: tuple[float, float]
    flow: FlowSpec
    rhyme_scheme: str
    beat: BeatSpec
    voice: VoiceSpec
    fx: tuple[FxSpec, ...]
    controls: tuple[ControlSpec, ...]
    source: Path
    description: str = ""

    @property
    def syllables_per_bar(self) -> float:
        """Mean planned syllables per bar over the flow's patterns (the style's density)."""
        return sum(len(p) - p.count(".") for p in self.flow.patterns) / len(self.flow.patterns)


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise PresetError(f"{where}: missing key '{key}'")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise PresetError(f"{where}: key '{key}' must be {names}, got {value!r}")
    return value


def _ranged(table: dict[str, Any], key: str, low: float, high: float, where: str) -> float:
    value = float(_get(table, key, (int, float), where))
    if not low <= value <= high:
        raise PresetError(f"{where}: key '{key}' = {value} is outside the allowed range {low}..{high}")
    return value


def _pattern(text: str, length: int, symbols: frozenset[str], key: str, where: str) -> str:
    if len(text) != length or not set(text) <= symbols:
        allowed = "".join(sorted(symbols))
        raise PresetError(f"{where}: '{key}' must be {length} characters of '{allowed}', got {text!r}")
    return text


def _steps_text(steps: tuple[int, ...]) -> str:
    return ", ".join(str(n) for n in steps[:-1]) + f" or {steps[-1]}"


def _grid_steps(table: dict[str, Any], key: str, where: str) -> int:
    """A whole number of grid steps per bar, one of GRID_STEPS."""
    value = _get(table, key, int, where)
    if value not in GRID_STEPS:
        raise PresetError(f"{where}: key '{key}' = {value} is not allowed; use {_steps_text(GRID_STEPS)} (steps per "
                          "4/4 bar: 16 sixteenths, 12 eighth triplets, 24 sixteenth triplets, 32 double time)")
    return value


def _drum(table: dict[str, Any], key: str, where: str) -> str:
    """One instrument's bar: `x` hit, `.` rest, as many characters as its grid has steps (one of GRID_STEPS)."""
    text = _get(table, key, str, where)
    if len(text) not in GRID_STEPS or not set(text) <= frozenset("x."):
        raise PresetError(f"{where}: '{key}' must be {_steps_text(GRID_STEPS)} characters of '.x' (one bar; "
                          f"24 for triplet hats), got {text!r} ({len(text)} characters)")
    return text


def _tables(items: Any, key: str, noun: str, where: str) -> Iterator[tuple[int, dict[str, Any], str]]:
    """Each table of the array `[[key]]`, with its index and where it is (`file [[key]] #n`) for messages."""
    if not isinstance(items, list):
        raise PresetError(f"{where}: '{key}' must be an array of tables ([[{key}]])")
    for i, item in enumerate(items):
        item_where = f"{where} [[{key}]] #{i + 1}"
        if not isinstance(item, dict):
            raise PresetError(f"{item_where}: each {noun} must be a table")
        yield i, item, item_where


def _controls(items: Any, where: str) -> tuple[ControlSpec, ...]:
    """The `[[controls]]` tables: each MIDI source (kind and number) mapped once; style switches name a style."""
    controls: list[ControlSpec] = []
    seen: dict[tuple[str, int], int] = {}
    for i, item, c_where in _tables(items, "controls", "control", where):
        kind = _get(item, "kind", str, c_where)
        if kind not in CONTROL_KINDS:
            raise PresetError(f"{c_where}: 'kind' must be one of {sorted(CONTROL_KINDS)}, got {kind!r}")
        number = int(_ranged(item, "number", 0, 127, c_where))
        target = _get(item, "target", str, c_where)
        if target not in CONTROL_TARGETS:
            raise PresetError(f"{c_where}: 'target' must be one of {sorted(CONTROL_TARGETS)}, got {target!r}")
        value = item.get("value", "")
        if target == "style" and not (isinstance(value, str) and value):
            raise PresetError(f"{c_where}: a style switch needs key 'value' = the style's name, got {value!r}")
        if (kind, number) in seen:
            raise PresetError(f"{c_where}: key 'number' = {number}: {kind} {number} is already mapped by "
                              f"[[controls]] #{seen[kind, number]}; map each {kind} number once")
        seen[kind, number] = i + 1
        controls.append(ControlSpec(kind, number, target, str(value)))
    return tuple(controls)


def parse_style(data: dict[str, Any], source: Path) -> Style:
    """Validate a preset's parsed TOML; raise PresetError naming file and key on any fault."""
    where = str(source)
    if data.get("schema") != SCHEMA:
        raise PresetError(f"{where}: key 'schema' must be {SCHEMA}, got {data.get('schema')!r}")
    name = _get(data, "name", str, where)
    tempo = _ranged(data, "tempo_bpm", 20, 999, where)
    low, high = (_get(data, "tempo_range_bpm", list, where) + [None, None])[:2]
    if not all(isinstance(v, (int, float)) for v in (low, high)) or not 20 <= low <= tempo <= high <= 999:
        raise PresetError(f"{where}: 'tempo_range_bpm' must be [low, high] around tempo_bpm within 20..999")

    description = data.get("description", "")
    if not isinstance(description, str):
        raise PresetError(f"{where}: key 'description' must be str (one line on what the style sounds like), "
                          f"got {description!r}")
    flow_t = _get(data, "flow", dict, where)
    slots = _grid_steps(flow_t, "slots_per_bar", f"{where} [flow]")
    raw_patterns = _get(flow_t, "patterns", list, f"{where} [flow]")
    if not raw_patterns:
        raise PresetError(f"{where} [flow]: 'patterns' needs at least one bar")
    patterns = tuple(_pattern(p, slots, FLOW_SYMBOLS, "patterns", f"{where} [flow]") for p in raw_patterns)
    for p in patterns:
        if p.count("R") != 1 or not p.rstrip(".").endswith("R"):
            raise PresetError(f"{where} [flow]: each pattern needs exactly one 'R' as its last syllable, got {p!r}")
    scheme = _get(data, "rhyme_scheme", str, where)
    if scheme not in RHYME_SCHEMES:
        raise PresetError(f"{where}: 'rhyme_scheme' must be one of {sorted(RHYME_SCHEMES)}, got {scheme!r}")

    beat_t = _get(data, "beat", dict, where)
    beat = BeatSpec(
        kick=_drum(beat_t, "kick", f"{where} [beat]"),
        snare=_drum(beat_t, "snare", f"{where} [beat]"),
        hat=_drum(beat_t, "hat", f"{where} [beat]"),
        swing=_ranged(beat_t, "swing", 0.0, 0.5, f"{where} [beat]"),
    )

    voice_t = _get(data, "voice", dict, where)
    backend = _get(voice_t, "backend", str, f"{where} [voice]")
    if backend not in ("piper", "espeak"):
        raise PresetError(f"{where} [voice]: 'backend' must be 'piper' or 'espeak', got {backend!r}")
    voice = VoiceSpec(
        backend=backend,
        length_scale=_ranged(voice_t, "length_scale", 0.5, 2.0, f"{where} [voice]"),
        pitch_semitones=_ranged(voice_t, "pitch_semitones", -12, 12, f"{where} [voice]"),
        accent_db=_ranged(voice_t, "accent_db", 0, 12, f"{where} [voice]"),
    )

    fx = []
    for _, item, fx_where in _tables(data.get("fx", []), "fx", "effect", where):
        kind = _get(item, "type", str, fx_where)
        if kind not in FX_TYPES:
            raise PresetError(f"{fx_where}: 'type' must be one of {sorted(FX_TYPES)}, got {kind!r}")
        fx.append(FxSpec(kind, {k: v for k, v in item.items() if k != "type"}))

    controls = _controls(data.get("controls", []), where)

    return Style(
        name=name,
        display_name=str(data.get("display_name", name)),
        tempo_bpm=tempo,
        tempo_range_bpm=(float(low), float(high)),
        flow=FlowSpec(patterns, slots),
        rhyme_scheme=scheme,
        beat=beat,
        voice=voice,
        fx=tuple(fx),
        controls=controls,
        source=source,
        description=description,
    )


def load_style_file(path: Path) -> Style:
    """Read and validate one preset file."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise PresetError(f"{path}: no such preset file") from None
    except IsADirectoryError:
        raise PresetError(f"{path}: is a folder; name a preset file (.toml) in it") from None
    except OSError as exc:
        raise PresetError(f"{path}: cannot read the preset ({exc.strerror}); check the file's permissions") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PresetError(f"{path}: not valid TOML ({exc})") from None
    return parse_style(data, path)


def available_styles(presets_dir: Path = PRESETS_DIR) -> list[str]:
    """Names of the shipped styles (file stems of `presets/*.toml`)."""
    return sorted(p.stem for p in presets_dir.glob("*.toml"))


def load_style(name: str, presets_dir: Path = PRESETS_DIR) -> Style:
    """Load a style by name, or raise PresetError listing the styles there are."""
    path = presets_dir / f"{name}.toml"
    if not path.exists():
        raise PresetError(f"unknown style '{name}'; choose one of: {', '.join(available_styles(presets_dir))}")
    return load_style_file(path)


class StyleBook:
    """The styles a live set plays, read again from their files each time they are asked for (a preset edited
    mid-set takes effect on its next turn or switch), keeping the last good version of each: a file edited into
    nonsense leaves the previous preset in place, and `on_error(name, message)` is told once per broken version."""

    def __init__(self, presets_dir: Path = PRESETS_DIR,
                 on_error: Callable[[str, str], None] | None = None) -> None:
        self.presets_dir = presets_dir
        self.on_error = on_error
        self._good: dict[str, Style] = {}
        self._told: dict[str, str] = {}  # name -> the error message last told

    def get(self, name: str) -> Style:
        """The style `name` as its file says now, or its last good version (PresetError when there is none)."""
        try:
            style = load_style(name, self.presets_dir)
        except PresetError as exc:
            good = self._good.get(name)
            if good is None:
                raise
            message = f"{exc}; {name} plays as it was before the edit"
            if self._told.get(name) != message:
                self._told[name] = message
                log.error("%s", message)
                if self.on_error is not None:
                    self.on_error(name, message)
            return good
        self._good[name] = style
        self._told.pop(name, None)
        return style
