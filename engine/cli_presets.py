"""`cypher presets`: check style presets before a set (`check`) and show the shipped styles (`list`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.errors import CypherError, PresetError
from engine.presets import PRESETS_DIR, Style, available_styles, load_style_file

DESCRIPTION = """\
Style presets are TOML files (schema 1) in the presets folder: tempo, flow grid, rhyme scheme, beat, voice,
effects chain and controller map. `check` loads each file the way the engine does, builds its effects chain at
the preset's tempo and checks that every style switch in its controller map names a style there is; a broken
file gets one line naming the file, the key and what is allowed. Fix it before the set: while playing, a broken
preset is refused and the style in use stays.
"""

CHECK_EPILOG = """\
examples:
  cypher presets check                            every shipped preset
  cypher presets check presets/trap.toml          one file, e.g. after editing it by hand
  cypher presets check ~/my_styles/               every .toml file in a folder

Each file gets one line: "ok" and a summary (tempo, grid slots per bar, mean syllables per bar, rhyme scheme,
voice, number of effects and controls), or "FAIL" and what to fix. The exit status is 1 if any file failed.
"""

LIST_EPILOG = """\
examples:
  cypher presets list           the shipped styles, with the Program Change that selects each
"""

LINE_SLACK_SYLLABLES = 2  # written lines may run this far over the plan; the grid needs room for them


@dataclass(frozen=True)
class CheckResult:
    """One preset file checked: its style when it is sound, else the error; notes are warnings that pass."""

    path: Path
    style: Style | None
    error: str = ""
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the file loads, its effects build and its style switches resolve."""
        return self.style is not None


def program_of(style_name: str, style: Style) -> int | None:
    """The Program Change number that `style`'s controller map uses to select `style_name`, if any."""
    return next((c.number for c in style.controls
                 if c.kind == "program" and c.target == "style" and c.value == style_name), None)


def summary(style: Style) -> str:
    """One line on a style: tempo, grid, density, scheme, voice, effects and controls."""
    low, high = style.tempo_range_bpm
    voice = style.voice
    return (f"{style.display_name}: {style.tempo_bpm:g} BPM ({low:g}-{high:g}), {style.flow.slots_per_bar} slots/bar, "
            f"{style.syllables_per_bar:.1f} syllables/bar, {style.rhyme_scheme}, {voice.backend} "
            f"x{voice.length_scale:g} {voice.pitch_semitones:+g} st accent {voice.accent_db:g} dB, "
            f"{len(style.fx)} fx, {len(style.controls)} controls")


def check_file(path: Path, known_styles: set[str]) -> CheckResult:
    """Load one preset, build its effects chain and resolve its style switches; never raises for a bad file."""
    from engine.voice.fx import build_chain

    try:
        style = load_style_file(path)
        try:
            build_chain(style.fx, style.tempo_bpm, 48000)
        except PresetError as exc:
            raise PresetError(f"{path} {exc}") from None
        for i, control in enumerate(style.controls):
            if control.target == "style" and control.value not in known_styles:
                raise PresetError(f"{path} [[controls]] #{i + 1}: key 'value' = {control.value!r} is not a style "
                                  f"here; choose one of {', '.join(sorted(known_styles))}")
    except CypherError as exc:
        return CheckResult(path, None, str(exc))
    notes = []
    if style.name != path.stem:
        notes.append(f"name {style.name!r} differs from the file name {path.stem!r}; styles are switched to by file "
                     "name, so rename one of them")
    for i, pattern in enumerate(style.flow.patterns):
        room = pattern.index("R") + 1
        budget = len(pattern) - pattern.count(".")
        if room < budget + LINE_SLACK_SYLLABLES:
            notes.append(f"[flow] pattern #{i + 1} has room for {room} syllables up to its rhyme and plans {budget}: "
                         f"a line (or an opponent's line) {LINE_SLACK_SYLLABLES} over cannot be placed; use a finer "
                         "grid (e.g. 16 or 24 slots) with rests between the syllables")
    return CheckResult(path, style, notes=tuple(notes))


def preset_files(paths: list[Path]) -> list[Path]:
    """The files to check: the shipped presets when none are named; a folder stands for its .toml files."""
    if not paths:
        return sorted(PRESETS_DIR.glob("*.toml"))
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.toml")) if path.is_dir() else [path])
    return files


def check_paths(paths: list[Path]) -> list[CheckResult]:
    """Check every named preset (or every shipped one); style switches may name any shipped style or any style
    in the same folder as the file."""
    files = preset_files(paths)
    known = set(available_styles(PRESETS_DIR))
    results = []
    for path in files:
        here = set(available_styles(path.parent)) if path.parent.is_dir() else set()
        results.append(check_file(path, known | here))
    return results


def register(sub: argparse._SubParsersAction) -> None:
    """Add `cypher presets check` and `cypher presets list`."""
    parser = sub.add_parser("presets", help="check style presets, list the shipped styles",
                            description=DESCRIPTION, epilog=CHECK_EPILOG + "\n" + LIST_EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="presets_command", metavar="ACTION")
    check = actions.add_parser("check", help="validate preset files (all shipped ones by default)",
                               description=DESCRIPTION, epilog=CHECK_EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("files", nargs="*", type=Path, metavar="FILE",
                       help=f"preset files or folders to check (default: every file in {PRESETS_DIR})")
    check.set_defaults(run=run_check)
    listing = actions.add_parser("list", help="the shipped styles in a table",
                                 description="The shipped styles: tempo, grid, density, rhyme scheme, voice, "
                                             "effects and the Program Change that selects each.",
                                 epilog=LIST_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    listing.set_defaults(run=run_list)
    parser.set_defaults(run=lambda args, console: _usage(parser, console))


def _usage(parser: argparse.ArgumentParser, console: Console) -> int:
    console.print(parser.format_usage().rstrip(), "choose an action: check or list", highlight=False, markup=False)
    return 2


def run_check(args: argparse.Namespace, console: Console) -> int:
    """One line per file; 1 if any failed."""
    results = check_paths(list(args.files))
    if not results:
        console.print(f"no preset files found in {', '.join(str(p) for p in args.files)}", highlight=False,
                      markup=False)
        return 1
    for result in results:
        if result.ok and result.style is not None:
            console.print(f"[green]ok[/]   {escape(str(result.path))}: {escape(summary(result.style))}",
                          highlight=False)
            for note in result.notes:
                console.print(f"[yellow]note[/] {escape(str(result.path))}: {escape(note)}", highlight=False)
        else:
            console.print(f"[bold red]FAIL[/] {escape(result.error)}", highlight=False)
    failed = sum(not r.ok for r in results)
    console.print(f"{len(results) - failed} of {len(results)} presets ok", highlight=False)
    return 1 if failed else 0


def run_list(args: argparse.Namespace, console: Console) -> int:
    """A table of the shipped styles; a broken one shows its error in place."""
    table = Table(title=f"Cypher styles ({PRESETS_DIR})")
    for column in ("style", "program", "tempo (BPM)", "grid", "syll./bar", "scheme", "voice", "fx", "sounds like"):
        table.add_column(column)
    failed = 0
    for result in check_paths([]):
        style = result.style
        if style is None:
            failed += 1
            table.add_row(escape(result.path.stem), "", "", "", "", "", "", "", f"[red]{escape(result.error)}[/]")
            continue
        program = program_of(style.name, style)
        voice = style.voice
        table.add_row(escape(style.name), "" if program is None else str(program), f"{style.tempo_bpm:g}",
                      f"{style.flow.slots_per_bar}/bar", f"{style.syllables_per_bar:.1f}", style.rhyme_scheme,
                      f"x{voice.length_scale:g} {voice.pitch_semitones:+g} st", str(len(style.fx)),
                      escape(style.description))
    console.print(table)
    return 1 if failed else 0
