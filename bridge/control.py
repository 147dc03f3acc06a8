"""Controller mapping: MIDI Control Change, Note and Program Change to style switches and parameters.

Pure at its core: `ControlMap` turns a decoded MIDI event into a frozen change (`ParamChange` for energy,
aggression, density and wet, `StyleChange` for a style switch) from the preset's `[[controls]]` and the user's
map file; `PendingChanges` holds them until the timeline announces the next bar line. `ControlRouter` adds
MIDI learn: `arm(target)` from any thread (OSC, a CLI flag), and the next control moved becomes the mapping,
saved to the user's map file (TOML, `$XDG_CONFIG_HOME/cypher/controls.toml` or `~/.config/cypher/controls.toml`),
which is read back on the next start.

Mappings match any MIDI channel unless they name one. CC and Note values scale to 0..1 (value / 127); a CC or
Note mapped to a style switches on a value of 64 or more (a button press); a Program Change mapped to a parameter
sets the mapping's `value` (a number 0..1).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.errors import CypherError
from engine.events import ControlChange, NoteOn, ProgramChange
from engine.presets import CONTROL_KINDS, CONTROL_TARGETS, ControlSpec, Style

logger = logging.getLogger(__name__)

PARAM_TARGETS = frozenset(CONTROL_TARGETS - {"style"})
MIDI_MAX = 127
BUTTON_ON = 64
USER_MAP_SCHEMA = 1


class ControlMapError(CypherError):
    """A controller mapping or the user's map file is malformed."""


@dataclass(frozen=True)
class ParamChange:
    """Set a performance parameter (energy, aggression, density, wet) to a value in 0..1."""

    name: str
    value: float


@dataclass(frozen=True)
class StyleChange:
    """Switch to the named style."""

    name: str


Change = ParamChange | StyleChange


@dataclass(frozen=True)
class Binding:
    """One mapping: a MIDI kind (cc, note, program) and number, on a channel (None: any), to a target."""

    kind: str
    number: int
    target: str
    value: str = ""
    channel: int | None = None

    def matches(self, kind: str, channel: int, number: int) -> bool:
        """True when a message of this kind, channel and number is this binding's."""
        return self.kind == kind and self.number == number and self.channel in (None, channel)


def check_binding(binding: Binding, where: str, known_styles: Iterable[str] | None = None) -> Binding:
    """The binding if valid, else ControlMapError naming `where`, the key and what is allowed."""
    if binding.kind not in CONTROL_KINDS:
        raise ControlMapError(f"{where}: 'kind' must be one of {sorted(CONTROL_KINDS)}, got {binding.kind!r}")
    if isinstance(binding.number, bool) or not isinstance(binding.number, int) or not 0 <= binding.number <= MIDI_MAX:
        raise ControlMapError(f"{where}: 'number' must be a whole number 0..127, got {binding.number!r}")
    if binding.channel is not None and (
        isinstance(binding.channel, bool) or not isinstance(binding.channel, int) or not 0 <= binding.channel <= 15
    ):
        raise ControlMapError(f"{where}: 'channel' must be 0..15 (or left out for any), got {binding.channel!r}")
    if binding.target not in CONTROL_TARGETS:
        raise ControlMapError(f"{where}: 'target' must be one of {sorted(CONTROL_TARGETS)}, got {binding.target!r}")
    if binding.target == "style":
        styles = None if known_styles is None else sorted(known_styles)
        if not binding.value or (styles is not None and binding.value not in styles):
            choices = f"one of {', '.join(styles)}" if styles is not None else "a style name"
            raise ControlMapError(f"{where}: a style control needs 'value' = {choices}, got {binding.value!r}")
    elif binding.kind == "program":
        level = _level(binding.value)
        if level is None:
            raise ControlMapError(
                f"{where}: a program change mapped to {binding.target!r} needs 'value' = a number 0..1, "
                f"got {binding.value!r}"
            )
    return binding


def _level(text: str) -> float | None:
    try:
        level = float(text)
    except ValueError:
        return None
    return level if math.isfinite(level) and 0.0 <= level <= 1.0 else None


def _source_of(event: object) -> tuple[str, int, int, int] | None:
    """(kind, channel, number, value) of a control event, or None for anything else."""
    if isinstance(event, ControlChange):
        return "cc", event.channel, event.control, event.value
    if isinstance(event, NoteOn):
        return "note", event.channel, event.note, event.velocity
    if isinstance(event, ProgramChange):
        return "program", event.channel, event.program, MIDI_MAX
    return None


class ControlMap:
    """Bindings in priority order (the user's first, then the preset's); `translate` applies the first match."""

    def __init__(self, bindings: Iterable[Binding]) -> None:
        self.bindings: tuple[Binding, ...] = tuple(bindings)

    @classmethod
    def from_style(
        cls, style: Style, user: Iterable[Binding] = (), known_styles: Iterable[str] | None = None
    ) -> ControlMap:
        """The user's bindings, then the preset's `[[controls]]` (all checked; errors name the preset file)."""
        styles = None if known_styles is None else tuple(known_styles)
        users = [check_binding(binding, f"user control #{i + 1}", styles) for i, binding in enumerate(user)]
        preset = [
            check_binding(binding_of_spec(spec), f"{style.source} [[controls]] #{i + 1}", styles)
            for i, spec in enumerate(style.controls)
        ]
        return cls([*users, *preset])

    def translate(self, event: object) -> Change | None:
        """The change a control event asks for, or None (unmapped, not a control, a style button released)."""
        source = _source_of(event)
        if source is None:
            return None
        kind, channel, number, value = source
        if not (0 <= value <= MIDI_MAX and 0 <= number <= MIDI_MAX):
            return None
        for binding in self.bindings:
            if binding.matches(kind, channel, number):
                return _change(binding, value)
        return None


def _change(binding: Binding, value: int) -> Change | None:
    if binding.target == "style":
        return StyleChange(binding.value) if value >= BUTTON_ON else None
    if binding.kind == "program":
        level = _level(binding.value)
        return None if level is None else ParamChange(binding.target, level)
    return ParamChange(binding.target, value / MIDI_MAX)


def binding_of_spec(spec: ControlSpec) -> Binding:
    """A preset's ControlSpec as a binding on any channel."""
    return Binding(spec.kind, spec.number, spec.target, spec.value)


class PendingChanges:
    """Changes waiting for the next bar line: the latest per parameter, and the latest style, win."""

    def __init__(self) -> None:
        self._params: dict[str, float] = {}
        self._style: str | None = None

    def add(self, change: Change) -> None:
        """Queue a change for the next bar line."""
        if isinstance(change, StyleChange):
            self._style = change.name
        else:
            self._params.pop(change.name, None)
            self._params[change.name] = change.value

    def __len__(self) -> int:
        return len(self._params) + (self._style is not None)

    def release(self) -> tuple[Change, ...]:
        """At a bar line: the queued changes (style first, then parameters in arrival order), now cleared."""
        changes: list[Change] = [] if self._style is None else [StyleChange(self._style)]
        changes.extend(ParamChange(name, value) for name, value in self._params.items())
        self._params.clear()
        self._style = None
        return tuple(changes)


# ----- the user's map file -----------------------------------------------------------------------------------
def default_user_map_path(environ: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CONFIG_HOME/cypher/controls.toml`, else `~/.config/cypher/controls.toml`."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "cypher" / "controls.toml"


def load_user_map(path: Path, known_styles: Iterable[str] | None = None) -> tuple[Binding, ...]:
    """The bindings saved in the user's map file; none when it does not exist."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return ()
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ControlMapError(f"{path}: cannot read the controller map ({err}); fix or delete the file") from None
    if data.get("schema") != USER_MAP_SCHEMA:
        raise ControlMapError(f"{path}: key 'schema' must be {USER_MAP_SCHEMA}, got {data.get('schema')!r}")
    items = data.get("controls", [])
    if not isinstance(items, list):
        raise ControlMapError(f"{path}: 'controls' must be an array of tables ([[controls]])")
    styles = None if known_styles is None else tuple(known_styles)
    bindings = []
    for i, item in enumerate(items):
        where = f"{path} [[controls]] #{i + 1}"
        if not isinstance(item, dict):
            raise ControlMapError(f"{where}: each control must be a table")
        unknown = set(item) - {"kind", "number", "target", "value", "channel"}
        if unknown:
            raise ControlMapError(f"{where}: unknown keys {sorted(unknown)}; allowed: kind, number, target, value, channel")
        binding = Binding(
            kind=item.get("kind", ""), number=item.get("number", -1), target=item.get("target", ""),
            value=str(item.get("value", "")), channel=item.get("channel"),
        )
        bindings.append(check_binding(binding, where, styles))
    return tuple(bindings)


def _toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in escaped) + '"'


def render_user_map(bindings: Iterable[Binding]) -> str:
    """The TOML text of a user map file."""
    lines = ["# Cypher controller map, written by MIDI learn. Edit freely; it is read on start.",
             f"schema = {USER_MAP_SCHEMA}"]
    for binding in bindings:
        lines += ["", "[[controls]]", f"kind = {_toml_string(binding.kind)}", f"number = {binding.number}"]
        if binding.channel is not None:
            lines.append(f"channel = {binding.channel}")
        lines.append(f"target = {_toml_string(binding.target)}")
        if binding.value:
            lines.append(f"value = {_toml_string(binding.value)}")
    return "\n".join(lines) + "\n"


def save_user_map(path: Path, bindings: Iterable[Binding]) -> None:
    """Write the user's map file atomically (a temporary file, then a rename)."""
    text = render_user_map(bindings)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".controls-", suffix=".toml",
                                         delete=False, encoding="utf-8") as handle:
            handle.write(text)
        os.replace(handle.name, path)
    except OSError as err:
        raise ControlMapError(f"cannot save the controller map to {path} ({err}); check that the folder is writable") from None


# ----- MIDI learn ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Armed:
    """What MIDI learn will bind the next control to."""

    target: str
    value: str = ""


class ControlRouter:
    """Control events in, changes queued for the next bar line out; MIDI learn writes the user's map file.

    `handle` runs on the timeline's thread; `arm`/`disarm` may come from any thread (a lock guards them).
    """

    def __init__(
        self, style: Style, user_map_path: Path, *, known_styles: Iterable[str] | None = None
    ) -> None:
        self._style = style
        self._path = user_map_path
        self._known_styles = None if known_styles is None else tuple(known_styles)
        self._user = list(load_user_map(user_map_path, self._known_styles))
        self._map = ControlMap.from_style(style, self._user, self._known_styles)
        self._armed: Armed | None = None
        self._lock = threading.Lock()
        self.pending = PendingChanges()
        self.last_learned: Binding | None = None

    @property
    def control_map(self) -> ControlMap:
        """The bindings in force."""
        return self._map

    @property
    def armed(self) -> Armed | None:
        """The learn target waiting for a control, if any."""
        with self._lock:
            return self._armed

    def arm(self, target: str, value: str = "") -> None:
        """Bind the next control moved to `target` (for "style", `value` names the style; for a program
        change on a parameter, the level 0..1 it sets)."""
        if target not in CONTROL_TARGETS:
            raise ControlMapError(f"cannot learn {target!r}: choose one of {sorted(CONTROL_TARGETS)}")
        if target == "style":
            check_binding(Binding("cc", 0, target, value), f"MIDI learn for {target!r}", self._known_styles)
        with self._lock:
            self._armed = Armed(target, value)
        logger.info("MIDI learn armed for %s%s: move a control", target, f" = {value}" if value else "")

    def disarm(self) -> None:
        """Cancel MIDI learn."""
        with self._lock:
            self._armed = None

    def handle(self, event: object) -> Change | None:
        """Learn from the event if armed, else queue its change for the next bar line; returns that change."""
        with self._lock:
            armed, self._armed = self._armed, None
        if armed is not None and self._learn(armed, event):
            return None
        change = self._map.translate(event)
        if change is not None:
            self.pending.add(change)
        return change

    def use_style(self, style: Style) -> None:
        """Switch to another style's preset controls (the user's bindings stay first)."""
        self._style = style
        self._map = ControlMap.from_style(style, self._user, self._known_styles)

    def bar_line(self) -> tuple[Change, ...]:
        """Called at each bar line: the changes that take effect now."""
        return self.pending.release()

    def _learn(self, armed: Armed, event: object) -> bool:
        source = _source_of(event)
        if source is None:
            with self._lock:  # not a control: stay armed unless re-armed meanwhile
                if self._armed is None:
                    self._armed = armed
            return False
        kind, channel, number, _ = source
        value = armed.value
        if kind == "program" and armed.target != "style" and _level(value) is None:
            value = "1.0"
        binding = check_binding(Binding(kind, number, armed.target, value, channel), "MIDI learn",
                                self._known_styles)
        same_source = (binding.kind, binding.channel, binding.number)
        kept = [b for b in self._user if (b.kind, b.channel, b.number) != same_source
                and (b.target, b.value) != (binding.target, binding.value)]
        self._user = [binding, *kept]
        save_user_map(self._path, self._user)
        self._map = ControlMap.from_style(self._style, self._user, self._known_styles)
        self.last_learned = binding
        logger.info("MIDI learn: %s %d on channel %d -> %s, saved to %s", kind, number, channel + 1,
                    armed.target, self._path)
        return True
