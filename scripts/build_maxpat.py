"""Build max_for_live/Cypher.maxpat (Max patcher JSON) from the address map, so the device cannot drift from it.

Every control sends through [typing object] → [prepend <address>] → [udpsend]; every reply comes in through
[udpreceive] → [route <addresses>] → [unpack <types>] and on to its display. Addresses, argument types,
parameter names, ranges and defaults all come from bridge/addresses.py; the styles from presets/*.toml.

Usage: python scripts/build_maxpat.py [--check] [--engine-port N] [--panel-port N]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.addresses import (  # noqa: E402
    BY_PATH,
    LEARN_TARGETS,
    PARAMS,
    Address,
    outbound,
)
from bridge.osc import DEFAULT_ENGINE_PORT, DEFAULT_PANEL_PORT  # noqa: E402
from engine.presets import available_styles  # noqa: E402

PATCH = ROOT / "max_for_live" / "Cypher.maxpat"
TYPING = {"i": "t i", "f": "t f", "s": "tosymbol"}
"""The object that fixes what a control sends to the type the map wants, just before [prepend <address>]."""
OUTLET_TYPES = {"f": "float", "i": "int", "s": ""}
UNIT_STYLE = {"%": 5, "ms": 2, "": 1}
"""Live's parameter unit styles: 1 Float, 2 Time (ms), 5 Percent (the dial runs 0-100, the wire 0-1)."""
MAX_ROWS = int(BY_PATH["/cypher/verse/line"].args[1].high or 0) + 1
"""Verse rows: one per line a verse can have, and row 0 left as a margin."""
PRESENT_Y = {"/cypher/status/clock": 2, "/cypher/status/turn": 16, "/cypher/sync/drift": 118,
             "/cypher/latency/stages": 134, "/cypher/error": 150}
"""The replies shown as text on the device face (right column), and where."""

# Inlets, outlets and outlet types of the fixed-shape Max objects used here.
SHAPES: dict[str, tuple[int, int, list[str]]] = {
    "udpsend": (1, 0, []),
    "udpreceive": (1, 1, [""]),
    "prepend": (1, 1, [""]),
    "t i": (1, 1, ["int"]),
    "t f": (1, 1, ["float"]),
    "t b": (1, 1, ["bang"]),
    "t l l": (1, 2, ["", ""]),
    "tosymbol": (1, 1, [""]),
    "symbol": (2, 1, [""]),
    "/ 100.": (2, 1, ["float"]),
    "* 100.": (2, 1, ["float"]),
    "sel 1": (2, 2, ["bang", ""]),
    "plugin~": (2, 2, ["signal", "signal"]),
    "plugout~": (2, 0, []),
    "live.thisdevice": (1, 3, ["bang", "int", "int"]),
}
UI_SHAPES: dict[str, tuple[int, int, list[str]]] = {
    "message": (2, 1, [""]),
    "comment": (1, 0, []),
    "flonum": (1, 2, ["", "bang"]),
    "number": (1, 2, ["", "bang"]),
    "textedit": (1, 4, ["", "int", "", ""]),
    "jit.cellblock": (2, 4, ["list", "", "", ""]),
    "live.dial": (1, 2, ["", "float"]),
    "live.numbox": (1, 2, ["", "float"]),
    "live.toggle": (1, 1, [""]),
    "live.tab": (1, 3, ["", "", "float"]),
    "live.menu": (1, 3, ["", "", "float"]),
    "live.text": (1, 2, ["", ""]),
}


def shape(text: str) -> tuple[int, int, list[str]]:
    """Inlets, outlets and outlet types of a [newobj] from its text."""
    head = text.split(" ")[0]
    if head == "route":
        count = len(text.split()) - 1
        return 2, count + 1, [""] * (count + 1)
    if head == "unpack":
        types = text.split()[1:]
        return 1, len(types), [OUTLET_TYPES[t] for t in types]
    key = text if text in SHAPES else head
    return SHAPES[key]


@dataclass
class Patch:
    """Boxes and patch lines of one patcher, with ids obj-1, obj-2, ..."""

    boxes: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)

    def add(self, maxclass: str, rect: tuple[float, float, float, float], content: str | None = None,
            present: tuple[float, float, float, float] | None = None, **attrs: Any) -> str:
        """Add a box (`content` is an object's or message's text) and return its id."""
        box_id = f"obj-{len(self.boxes) + 1}"
        inlets, outlets, types = shape(content or "") if maxclass == "newobj" else UI_SHAPES[maxclass]
        box: dict[str, Any] = {"id": box_id, "maxclass": maxclass, "numinlets": inlets, "numoutlets": outlets}
        if types:
            box["outlettype"] = types
        box["patching_rect"] = list(rect)
        if present is not None:
            box["presentation"] = 1
            box["presentation_rect"] = list(present)
        if content is not None:
            box["text"] = content
        box.update(attrs)
        self.boxes.append({"box": box})
        return box_id

    def obj(self, text: str, x: float, y: float, width: float = 0.0) -> str:
        """Add an object box."""
        return self.add("newobj", (x, y, width or max(30.0, 7.0 * len(text) + 10), 22.0), text)

    def connect(self, source: str, outlet: int, destination: str, inlet: int = 0) -> None:
        """Add a patch line."""
        self.lines.append({"patchline": {"destination": [destination, inlet], "source": [source, outlet]}})

    def comment(self, text: str, x: float, y: float, present: tuple[float, float] | None = None) -> str:
        """Add a label."""
        width = 7.0 * len(text) + 10
        where = (present[0], present[1], width, 18.0) if present else None
        return self.add("comment", (x, y, width, 20.0), text, where)


def parameter(longname: str, shortname: str, kind: int, **values: Any) -> dict[str, Any]:
    """A Live parameter's saved attributes (kind 0 float, 1 int, 2 enum)."""
    valueof = {"parameter_longname": longname, "parameter_shortname": shortname, "parameter_type": kind}
    valueof.update(values)
    return {"parameter_enable": 1, "saved_attribute_attributes": {"valueof": valueof}, "varname": longname}


def sender(patch: Patch, udpsend: str, path: str, source: str, outlet: int, x: float, y: float) -> None:
    """source → [typing] → [prepend path] → [udpsend]: the wire carries exactly the map's argument type."""
    address = BY_PATH[path]
    typing = patch.obj(TYPING[address.typetags], x, y)
    prepend = patch.obj(f"prepend {path}", x, y + 30)
    patch.connect(source, outlet, typing)
    patch.connect(typing, 0, prepend)
    patch.connect(prepend, 0, udpsend)


def trigger(patch: Patch, udpsend: str, path: str, source: str, x: float, y: float) -> None:
    """source (a button) → [t b] → [path( → [udpsend]: a command without arguments."""
    assert not BY_PATH[path].args, path
    bang = patch.obj("t b", x, y)
    message = patch.add("message", (x, y + 30, 7.0 * len(path) + 10, 22.0), path)
    patch.connect(source, 0, bang)
    patch.connect(bang, 0, message)
    patch.connect(message, 0, udpsend)


def button(patch: Patch, name: str, label: str, rect: tuple[float, float], present: tuple[float, float]) -> str:
    """A momentary live.text button, mappable in Live."""
    return patch.add("live.text", (rect[0], rect[1], 44.0, 15.0), None, (present[0], present[1], 44.0, 15.0),
                     mode=0, text=label, texton=label,
                     **parameter(name, label, 2, parameter_enum=["off", "on"], parameter_mmax=1))


def build(engine_port: int = DEFAULT_ENGINE_PORT, panel_port: int = DEFAULT_PANEL_PORT) -> dict[str, Any]:
    """The patcher as a JSON-ready dict."""
    p = Patch()
    udpsend = p.obj(f"udpsend 127.0.0.1 {engine_port}", 40, 620, 160)
    plugin = p.obj("plugin~", 40, 20)
    plugout = p.obj("plugout~", 40, 80)
    p.connect(plugin, 0, plugout, 0)
    p.connect(plugin, 1, plugout, 1)
    p.comment("audio passes through; Cypher plays on its own channel", 110, 50)

    # Style: a tab of the shipped presets; its middle outlet is the chosen name.
    styles = available_styles()
    p.comment("style", 40, 120, (8, 4))
    tab = p.add("live.tab", (40, 140, 160, 20), None, (8, 20, 160, 20), num_lines_patching=1,
                num_lines_presentation=1,
                **parameter("Style", "Style", 2, parameter_enum=styles, parameter_mmax=len(styles) - 1))
    sender(p, udpsend, "/cypher/style/set", tab, 1, 40, 170)

    p.comment("arm", 220, 120, (176, 4))
    arm = p.add("live.toggle", (220, 140, 24, 24), None, (176, 20, 20, 20),
                **parameter("Arm", "Arm", 2, parameter_enum=["off", "on"], parameter_mmax=1))
    sender(p, udpsend, "/cypher/arm/set", arm, 0, 220, 170)

    answer = button(p, "Answer Now", "Answer", (300, 140), (204, 22))
    trigger(p, udpsend, "/cypher/turn/answer", answer, 300, 170)

    for i, (path, label) in enumerate((("/cypher/turn/opponent", "Opp Bars"), ("/cypher/turn/ours", "Our Bars"))):
        arg = BY_PATH[path].args[0]
        x = 440 + 120 * i
        p.comment(label.lower(), x, 120, (256 + 56 * i, 4))
        box = p.add("live.numbox", (x, 140, 44, 15), None, (256 + 56 * i, 20, 44, 15),
                    **parameter(label, label, 1, parameter_mmin=arg.low, parameter_mmax=arg.high,
                                parameter_initial_enable=1, parameter_initial=[arg.default], parameter_unitstyle=0))
        sender(p, udpsend, path, box, 0, x, 170)

    # The parameters: one dial each, percent dials scaled to the wire's 0-1.
    dials: dict[str, str] = {}
    for i, spec in enumerate(PARAMS):
        x = 40 + 130 * i
        percent = spec.unit == "%"
        scale = 100.0 if percent else 1.0
        dial = p.add("live.dial", (x, 260, 44, 48), None, (8 + 50 * i, 44, 44, 48),
                     **parameter(spec.name.capitalize(), spec.name.capitalize()[:8], 0,
                                 parameter_mmin=spec.low * scale, parameter_mmax=spec.high * scale,
                                 parameter_initial_enable=1, parameter_initial=[spec.default * scale],
                                 parameter_unitstyle=UNIT_STYLE[spec.unit]))
        dials[spec.name] = dial
        source = dial
        if percent:
            source = p.obj("/ 100.", x, 320)
            p.connect(dial, 0, source)
        sender(p, udpsend, f"/cypher/param/{spec.name}", source, 0, x, 350)

    p.comment("latency", 700, 240, (262, 44))
    latency = BY_PATH["/cypher/latency/set"].args[0]
    latency_box = p.add("live.numbox", (700, 260, 50, 15), None, (262, 60, 50, 15),
                        **parameter("Latency", "Latency", 0, parameter_mmin=latency.low,
                                    parameter_mmax=latency.high, parameter_unitstyle=2,
                                    parameter_initial_enable=1, parameter_initial=[5.333]))
    sender(p, udpsend, "/cypher/latency/set", latency_box, 0, 700, 290)

    # MIDI learn: pick a target, press Learn (or Cancel).
    p.comment("MIDI learn", 820, 240, (262, 80))
    menu = p.add("live.menu", (820, 260, 90, 15), None, (262, 96, 70, 15),
                 **parameter("Learn Target", "Learn", 2, parameter_enum=list(LEARN_TARGETS),
                             parameter_mmax=len(LEARN_TARGETS) - 1))
    learn = button(p, "Learn", "Learn", (920, 260), (262, 114))
    held = p.obj("symbol", 870, 300)
    bang = p.obj("t b", 920, 280)
    p.connect(menu, 1, held, 1)
    p.connect(learn, 0, bang)
    p.connect(bang, 0, held, 0)
    sender(p, udpsend, "/cypher/learn/arm", held, 0, 870, 330)
    cancel = button(p, "Learn Cancel", "Cancel", (980, 260), (310, 114))
    trigger(p, udpsend, "/cypher/learn/cancel", cancel, 980, 290)

    # The opponent's lines, typed (Enter sends), and a button to forget them.
    p.comment("opponent line (Enter sends)", 40, 420, (8, 132))
    text = p.add("textedit", (40, 440, 300, 22), None, (8, 148, 250, 18), keymode=1, lines=1, wordwrap=0)
    sender(p, udpsend, "/cypher/opponent/text", text, 0, 40, 470)
    forget = button(p, "Forget Opponent", "Forget", (360, 440), (262, 150))
    trigger(p, udpsend, "/cypher/opponent/clear", forget, 360, 470)

    # On load, ask the engine for its status.
    loaded = p.obj("live.thisdevice", 500, 440)
    hello = p.add("message", (500, 470, 120, 22), "/cypher/status/get")
    p.connect(loaded, 0, hello)
    p.connect(hello, 0, udpsend)

    receive_side(p, panel_port, arm, dials)
    return {
        "patcher": {
            "fileversion": 1,
            "appversion": {"major": 8, "minor": 6, "revision": 5, "architecture": "x64", "modernui": 1},
            "classnamespace": "box",
            "rect": [100.0, 100.0, 1400.0, 1100.0],
            "openinpresentation": 1,
            "default_fontsize": 10.0,
            "default_fontface": 0,
            "default_fontname": "Arial Bold",
            "gridsize": [8.0, 8.0],
            "devicewidth": 620.0,
            "description": "Cypher front panel: talks to the engine over OSC (generated by scripts/build_maxpat.py)",
            "boxes": p.boxes,
            "lines": p.lines,
            "dependency_cache": [],
            "autosave": 0,
        }
    }


def receive_side(p: Patch, panel_port: int, arm: str, dials: dict[str, str]) -> None:
    """[udpreceive] → [route every outbound address] → [unpack <types>] → displays, dials and the verse."""
    addresses = list(outbound())
    receive = p.obj(f"udpreceive {panel_port}", 40, 700, 120)
    route = p.obj("route " + " ".join(a.path for a in addresses), 40, 730, 1300)
    p.connect(receive, 0, route)
    for index, address in enumerate(addresses):
        x = 40 + 150 * (index % 8)
        y = 780 + 200 * (index // 8)
        if address.path == "/cypher/verse/line":
            verse(p, route, index, x, y)
            continue
        unpack = p.obj("unpack " + " ".join(address.typetags), x, y)
        p.connect(route, index, unpack)
        name = address.path.rsplit("/", 1)[1]
        if address.domain == "status" and name in dials:
            scale = p.obj("* 100.", x, y + 30) if BY_PATH[f"/cypher/param/{name}"].args[0].unit == "%" else unpack
            if scale != unpack:
                p.connect(unpack, 0, scale)
            setter = p.obj("prepend set", x, y + 60)
            p.connect(scale, 0, setter)
            p.connect(setter, 0, dials[name])
            continue
        if address.path == "/cypher/status/arm":
            setter = p.obj("prepend set", x, y + 30)
            p.connect(unpack, 0, setter)
            p.connect(setter, 0, arm)
            continue
        readout(p, route, index, address, x, y, PRESENT_Y.get(address.path))
        for i, arg in enumerate(address.args):  # typed values, one display each
            display = p.add({"f": "flonum", "i": "number", "s": "comment"}[arg.type],
                            (x + 45 * i, y + 60, 44, 22), "" if arg.type == "s" else None)
            if arg.type == "s":
                setter = p.obj("prepend set", x + 45 * i, y + 30)
                p.connect(unpack, i, setter)
                p.connect(setter, 0, display)
            else:
                p.connect(unpack, i, display)


def readout(p: Patch, route: str, index: int, address: Address, x: float, y: float, present: float | None) -> None:
    """The whole message as one line of text, shown on the device face for the addresses that matter there."""
    setter = p.obj("prepend set", x, y + 100)
    line = p.add("comment", (x, y + 130, 140, 20), address.path.split("/cypher/")[1],
                 (340, present, 270, 16) if present is not None else None)
    p.connect(route, index, setter)
    p.connect(setter, 0, line)


def verse(p: Patch, route: str, index: int, x: float, y: float) -> None:
    """Verse lines into a cell block: line 1 clears it first, then each line is set on its own row."""
    fan = p.obj("t l l", x, y)
    unpack = p.obj("unpack " + " ".join(BY_PATH["/cypher/verse/line"].typetags), x + 40, y + 30)
    first = p.obj("sel 1", x + 40, y + 60)
    clear = p.add("message", (x + 40, y + 90, 50, 22), "clear all")
    row = p.add("message", (x, y + 120, 90, 22), "set 0 $2 $3")
    cells = p.add("jit.cellblock", (x, y + 150, 300, 120), None, (340, 32, 270, 84), cols=1, rows=MAX_ROWS,
                  colwidth=268, rowheight=15, hscroll=0, vscroll=1, selmode=0, ignoreclick=1, fontsize=10.0)
    p.connect(route, index, fan)
    p.connect(fan, 1, unpack)
    p.connect(unpack, 1, first)
    p.connect(first, 0, clear)
    p.connect(clear, 0, cells)
    p.connect(fan, 0, row)
    p.connect(row, 0, cells)


def render(engine_port: int = DEFAULT_ENGINE_PORT, panel_port: int = DEFAULT_PANEL_PORT) -> str:
    """The .maxpat text (tab-free JSON, stable order)."""
    return json.dumps(build(engine_port, panel_port), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write max_for_live/Cypher.maxpat, or with --check say whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed patch differs")
    parser.add_argument("--engine-port", type=int, default=DEFAULT_ENGINE_PORT, help="where the engine listens")
    parser.add_argument("--panel-port", type=int, default=DEFAULT_PANEL_PORT, help="where the device listens")
    parser.add_argument("--out", type=Path, default=PATCH, help="where to write (default: the committed patch)")
    args = parser.parse_args(argv)
    text = render(args.engine_port, args.panel_port)
    if args.check:
        if not args.out.exists() or args.out.read_text(encoding="utf-8") != text:
            sys.stderr.write(f"{args.out} is out of date: run python scripts/build_maxpat.py\n")
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
