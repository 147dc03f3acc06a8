"""Contract test of the Max for Live device against the address map, and the generated files are up to date.

The patch is read as Max reads it (patcher → boxes, lines); the Max semantics the test relies on are its own:
[t i] sends an int, [t f] a float, [tosymbol] a symbol; [prepend A] puts address A in front; a message box
starting with an address sends it; [route A B ...] has one outlet per address plus one for the rest; [unpack
f i s] takes that list apart by type.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from bridge.addresses import BY_PATH, PARAMS, inbound, outbound
from bridge.osc import DEFAULT_ENGINE_PORT, DEFAULT_PANEL_PORT

ROOT = Path(__file__).resolve().parent.parent
PATCH = ROOT / "max_for_live" / "Cypher.maxpat"
SENT_TYPE = {"t i": "i", "t f": "f", "tosymbol": "s"}
PASS_THROUGH = re.compile(r"^t( l)+$")


class Graph:
    """Boxes by id and the lines between them."""

    def __init__(self, patcher: dict[str, Any]) -> None:
        self.box_list = [item["box"] for item in patcher["boxes"]]
        self.boxes = {box["id"]: box for box in self.box_list}
        self.lines = [(l["patchline"]["source"], l["patchline"]["destination"]) for l in patcher["lines"]]
        self.out: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
        self.into: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
        for (src, outlet), (dst, inlet) in self.lines:
            self.out[src].append((outlet, dst, inlet))
            self.into[dst].append((src, outlet, inlet))

    def text(self, box_id: str) -> str:
        return str(self.boxes[box_id].get("text", ""))

    def with_text(self, pattern: str) -> list[str]:
        return [b["id"] for b in self.box_list if b["maxclass"] == "newobj" and re.match(pattern, b.get("text", ""))]


@pytest.fixture(scope="module")
def graph() -> Graph:
    return Graph(json.loads(PATCH.read_text(encoding="utf-8"))["patcher"])


def test_the_patch_is_well_formed(graph: Graph) -> None:
    assert len(graph.boxes) == len(graph.box_list), "box ids are unique"
    assert all(re.fullmatch(r"obj-\d+", box_id) for box_id in graph.boxes)
    for (src, outlet), (dst, inlet) in graph.lines:
        assert src in graph.boxes and dst in graph.boxes, (src, dst)
        assert 0 <= outlet < graph.boxes[src]["numoutlets"], (src, outlet)
        assert 0 <= inlet < graph.boxes[dst]["numinlets"], (dst, inlet)
    assert len(set(map(lambda line: json.dumps(line), graph.lines))) == len(graph.lines), "no doubled lines"
    for box in graph.box_list:
        if "outlettype" in box:
            assert len(box["outlettype"]) == box["numoutlets"], box["id"]
        text = box.get("text", "")
        if box["maxclass"] == "newobj" and text.startswith("route "):
            assert box["numoutlets"] == len(text.split()), text
        if box["maxclass"] == "newobj" and text.startswith("unpack "):
            assert box["numoutlets"] == len(text.split()) - 1, text
    # Every box but labels and the audio pass-through is wired to something.
    wired = {src for (src, _), _ in graph.lines} | {dst for _, (dst, _) in graph.lines}
    loose = [b["id"] for b in graph.box_list if b["id"] not in wired and b["maxclass"] != "comment"]
    assert not loose, loose


def test_every_address_the_patch_sends_is_in_the_map_with_its_types(graph: Graph) -> None:
    (udpsend,) = graph.with_text(r"^udpsend ")
    assert graph.text(udpsend) == f"udpsend 127.0.0.1 {DEFAULT_ENGINE_PORT}"
    sent: set[str] = set()
    for src, outlet, inlet in graph.into[udpsend]:
        box = graph.boxes[src]
        text = graph.text(src)
        if box["maxclass"] == "newobj" and text.startswith("prepend /"):
            path = text.split()[1]
            feeders = [graph.text(feeder) for feeder, _, _ in graph.into[src]]
            assert feeders and all(f in SENT_TYPE for f in feeders), (path, feeders)
            types = {SENT_TYPE[f] for f in feeders}
        elif box["maxclass"] == "message" and text.startswith("/"):
            path, *literals = text.split()
            types = {"".join("i" if re.fullmatch(r"-?\d+", t) else "f" if re.fullmatch(r"-?\d*\.\d*", t) else "s"
                             for t in literals)}
        else:
            raise AssertionError(f"{src} ({box['maxclass']} {text!r}) feeds udpsend without an address")
        assert path in BY_PATH and BY_PATH[path].direction == "in", path
        assert types == {BY_PATH[path].typetags}, (path, types)
        sent.add(path)
    assert sent == {a.path for a in inbound()}, "the device can send every command"


def test_every_address_the_patch_routes_is_in_the_map_with_its_types(graph: Graph) -> None:
    (udpreceive,) = graph.with_text(r"^udpreceive ")
    assert graph.text(udpreceive) == f"udpreceive {DEFAULT_PANEL_PORT}"
    routes = [dst for _, dst, _ in graph.out[udpreceive]]
    assert routes and all(graph.text(r).startswith("route ") for r in routes)
    routed: set[str] = set()
    for route in routes:
        paths = graph.text(route).split()[1:]
        for outlet, path in enumerate(paths):
            assert path in BY_PATH and BY_PATH[path].direction == "out", path
            address = BY_PATH[path]
            reached = [dst for o, dst, _ in graph.out[route] if o == outlet]
            reached += [d for r in reached if PASS_THROUGH.match(graph.text(r)) for _, d, _ in graph.out[r]]
            unpacks = [r for r in reached if graph.text(r).startswith("unpack ")]
            assert unpacks, f"{path} is not unpacked by type"
            for unpack in unpacks:
                assert "".join(graph.text(unpack).split()[1:]) == address.typetags, (path, graph.text(unpack))
            for r in reached:
                if graph.boxes[r]["maxclass"] == "message":
                    used = [int(n) for n in re.findall(r"\$(\d+)", graph.text(r))]
                    assert max(used, default=0) <= len(address.args), (path, graph.text(r))
            routed.add(path)
        assert not any(o == len(paths) for o, _, _ in graph.out[route]), "unknown replies are not used"
    assert routed == {a.path for a in outbound()}, "the device shows every reply"


def test_controls_are_live_parameters_named_and_ranged_from_the_map(graph: Graph) -> None:
    params = {b["saved_attribute_attributes"]["valueof"]["parameter_longname"]: b for b in graph.box_list
              if b.get("parameter_enable") == 1}
    named = [b["saved_attribute_attributes"]["valueof"]["parameter_longname"] for b in graph.box_list
             if b.get("parameter_enable") == 1]
    assert len(named) == len(set(named)), "Live needs unique parameter names"
    assert all(b["maxclass"].startswith("live.") for b in params.values())
    for spec in PARAMS:
        dial = params[spec.name.capitalize()]
        value = dial["saved_attribute_attributes"]["valueof"]
        scale = 100.0 if spec.unit == "%" else 1.0
        assert dial["maxclass"] == "live.dial"
        assert (value["parameter_mmin"], value["parameter_mmax"]) == (spec.low * scale, spec.high * scale)
        assert value["parameter_initial"] == [spec.default * scale]
        assert value["parameter_unitstyle"] == (5 if spec.unit == "%" else 1)
        # The dial's value reaches /cypher/param/<name>, scaled back to the wire's range.
        chain = [graph.text(dst) for _, dst, _ in graph.out[dial["id"]]]
        assert chain == (["/ 100."] if spec.unit == "%" else ["t f"]), (spec.name, chain)
    style = params["Style"]["saved_attribute_attributes"]["valueof"]
    from engine.presets import available_styles

    assert style["parameter_enum"] == available_styles()
    assert {"Arm", "Answer Now", "Learn", "Learn Target", "Latency"} <= set(params)
    assert params["Arm"]["maxclass"] == "live.toggle" and params["Style"]["maxclass"] == "live.tab"


@pytest.mark.parametrize("script", ["build_maxpat.py", "gen_osc_docs.py"])
def test_generated_files_match_the_map(script: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_docs_list_every_address_with_its_types() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import gen_osc_docs

    text = (ROOT / "docs" / "osc.md").read_text(encoding="utf-8")
    assert text == gen_osc_docs.render()
    for address in BY_PATH.values():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{address.path}` |"))
        assert all(f"`{arg.type}` **{arg.name}**" in row for arg in address.args), address.path


def test_the_check_mode_catches_a_stale_patch(tmp_path: Path) -> None:
    stale = tmp_path / "Cypher.maxpat"
    stale.write_text(PATCH.read_text(encoding="utf-8").replace("/cypher/param/wet", "/cypher/param/dry"))
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_maxpat.py"), "--check", "--out", str(stale)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "out of date" in done.stderr
