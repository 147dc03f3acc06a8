"""Styles as data: load and validate `presets/*.toml` (schema 1) into frozen `Style` objects.

Errors name the file, the key and what is allowed, so a producer can fix a preset by hand.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import PresetError

SCHEMA = 1
PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
FLOW_SYMBOLS = frozenset("xXR.")
FX_TYPES = frozenset(
    {"highpass", "lowpass", "peak", "compressor", "distortion", "chorus", "delay", "reverb", "gain", "pitch"}
)
CONTROL_KINDS = frozenset({"cc", "note", "program"})
CONTROL_TARGETS = frozenset({"energy", "aggression", "density", "wet", "style"})
RHYME_SCHEMES = frozenset({"AABB", "ABAB", "AAAA", "ABBA"})


@dataclass(frozen=True)
class FlowSpec:
    """Per bar, which sixteenth slots carry a syllable: `x` syllable, `X` stressed, `R` end rhyme, `.` rest."""

    patterns: tuple[str, ...]
    slots_per_bar: int


@dataclass(frozen=True)
class BeatSpec:
    """The drum pattern the offline render synthesises for this style (one bar of sixteenths each)."""

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

    flow_t = _get(data, "flow", dict, where)
    slots = int(_ranged(flow_t, "slots_per_bar", 8, 24, f"{where} [flow]"))
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
    drum = frozenset("x.")
    beat = BeatSpec(
        kick=_pattern(_get(beat_t, "kick", str, f"{where} [beat]"), 16, drum, "kick", f"{where} [beat]"),
        snare=_pattern(_get(beat_t, "snare", str, f"{where} [beat]"), 16, drum, "snare", f"{where} [beat]"),
        hat=_pattern(_get(beat_t, "hat", str, f"{where} [beat]"), 16, drum, "hat", f"{where} [beat]"),
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
    for i, item in enumerate(data.get("fx", [])):
        fx_where = f"{where} [[fx]] #{i + 1}"
        if not isinstance(item, dict):
            raise PresetError(f"{fx_where}: each effect must be a table")
        kind = _get(item, "type", str, fx_where)
        if kind not in FX_TYPES:
            raise PresetError(f"{fx_where}: 'type' must be one of {sorted(FX_TYPES)}, got {kind!r}")
        fx.append(FxSpec(kind, {k: v for k, v in item.items() if k != "type"}))

    controls = []
    for i, item in enumerate(data.get("controls", [])):
        c_where = f"{where} [[controls]] #{i + 1}"
        if not isinstance(item, dict):
            raise PresetError(f"{c_where}: each control must be a table")
        kind = _get(item, "kind", str, c_where)
        if kind not in CONTROL_KINDS:
            raise PresetError(f"{c_where}: 'kind' must be one of {sorted(CONTROL_KINDS)}, got {kind!r}")
        number = int(_ranged(item, "number", 0, 127, c_where))
        target = _get(item, "target", str, c_where)
        if target not in CONTROL_TARGETS:
            raise PresetError(f"{c_where}: 'target' must be one of {sorted(CONTROL_TARGETS)}, got {target!r}")
        controls.append(ControlSpec(kind, number, target, str(item.get("value", ""))))

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
        controls=tuple(controls),
        source=source,
    )


def load_style_file(path: Path) -> Style:
    """Read and validate one preset file."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise PresetError(f"{path}: no such preset file") from None
    except tomllib.TOMLDecodeError as exc:
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
