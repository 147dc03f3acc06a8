"""`cypher write`: the answer to an opponent's verse from a text file, without a DAW: one line a bar, or the
lines and their plan as JSON. It plans bar by bar and fills each line exactly as the live writer does."""

from __future__ import annotations

import argparse
import json
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from rich.console import Console
from rich.markup import escape

from engine.errors import CypherError, PlanError
from engine.perform import Knobs, shape_style
from engine.presets import Style, available_styles, load_style, load_style_file
from engine.write.fill_lexicon import LexiconFiller
from engine.write.phonetics import in_dictionary, tokenize
from engine.write.plan import FillContext, FilledLine, Filler
from engine.write.planner import MAX_BARS, STOPWORDS, plan_line, spoken_line
from engine.write.rhyme import rhyme_density, rhymes

MIN_WRITE_BARS = 1  # offline there is no opponent bar to wait for, so one bar is a valid answer
SYLLABLE_SLACK = 1  # a line within this many syllables of its budget meets it (the fillers' own promise)
LANGUAGE_CHECK_MIN_WORDS = 6  # below this many words the function-word share says nothing
MIN_FUNCTION_SHARE = 0.15  # English verses run 45-60% function words; Spanish, French, German under 10%
MIN_KNOWN_SHARE = 0.5  # words the pronouncing dictionary knows; below this the text is not English

DESCRIPTION = """\
Write Cypher's answer to an opponent's verse, the way it would in a set, without a DAW or a sound card: the
planner lays out each bar (syllable budget and stresses from the style's flow grid, the rhyme chain, the
opponent's words to answer) and a filler writes the words. Try styles and seeds here before a set.

The opponent's verse is plain text, one line per bar (blank lines are ignored), from a file or from stdin (-).
Words no dictionary knows (slang, names) are pronounced by the grapheme-to-phoneme fallback; accents are folded
(café -> cafe). An empty text is refused rather than answered: it is almost always a wrong file or an empty pipe
(in a set, Cypher answers silence with its own rhymes; here give it a verse). Text that is not English, or has
letters outside English spelling, is refused too: Cypher writes and pronounces English only.

A plan no filler can meet is not an error. The filler keeps the planned end rhyme while any word rhymes (perfect,
then slant, then any word) and comes as near the syllable budget as it can; when the language model cannot write
a line at all, the lexicon writes it. Each relaxed constraint is named on stderr (and under "relaxed" in --json),
and the exit status stays 0.
"""

EPILOG = """\
examples:
  cypher write --opponent presets/examples/verses/01_chess.txt                  answer in boom bap
  cypher write --opponent verse.txt --style trap --seed 3                       another style, other words
  cypher write --opponent verse.txt --style ~/styles/mine.toml                  a preset file you are editing
  echo "your flow is slow and your rhymes are old" | cypher write --opponent - --bars 4
  cypher write --opponent verse.txt --density 0.9 --aggression 1                the knobs as a set would turn them
  cypher write --opponent verse.txt --words lexicon --json | jq '.plan[0]'     the plan of bar 1

--bars defaults to the opponent's number of lines (at most 32). --words picks the filler: lm (the language
model, SmolLM2; a few seconds to load, about a second a line), lexicon (no model, instant) or auto (the model when
installed, else the lexicon with one warning). Lines print as they are written, bar 1 first. --json prints one
object: "lines", and "plan" with per bar: bar (1 = the first), budget (syllables), stresses, rhyme_label,
rhyme_words, answer_words, callback, words (each with its syllables), syllables, rhyme_landed, filler, relaxed.
Exit status: 0 written, 1 bad input (one line says what to do), 2 bad options.
"""


class OpponentTextError(CypherError):
    """The opponent's text cannot be read, is empty, or is not English."""


@dataclass(frozen=True)
class WrittenLine:
    """One answer line as written: the filled line (words, syllables, plan), which filler wrote it, whether its
    end rhyme landed, and the plan's constraints that were relaxed to write it."""

    line: FilledLine
    filler: str
    rhyme_landed: bool
    relaxed: tuple[str, ...]
    write_s: float

    def to_json(self) -> dict[str, Any]:
        """The line and its plan as plain data (bar counted from 1)."""
        plan = self.line.plan
        return {
            "bar": plan.bar + 1,
            "text": self.line.text,
            "budget": plan.budget,
            "stresses": list(plan.stresses),
            "rhyme_label": plan.rhyme_label,
            "rhyme_words": list(plan.rhyme_words),
            "answer_words": list(plan.answer_words),
            "callback": plan.callback,
            "words": [{"word": w, "syllables": n} for w, n in zip(self.line.words, self.line.syllables)],
            "syllables": self.line.syllable_count,
            "rhyme_landed": self.rhyme_landed,
            "filler": self.filler,
            "relaxed": list(self.relaxed),
            "write_ms": round(1000 * self.write_s, 1),
        }


def read_opponent(source: str, stdin: BinaryIO) -> str:
    """The opponent's text from a file, or from `stdin` when `source` is '-'; OpponentTextError when unreadable."""
    name = "stdin" if source == "-" else source
    try:
        raw = stdin.read() if source == "-" else Path(source).read_bytes()
    except FileNotFoundError:
        raise OpponentTextError(f"{source}: no such file; give the opponent's verse as a text file (one line per "
                                "bar) or - to read it from stdin") from None
    except IsADirectoryError:
        raise OpponentTextError(f"{source}: is a folder; name a text file in it (one line per bar), e.g. "
                                "presets/examples/verses/01_chess.txt") from None
    except OSError as exc:
        raise OpponentTextError(f"{source}: cannot read it ({exc.strerror}); check the path and its "
                                "permissions") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OpponentTextError(f"{name}: not UTF-8 text; save the opponent's verse as plain text (UTF-8), one "
                                "line per bar") from None


def fold(text: str) -> str:
    """Accents and compatibility forms folded to plain letters ('café' -> 'cafe', curly quotes -> ')."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def opponent_lines(text: str, name: str) -> list[str]:
    """The opponent's lines, one per bar: blank lines dropped, accents folded. OpponentTextError for a text with
    no words, with letters outside English spelling, or that does not read as English."""
    numbered = [(number, fold(line).strip()) for number, line in enumerate(text.splitlines(), 1)]
    lines = [line for _, line in numbered if line]
    for number, line in numbered:
        foreign = [ch for ch in line if ch.isalpha() and not ch.isascii()]
        if foreign:
            word = next(w for w in line.split() if foreign[0] in w)
            raise OpponentTextError(f"{name} line {number}: {word!r} has letters outside English spelling "
                                    f"({foreign[0]!r}); Cypher writes and pronounces English only: give the "
                                    "opponent's verse in English")
    words = [w for line in lines for w in tokenize(line)]
    if not words:
        raise OpponentTextError(f"{name}: the opponent's text has no words; give their verse, one line per bar "
                                "(blank lines are ignored)")
    known = sum(in_dictionary(w) for w in words) / len(words)
    function = sum(w in STOPWORDS for w in words) / len(words)
    if known < MIN_KNOWN_SHARE or (len(words) >= LANGUAGE_CHECK_MIN_WORDS and function < MIN_FUNCTION_SHARE):
        raise OpponentTextError(f"{name}: this does not read as English ({known:.0%} of its words are in the "
                                f"dictionary, {function:.0%} are words like 'the', 'you', 'my'); Cypher writes "
                                "and pronounces English only: give the opponent's verse in English")
    return [line for line in lines if tokenize(line)]


def rhyme_landed(line: FilledLine) -> bool:
    """Whether the line's last word rhymes with its planned rhyme (as the demo's report counts it)."""
    return bool(line.words) and rhymes([line.words[-1]], line.plan.rhyme_words[:1])


def write_answer(
    style: Style,
    heard: Sequence[str],
    bars: int,
    filler: Filler,
    filler_name: str,
    seed: int,
    knobs: Knobs = Knobs(),
    on_line: Callable[[WrittenLine], None] = lambda written: None,
) -> list[WrittenLine]:
    """Plan and fill `bars` answer lines to the opponent's `heard` lines, bar by bar as the live writer does (bar
    i sees the opponent's lines up to i and our lines so far), the style shaped by the knobs. A line the filler
    cannot write (PlanError) is written by the lexicon filler; what was relaxed is recorded per line. `on_line`
    gets each line when it is done."""
    if not MIN_WRITE_BARS <= bars <= MAX_BARS:
        raise PlanError(f"bars must be between {MIN_WRITE_BARS} and {MAX_BARS}, got {bars}")
    fallback = LexiconFiller()
    style = shape_style(style, knobs)
    ctx = FillContext(opponent_lines=(), seed=seed)
    written: list[WrittenLine] = []
    for bar in range(bars):
        started = time.perf_counter()
        ctx.opponent_lines = tuple(heard[: bar + 1])
        plan = plan_line(style=style, bar=bar, heard_lines=list(ctx.opponent_lines), written=ctx.previous,
                         answer_count=knobs.answer_words)
        relaxed: list[str] = []
        name = filler_name
        try:
            filled = filler.fill_line(plan, ctx)
        except PlanError as exc:
            if filler.name == fallback.name:
                raise
            relaxed.append(f"filler: {filler_name} could not write it ({exc}); the lexicon filler did")
            name = "lexicon"
            filled = fallback.fill_line(plan, ctx)
        line = spoken_line(plan, filled.words, allow_unfit=True)  # an unfit line is reported below, not raised
        words = line.words
        ctx.previous.append(line)
        landed = rhyme_landed(line)
        if not landed:
            last = words[-1] if words else ""
            relaxed.append(f"end rhyme: {last!r} does not rhyme with {plan.rhyme_words[0]!r}")
        if abs(line.syllable_count - plan.budget) > SYLLABLE_SLACK:
            relaxed.append(f"syllables: {line.syllable_count} for a budget of {plan.budget}")
        if words and not line.slots:
            room = plan.grid.slots[-1].index + 1
            relaxed.append(f"timing: {line.syllable_count} syllables do not fit the {room} slots up to the bar's "
                           "end rhyme")
        done = WrittenLine(line, name, landed, tuple(relaxed), time.perf_counter() - started)
        written.append(done)
        on_line(done)
    return written


def summary(written: Sequence[WrittenLine]) -> dict[str, Any]:
    """The answer's craft figures: lines on budget (within one syllable), end rhymes landed, rhyme density."""
    words = [w for x in written for w in x.line.words]
    n = max(1, len(written))
    return {
        "syllable_fit": round(sum(abs(x.line.syllable_count - x.line.plan.budget) <= SYLLABLE_SLACK
                                  for x in written) / n, 3),
        "end_rhymes_landed": round(sum(x.rhyme_landed for x in written) / n, 3),
        "rhyme_density": round(rhyme_density(words), 3),
    }


def _bars(text: str) -> int:
    why = f"--bars takes a whole number from {MIN_WRITE_BARS} to {MAX_BARS}"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{why}, got {text!r}") from None
    if not MIN_WRITE_BARS <= value <= MAX_BARS:
        raise argparse.ArgumentTypeError(f"{why}, got {value}")
    return value


def _unit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"takes a number from 0 to 1, got {text}")
    return value


def _style(name: str) -> Style:
    """A shipped style by name, or a preset file by its path (ending in .toml)."""
    if name.endswith(".toml"):
        return load_style_file(Path(name).expanduser())
    return load_style(name)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `cypher write`."""
    parser = sub.add_parser("write", help="write the answer to an opponent's verse (text in, lines out)",
                            description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opponent", required=True, metavar="FILE|-",
                        help="the opponent's verse, one line per bar: a text file, or - for stdin")
    parser.add_argument("--style", default="boom_bap",
                        help=f"style: a shipped one ({', '.join(available_styles())}) or a preset file (.toml); "
                             "default: boom_bap")
    parser.add_argument("--bars", type=_bars, default=None,
                        help=f"bars to answer, {MIN_WRITE_BARS}-{MAX_BARS} (default: the opponent's lines)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the words (default: 0)")
    parser.add_argument("--words", choices=("auto", "lm", "lexicon"), default="auto",
                        help="filler: the language model, the lexicon, or auto (model if installed; default)")
    parser.add_argument("--density", type=_unit, default=Knobs().density,
                        help="the density knob, 0-1: fewer syllables a bar below 0.5, more above (default: 0.5, "
                             "the preset as written)")
    parser.add_argument("--aggression", type=_unit, default=Knobs().aggression,
                        help="the aggression knob, 0-1: how many of the opponent's words each line takes up (1 at "
                             "0, 2 at 0.5, 3 at 1; default: 0.5)")
    parser.add_argument("--json", action="store_true", help="print the lines and the plan as one JSON object")
    parser.set_defaults(run=run_write)


def run_write(args: argparse.Namespace, console: Console) -> int:
    """Read the verse, write the answer line by line (printed as each is done, or as JSON at the end)."""
    from engine.line import load_filler

    notes = Console(stderr=True, highlight=False, soft_wrap=True)
    style = _style(args.style)
    name = "stdin" if args.opponent == "-" else args.opponent
    if args.opponent == "-" and sys.stdin.isatty():
        notes.print("reading the opponent's verse from the terminal: one line per bar, then Ctrl-D", markup=False)
    heard = opponent_lines(read_opponent(args.opponent, sys.stdin.buffer), name)
    bars = args.bars if args.bars is not None else min(len(heard), MAX_BARS)
    if args.bars is None and len(heard) > MAX_BARS:
        notes.print(f"note: the opponent's verse has {len(heard)} lines; answering {MAX_BARS} bars (the most)",
                    markup=False)
    filler, filler_name = load_filler(args.words, args.seed)

    def show(done: WrittenLine) -> None:
        if not args.json:
            console.print(done.line.text, markup=False, highlight=False, soft_wrap=True)
        for why in done.relaxed:
            notes.print(f"[yellow]relaxed[/] bar {done.line.plan.bar + 1}: {escape(why)}")

    knobs = Knobs(density=args.density, aggression=args.aggression)
    written = write_answer(style, heard, bars, filler, filler_name, args.seed, knobs, show)
    if args.json:
        guessed = sorted({w for line in heard for w in tokenize(line) if not in_dictionary(w)})
        report = {
            "style": style.name,
            "bars": bars,
            "seed": args.seed,
            "knobs": {"density": knobs.density, "aggression": knobs.aggression},
            "words": args.words,
            "filler": filler_name,
            "opponent": heard,
            "guessed_words": guessed,
            "lines": [x.line.text for x in written],
            "plan": [x.to_json() for x in written],
            "summary": summary(written),
        }
        console.print(json.dumps(report), markup=False, highlight=False, soft_wrap=True)
    return 0
