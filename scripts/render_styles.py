"""Rebuild docs/styles from the presets: per style a grid.png, a short render.ogg and report.json, and a README.

Each style is rendered by the real demo path (`cypher demo --style NAME --bars 4 --midi loopback`): a stand-in
DAW sends MIDI clock through an in-process port, the engine follows it, hears the opponent and answers. From the
demo's output folder this keeps grid.png as it is, the answer's bars of exchange.wav (beat, and the answer in the
style's voice) as OGG Vorbis, and report.json; the README's table is written from the presets and the reports.

About 40 s per style on two cores, in real time (the clock is real). `--readme-only` rewrites the README from the
reports already in docs/styles without rendering.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from engine.cli_presets import program_of  # noqa: E402
from engine.presets import Style, available_styles, load_style  # noqa: E402
from engine.render import INTRO_BARS  # noqa: E402
from engine.timebase import bar_samples  # noqa: E402

DOCS = ROOT / "docs" / "styles"
EPILOG = """\
examples:
  python scripts/render_styles.py                      render every shipped style into docs/styles
  python scripts/render_styles.py --styles trap drill  only these two (the README still lists every style)
  python scripts/render_styles.py --readme-only        rewrite docs/styles/README.md from the stored reports
"""


def render_style(name: str, bars: int, seed: int, words: str, work: Path, docs: Path, console: Console) -> None:
    """Run the demo for one style and keep its grid, the answer bars as OGG and the report."""
    out = work / f"style_{name}"
    command = [sys.executable, "-m", "engine.cli", "demo", "--style", name, "--bars", str(bars), "--seed", str(seed),
               "--words", words, "--midi", "loopback", "--out", str(out)]
    console.print(f"rendering {name}: {' '.join(command[1:])}", highlight=False)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"the demo failed for {name} (exit {result.returncode}):\n{result.stdout[-2000:]}"
                         f"{result.stderr[-2000:]}")
    target = docs / name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "grid.png", target / "grid.png")
    shutil.copyfile(out / "report.json", target / "report.json")
    shutil.copyfile(out / "answer.txt", target / "answer.txt")
    audio, sample_rate = sf.read(out / "exchange.wav", dtype="float32")
    style = load_style(name)
    bar_len = bar_samples(style.tempo_bpm, sample_rate)
    start = (INTRO_BARS + bars) * bar_len  # the answer's first bar line
    sf.write(target / "render.ogg", audio[start:start + bars * bar_len], sample_rate, format="OGG", subtype="VORBIS")


def _figures(report: dict[str, Any]) -> dict[str, str]:
    onset = report.get("onset_error_ms") or {}
    return {
        "onset error median / p95 (ms)": f"{onset.get('median')} / {onset.get('p95')}",
        "end rhymes hit": str(report.get("planned_end_rhymes_hit")),
        "syllable fit": str(report.get("syllable_fit")),
        "rhyme density": str(report.get("rhyme_density")),
        "syllables (planned)": f"{report.get('syllables')} ({report.get('syllables_planned')})",
        "fallback lines": str(report.get("lines_by_fallback_filler")),
    }


def _style_row(style: Style) -> list[str]:
    voice = style.voice
    low, high = style.tempo_range_bpm
    program = program_of(style.name, style)
    return [
        f"`{style.name}`" + ("" if program is None else f" (PC {program})"),
        f"{style.tempo_bpm:g} ({low:g}-{high:g})",
        f"{style.flow.slots_per_bar} slots, {style.syllables_per_bar:.1f} syll./bar",
        style.rhyme_scheme,
        f"{voice.backend} x{voice.length_scale:g}, {voice.pitch_semitones:+g} st, accent {voice.accent_db:g} dB",
        ", ".join(fx.type for fx in style.fx),
        style.description,
    ]


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return lines


def write_readme(docs: Path, bars: int) -> tuple[list[str], list[list[str]]]:
    """docs/styles/README.md from the presets and the stored reports; returns the figures table for the console."""
    styles = [load_style(name) for name in available_styles()]
    lines = [
        "# Styles",
        "",
        "Five presets (`presets/*.toml`, schema 1) a listener can tell apart. Each folder holds the demo's",
        "`grid.png` (the answer's first bars: planned syllable slots above, the voice's vowel onsets below, bars and",
        f"beats as lines), `render.ogg` ({bars} bars of the answer over the style's beat), `answer.txt` and the",
        "demo's `report.json`. Program Change 0-4 selects the style from any of them; CC 21 energy, CC 22 wet,",
        "CC 25 aggression and CC 26 density are the same knobs in every style.",
        "",
        "Rebuild: `python scripts/render_styles.py` (about 40 s a style, the real demo path:",
        f"`cypher demo --style NAME --bars {bars} --midi loopback`). Check presets: `cypher presets check`.",
        "",
        "## The presets",
        "",
    ]
    lines += _md_table(["style", "tempo (BPM)", "grid", "scheme", "voice", "fx", "what makes it distinct"],
                       [_style_row(style) for style in styles])
    header = ["style", *_figures({}).keys(), "words"]
    rows = []
    for style in styles:
        path = docs / style.name / "report.json"
        if not path.exists():
            rows.append([style.name, *["not rendered"] * (len(header) - 1)])
            continue
        report = json.loads(path.read_text())
        rows.append([style.name, *_figures(report).values(), str(report.get("backends", {}).get("words"))])
    lines += [
        "",
        f"## Figures from each render ({bars}-bar answer, seed 0, from its report.json)",
        "",
        "Onset error: each answer syllable's vowel onset (the synthesizer's alignment, placed where the recording",
        "holds the line) against its slot on the true beat grid. End rhymes hit: lines whose last word rhymes with",
        "the planned rhyme. Syllable fit: lines within one syllable of the grid's budget. Rhyme density: the",
        "DopeLearning measure. Fallback lines: lines the lexicon wrote because the language model had no time.",
        "",
    ]
    lines += _md_table(header, rows)
    lines += ["", "## Per style", ""]
    for style in styles:
        folder = docs / style.name
        lines += [f"### {style.display_name}", "", style.description, ""]
        lines += [f"Flow ({style.flow.slots_per_bar} slots a bar, one line a bar, cycled):", "", "```"]
        lines += [*style.flow.patterns, "```", ""]
        if (folder / "grid.png").exists():
            lines += [f"![{style.display_name} grid]({style.name}/grid.png)", "",
                      f"Render: [{style.name}/render.ogg]({style.name}/render.ogg)", ""]
        if (folder / "answer.txt").exists():
            lines += ["Lines written:", "", "```", *(folder / "answer.txt").read_text().strip().splitlines(),
                      "```", ""]
    (docs / "README.md").write_text("\n".join(lines))
    return header, rows


def main(argv: list[str] | None = None) -> int:
    """Render the styles asked for (all by default), then rewrite the README and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--styles", nargs="+", metavar="NAME", help="styles to render (default: every shipped one)")
    parser.add_argument("--bars", type=int, default=4, help="bars per turn in each render (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="the demo's seed (default: 0)")
    parser.add_argument("--words", choices=("auto", "lm", "lexicon"), default="auto",
                        help="words backend for the demo (default: auto, the language model when installed)")
    parser.add_argument("--docs", type=Path, default=DOCS, help=f"where to write (default: {DOCS})")
    parser.add_argument("--readme-only", action="store_true", help="only rewrite the README from stored reports")
    args = parser.parse_args(argv)
    console = Console()
    shipped = available_styles()
    names = args.styles or shipped
    unknown = sorted(set(names) - set(shipped))
    if unknown:
        parser.error(f"unknown styles {unknown}; choose from {', '.join(shipped)}")
    args.docs.mkdir(parents=True, exist_ok=True)
    if not args.readme_only:
        with tempfile.TemporaryDirectory(prefix="cypher-styles-") as work:
            for name in names:
                render_style(name, args.bars, args.seed, args.words, Path(work), args.docs, console)
    header, rows = write_readme(args.docs, args.bars)
    table = Table(title="Cypher styles: figures from each render")
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"wrote {args.docs / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
