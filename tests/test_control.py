"""Controller mapping: preset and user bindings, changes at the next bar line, MIDI learn, and a run over JACK."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from pathlib import Path

import mido
import pytest

from bridge.clock import ClockFollower
from bridge.clockgen import ClockSender
from bridge.control import (
    Binding,
    ControlMap,
    ControlMapError,
    ControlRouter,
    ParamChange,
    PendingChanges,
    StyleChange,
    default_user_map_path,
    load_user_map,
)
from bridge.midi import MidiEventSource, open_backend, open_output
from engine.events import ClockTick, ControlChange, MidiEvent, NoteOn, ProgramChange
from engine.presets import PRESETS_DIR, ControlSpec, available_styles, load_style
from engine.timebase import TICKS_PER_BAR
from engine.timeline import Timeline

BOOM_BAP = load_style("boom_bap")  # cc 21 energy, cc 22 wet, program 0 -> boom_bap


def write_presets(folder: Path) -> None:
    """The shipped styles plus double_time; boom_bap's preset maps Program Change 5 and Note 36 to double_time."""
    for shipped in PRESETS_DIR.glob("*.toml"):
        (folder / shipped.name).write_text(shipped.read_text())
    text = (PRESETS_DIR / "boom_bap.toml").read_text()
    extra = (
        '\n[[controls]]\nkind = "program"\nnumber = 5\ntarget = "style"\nvalue = "double_time"\n'
        '\n[[controls]]\nkind = "note"\nnumber = 36\ntarget = "style"\nvalue = "double_time"\n'
    )
    (folder / "boom_bap.toml").write_text(text + extra)
    (folder / "double_time.toml").write_text(text.replace('name = "boom_bap"', 'name = "double_time"'))


def wait_connected(output: mido.ports.BaseOutput, source: MidiEventSource, timeout_s: float = 2.0) -> None:
    """Send Tune Request (decoded as nothing) until it arrives: a fresh JACK connection drops early messages."""
    deadline_s = time.monotonic() + timeout_s
    while source.ignored == 0:
        assert time.monotonic() < deadline_s, f"{source.name} never received from {output.name}"
        output.send(mido.Message("tune_request"))
        time.sleep(0.02)


def test_preset_controls_translate_to_changes_on_any_channel() -> None:
    control_map = ControlMap.from_style(BOOM_BAP)
    assert control_map.translate(ControlChange(0, 21, 127, 1.0)) == ParamChange("energy", 1.0)
    assert control_map.translate(ControlChange(9, 22, 0, 1.0)) == ParamChange("wet", 0.0)
    assert control_map.translate(ProgramChange(3, 0, 1.0)) == StyleChange("boom_bap")
    assert control_map.translate(ControlChange(0, 23, 64, 1.0)) is None  # unmapped
    assert control_map.translate(ProgramChange(0, 9, 1.0)) is None
    assert control_map.translate(ClockTick(1.0)) is None
    assert control_map.translate("cc 21") is None
    assert control_map.translate(ControlChange(0, 21, 300, 1.0)) is None  # out of range: ignored


def test_style_buttons_switch_on_press_and_programs_set_levels(tmp_path: Path) -> None:
    write_presets(tmp_path)
    style = load_style("boom_bap", tmp_path)
    user = [Binding("program", 7, "density", "0.25", channel=2), Binding("cc", 64, "style", "double_time")]
    control_map = ControlMap.from_style(style, user, available_styles(tmp_path))
    assert control_map.translate(NoteOn(0, 36, 100, 1.0)) == StyleChange("double_time")
    assert control_map.translate(NoteOn(0, 36, 20, 1.0)) is None  # a soft touch is not a press
    assert control_map.translate(ControlChange(0, 64, 127, 1.0)) == StyleChange("double_time")
    assert control_map.translate(ControlChange(0, 64, 0, 1.0)) is None  # button released
    assert control_map.translate(ProgramChange(2, 7, 1.0)) == ParamChange("density", 0.25)
    assert control_map.translate(ProgramChange(1, 7, 1.0)) is None  # that binding is channel 3 only


def test_bad_bindings_name_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ControlMapError, match="user control #1.*one of boom_bap, .*got .double_time."):
        ControlMap.from_style(BOOM_BAP, [Binding("cc", 1, "style", "double_time")], available_styles())
    styled = dataclasses.replace(BOOM_BAP, controls=(ControlSpec("program", 3, "energy"),))
    with pytest.raises(ControlMapError, match=r"boom_bap.toml \[\[controls\]\] #1.*number 0..1"):
        ControlMap.from_style(styled)
    with pytest.raises(ControlMapError, match="channel"):
        ControlMap.from_style(BOOM_BAP, [Binding("cc", 1, "wet", channel=16)])


def test_pending_changes_wait_for_the_bar_line_and_the_latest_wins() -> None:
    pending = PendingChanges()
    assert pending.release() == ()
    for value in (0.1, 0.5, 0.9):
        pending.add(ParamChange("energy", value))
    pending.add(ParamChange("wet", 0.3))
    pending.add(StyleChange("trap"))
    pending.add(StyleChange("boom_bap"))
    assert len(pending) == 3
    assert pending.release() == (StyleChange("boom_bap"), ParamChange("energy", 0.9), ParamChange("wet", 0.3))
    assert pending.release() == () and len(pending) == 0


def test_user_map_path_follows_xdg_then_home(tmp_path: Path) -> None:
    assert default_user_map_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "cypher" / "controls.toml"
    assert default_user_map_path({"HOME": str(tmp_path)}) == tmp_path / ".config" / "cypher" / "controls.toml"


def test_midi_learn_saves_the_mapping_and_it_survives_a_restart(tmp_path: Path) -> None:
    write_presets(tmp_path)
    style = load_style("boom_bap", tmp_path)
    styles = available_styles(tmp_path)
    path = tmp_path / "config" / "cypher" / "controls.toml"
    router = ControlRouter(style, path, known_styles=styles)
    assert router.handle(ControlChange(1, 30, 100, 1.0)) is None  # unmapped, nothing armed

    router.arm("aggression")
    assert router.armed is not None
    assert router.handle(ClockTick(1.1)) is None and router.armed is not None  # clocks do not end learn
    assert router.handle(ControlChange(1, 30, 100, 1.2)) is None  # learnt, not applied
    assert router.armed is None and path.exists()
    assert router.handle(ControlChange(1, 30, 127, 1.3)) == ParamChange("aggression", 1.0)

    router.arm("density")  # re-learn CC 21 (the preset's energy) as density: the user's binding wins
    router.handle(ControlChange(0, 21, 10, 1.4))
    router.arm("style", "double_time")
    router.handle(ProgramChange(4, 9, 1.5))
    assert router.bar_line() == (ParamChange("aggression", 1.0),)

    restarted = ControlRouter(style, path, known_styles=styles)
    assert restarted.handle(ControlChange(1, 30, 0, 2.0)) == ParamChange("aggression", 0.0)
    assert restarted.handle(ControlChange(0, 21, 127, 2.1)) == ParamChange("density", 1.0)
    assert restarted.handle(ProgramChange(4, 9, 2.2)) == StyleChange("double_time")
    assert restarted.handle(ControlChange(0, 22, 127, 2.3)) == ParamChange("wet", 1.0)  # preset still there
    assert restarted.bar_line() == (StyleChange("double_time"), ParamChange("aggression", 0.0),
                                    ParamChange("density", 1.0), ParamChange("wet", 1.0))
    assert len(load_user_map(path, styles)) == 3


def test_midi_learn_refuses_unknown_targets(tmp_path: Path) -> None:
    router = ControlRouter(BOOM_BAP, tmp_path / "controls.toml", known_styles=available_styles())
    with pytest.raises(ControlMapError, match="choose one of"):
        router.arm("volume")
    with pytest.raises(ControlMapError, match="one of boom_bap"):
        router.arm("style", "polka")
    assert router.armed is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schema = [", "not.*|cannot read"),
        ("schema = 2", "'schema' must be 1"),
        ('schema = 1\ncontrols = "cc"', "array of tables"),
        ('schema = 1\n[[controls]]\nkind = "cc"\nnumber = 200\ntarget = "wet"', "'number' must be"),
        ('schema = 1\n[[controls]]\nkind = "cc"\nnumber = 2\ntarget = "wet"\nknob = 1', "unknown keys"),
        ('schema = 1\n[[controls]]\nkind = "sysex"\nnumber = 2\ntarget = "wet"', "'kind' must be"),
    ],
)
def test_a_broken_user_map_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "controls.toml"
    path.write_text(text)
    with pytest.raises(ControlMapError, match=message) as info:
        ControlRouter(BOOM_BAP, path)
    assert str(path) in str(info.value)


@pytest.mark.jack
def test_a_preset_control_switches_the_style_on_the_next_bar_line_over_jack(
    jack_server: None, tmp_path: Path
) -> None:
    write_presets(tmp_path)
    router = ControlRouter(load_style("boom_bap", tmp_path), tmp_path / "controls.toml",
                           known_styles=available_styles(tmp_path))
    backend = open_backend("jack")
    events: queue.Queue[MidiEvent] = queue.Queue()
    follower = ClockFollower()
    arrivals: list[tuple[int, float]] = []  # (position_ticks, time_s) when a control arrived
    switches: list[tuple[int, float, StyleChange]] = []
    bars: list[int] = []

    def on_control(event: object) -> None:
        arrivals.append((follower.position_ticks, getattr(event, "time_s")))
        router.handle(event)

    def on_bar(bar: int, time_s: float) -> None:
        bars.append(bar)
        switches.extend((bar, time_s, c) for c in router.bar_line() if isinstance(c, StyleChange))

    timeline = Timeline(events, follower, on_bar, on_control)
    done = threading.Event()
    daw = open_output(backend, "cypher-ctl-daw", virtual=True)
    pad = open_output(backend, "cypher-ctl-pad", virtual=True)
    try:
        with MidiEventSource(backend, "cypher-ctl-daw", events) as clock_in, \
                MidiEventSource(backend, "cypher-ctl-pad", events) as pad_in:
            wait_connected(daw, clock_in)
            wait_connected(pad, pad_in)
            runner = threading.Thread(target=timeline.run, args=(done, 0.01))
            runner.start()
            sender = ClockSender(daw, 200.0, jitter_rms_s=0.001, seed=1, max_clocks=3 * 96 + 1)
            sender.start()
            while sender.sent_clocks < 96 + 40:  # bar 2, beat 2 (zero-based bar 1)
                time.sleep(0.005)
            pad.send(mido.Message("control_change", control=99, value=127))  # unmapped
            pad.send(mido.Message("program_change", channel=5, program=5))
            assert sender.wait(timeout_s=10.0)
            deadline = time.monotonic() + 2.0  # JACK MIDI delivers the last clocks a period or more later
            while follower.clocks + follower.ignored < 3 * 96 + 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            done.set()
            runner.join()
            sender.stop()
    finally:
        daw.close()
        pad.close()
    assert len(arrivals) == 2
    position_ticks, arrived_s = arrivals[1]
    bar_of_control = position_ticks // TICKS_PER_BAR
    assert bar_of_control == 1 and position_ticks % TICKS_PER_BAR != 0
    assert (follower.clocks, follower.ignored) == (3 * 96 + 1, 0)
    assert bars == [0, 1, 2, 3]
    assert switches == [(2, switches[0][1], StyleChange("double_time"))]
    assert switches[0][1] > arrived_s
