"""A style's `[[fx]]` tables as a pedalboard chain, and applying it to a mono line.

Parameters use pedalboard's own names (`cutoff_frequency_hz`, `threshold_db`, `room_size`, ...). A delay may
give `note` ("1/4", "1/8", "1/8d", "1/16", "1/8t", ...) instead of `delay_seconds`, set from the tempo.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.errors import BackendMissingError, PresetError
from engine.presets import FxSpec

logger = logging.getLogger(__name__)

FX_CLASSES = {
    "highpass": "HighpassFilter",
    "lowpass": "LowpassFilter",
    "peak": "PeakFilter",
    "compressor": "Compressor",
    "distortion": "Distortion",
    "chorus": "Chorus",
    "delay": "Delay",
    "reverb": "Reverb",
    "gain": "Gain",
    "pitch": "PitchShift",
}
NOTE_PATTERN = re.compile(r"^1/(1|2|4|8|16|32)([dt]?)$")
TAIL_FLOOR = 1e-4  # -80 dBFS: trailing output below this is cut
MAX_TAIL_S = 6.0


def note_seconds(note: str, tempo_bpm: float) -> float:
    """Length of a note value ("1/8", dotted "1/8d", triplet "1/8t") at `tempo_bpm`, a quarter note = one beat."""
    match = NOTE_PATTERN.match(note.strip())
    if match is None:
        raise PresetError(f"delay note {note!r} is not a note value: use 1/4, 1/8, 1/8d, 1/16, 1/8t and so on")
    if tempo_bpm <= 0:
        raise PresetError(f"tempo_bpm must be positive to set a delay from a note, got {tempo_bpm}")
    beats = 4.0 / int(match.group(1)) * {"": 1.0, "d": 1.5, "t": 2.0 / 3.0}[match.group(2)]
    return beats * 60.0 / tempo_bpm


def _pedalboard() -> Any:
    """The pedalboard module, or BackendMissingError saying how to install it."""
    try:
        import pedalboard
    except ImportError:
        raise BackendMissingError("effects need pedalboard: pip install pedalboard (or make setup)") from None
    return pedalboard


def _parameters(plugin: Any) -> list[str]:
    """The settable parameters of a pedalboard plugin (its properties, less the read-only flags)."""
    cls = type(plugin)
    return sorted(k for k in dir(cls) if not k.startswith("_") and isinstance(getattr(cls, k, None), property)
                  and k not in ("is_effect", "is_instrument"))


def build_effect(spec: FxSpec, tempo_bpm: float, where: str = "") -> Any:
    """One pedalboard plugin from one `[[fx]]` table; PresetError names the effect and the key at fault."""
    pedalboard = _pedalboard()
    label = f"{where}effect '{spec.type}'"
    if spec.type not in FX_CLASSES:
        raise PresetError(f"{label}: unknown effect type; choose one of {sorted(FX_CLASSES)}")
    plugin = getattr(pedalboard, FX_CLASSES[spec.type])()
    allowed = _parameters(plugin)
    params = dict(spec.params)
    if "note" in params:
        if spec.type != "delay":
            raise PresetError(f"{label}: key 'note' only applies to a delay; allowed keys: {', '.join(allowed)}")
        if "delay_seconds" in params:
            raise PresetError(f"{label}: give either 'note' or 'delay_seconds', not both")
        note = params.pop("note")
        if not isinstance(note, str):
            raise PresetError(f"{label}: key 'note' must be a string like \"1/8\", got {note!r}")
        try:
            params["delay_seconds"] = note_seconds(note, tempo_bpm)
        except PresetError as exc:
            raise PresetError(f"{label}: {exc}") from None
    for key, value in params.items():
        if key not in allowed:
            extra = ", note" if spec.type == "delay" else ""
            raise PresetError(f"{label}: unknown key '{key}'; allowed keys: {', '.join(allowed)}{extra}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PresetError(f"{label}: key '{key}' must be a number, got {value!r}")
        try:
            setattr(plugin, key, value)
        except (ValueError, TypeError) as exc:
            raise PresetError(f"{label}: key '{key}' = {value!r} is not accepted ({exc})") from None
    return plugin


def build_chain(fx: Sequence[FxSpec], tempo_bpm: float, sample_rate: int) -> Any:
    """A `pedalboard.Pedalboard` running the style's effects in order (tempo sets any delay `note`)."""
    pedalboard = _pedalboard()
    if sample_rate <= 0:
        raise PresetError(f"sample_rate must be positive, got {sample_rate}")
    plugins = [build_effect(spec, tempo_bpm, where=f"[[fx]] #{i + 1} ") for i, spec in enumerate(fx)]
    logger.debug("built fx chain at %.1f BPM: %s", tempo_bpm, [type(p).__name__ for p in plugins])
    return pedalboard.Pedalboard(plugins)


def tail_seconds(chain: Any) -> float:
    """How long the chain may ring after its input stops (delays and reverbs), capped at MAX_TAIL_S."""
    pedalboard = _pedalboard()
    tail = 0.0
    for plugin in chain:
        if isinstance(plugin, pedalboard.Delay) and plugin.mix > 0:
            repeats = math.log(TAIL_FLOOR) / math.log(plugin.feedback) if 0 < plugin.feedback < 1 else 1.0
            tail += plugin.delay_seconds * (1.0 + (repeats if plugin.feedback < 1 else MAX_TAIL_S))
        elif isinstance(plugin, pedalboard.Reverb) and plugin.wet_level > 0:
            tail += MAX_TAIL_S if plugin.freeze_mode >= 0.5 else 0.5 + 2.5 * plugin.room_size
        elif isinstance(plugin, pedalboard.Chorus):
            tail += plugin.centre_delay_ms / 1000.0 + 0.05
    return min(tail, MAX_TAIL_S)


def apply_chain(chain: Any, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Run mono float audio through the chain; float32 mono out, at least as long as the input, plus the tail
    that rings above -80 dBFS."""
    mono = np.asarray(audio, dtype=np.float32).reshape(-1)
    tail = int(round(tail_seconds(chain) * sample_rate))
    padded = np.concatenate([mono, np.zeros(tail, dtype=np.float32)])
    out = np.asarray(chain(padded[None, :], sample_rate), dtype=np.float32)[0]
    loud = np.nonzero(np.abs(out[len(mono):]) >= TAIL_FLOOR)[0]
    end = len(mono) + (int(loud[-1]) + 1 if loud.size else 0)
    return out[:end].astype(np.float32)
