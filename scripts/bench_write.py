"""Benchmark verse writing: plain next-token generation vs Cypher's plan-then-fill vs the lexicon filler.

Every opponent verse in presets/examples/verses/*.txt (8 lines, one per bar) is answered bar by bar as the demo
does: bar n is planned from the opponent's lines heard so far and our lines written so far, then filled.
Columns:
  plain    the same model (SmolLM2-135M-Instruct) and the same prompt as Cypher's filler, sampled with no plan
           enforced (temperature 0.8, top-k 16, the first line of its reply);
  cypher   the LM filler: the plan enforced while decoding, candidates reranked;
  lexicon  the model-free lexicon filler.
Rows (over all lines of all verses): syllable fit (within ±1 of the budget), planned end rhymes hit (perfect or
slant rhyme with the plan's rhyme words), rhyme density (DopeLearning, per verse, mean), opponent references per
4 bars (lines that take up a planned answer word), distinct-2 (unique word bigrams / bigrams, per verse, mean),
fluency (mean log-probability per token of the final line, scored by the same model under the same prompt), time
to the first bar (plan + fill of bar 1, median over verses), time per further bar (median), and the CPU time this
process spent per further bar (median; on a shared machine the wall clock also counts other jobs' load).

  python scripts/bench_write.py            all verses (about 15 minutes on 2 busy cores)
  python scripts/bench_write.py --quick    3 verses (under 3 minutes)
  python scripts/bench_write.py --json     JSON instead of the table (add --lines to see every line)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.presets import load_style  # noqa: E402
from engine.write.fill_lexicon import LexiconFiller  # noqa: E402
from engine.write.fill_lm import LMFiller, spoken_words  # noqa: E402
from engine.write.phonetics import syllables  # noqa: E402
from engine.write.plan import FillContext, FilledLine, LinePlan  # noqa: E402
from engine.write.planner import plan_line  # noqa: E402
from engine.write.rhyme import rhyme_density, rhymes  # noqa: E402

VERSES_DIR = Path(__file__).resolve().parent.parent / "presets" / "examples" / "verses"
COLUMNS = ("plain", "cypher", "lexicon")
QUICK_VERSES = 3
BARS = 8
SEED = 7
PLAIN_TEMPERATURE = 0.8
PLAIN_TOP_K = 16
ROWS = {
    "syllable_fit": "syllable fit (±1)",
    "end_rhyme_hit": "planned end rhymes hit",
    "rhyme_density": "rhyme density (DopeLearning)",
    "references_per_4_bars": "opponent references / 4 bars",
    "distinct_2": "distinct-2",
    "fluency": "fluency (mean log p / token)",
    "first_bar_s": "time to first bar (s, median)",
    "per_bar_s": "time per further bar (s, median)",
    "per_bar_cpu_s": "CPU time per further bar (s, median)",
}


class PlainFiller:
    """Plain next-token generation: the LM filler's model and prompt, sampled with no constraint at all."""

    name = "plain"

    def __init__(self, lm: LMFiller, seed: int) -> None:
        self.lm = lm
        self.seed = seed

    def fill_line(self, line: LinePlan, context: FillContext) -> FilledLine:
        """The first line of the model's free reply."""
        torch = self.lm._torch
        prompt = self.lm.prompt_ids(line, context)
        torch.manual_seed(self.seed * 1000 + context.seed * 100 + line.bar)
        with torch.inference_mode():
            out = self.lm.model.generate(
                torch.tensor([prompt]), do_sample=True, temperature=PLAIN_TEMPERATURE, top_k=PLAIN_TOP_K,
                max_new_tokens=2 * line.budget + 8, pad_token_id=self.lm.tokenizer.eos_token_id,
                stop_strings=["\n"], tokenizer=self.lm.tokenizer)
        text = self.lm.tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True).strip()
        first = next((ln for ln in text.splitlines() if spoken_words(ln)), "")
        words = spoken_words(first) or ("uh",)
        return FilledLine(line, words, tuple(max(1, syllables(w)) for w in words))


@dataclass
class Tally:
    """Per-column counts and samples."""

    lines: int = 0
    fit: int = 0
    hit: int = 0
    refs: int = 0
    density: list[float] = field(default_factory=list)
    distinct: list[float] = field(default_factory=list)
    fluency: list[float] = field(default_factory=list)
    first_s: list[float] = field(default_factory=list)
    per_bar_s: list[float] = field(default_factory=list)
    per_bar_cpu_s: list[float] = field(default_factory=list)
    verses: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """The benchmark rows for this column."""
        n = max(1, self.lines)
        return {
            "syllable_fit": self.fit / n,
            "end_rhyme_hit": self.hit / n,
            "rhyme_density": statistics.fmean(self.density) if self.density else 0.0,
            "references_per_4_bars": 4 * self.refs / n,
            "distinct_2": statistics.fmean(self.distinct) if self.distinct else 0.0,
            "fluency": statistics.fmean(self.fluency) if self.fluency else 0.0,
            "first_bar_s": statistics.median(self.first_s) if self.first_s else 0.0,
            "per_bar_s": statistics.median(self.per_bar_s) if self.per_bar_s else 0.0,
            "per_bar_cpu_s": statistics.median(self.per_bar_cpu_s) if self.per_bar_cpu_s else 0.0,
        }


def distinct_2(words: list[str]) -> float:
    """Unique word bigrams over all bigrams (1.0: nothing repeated)."""
    grams = list(zip(words, words[1:]))
    return len(set(grams)) / len(grams) if grams else 0.0


def refers(words: tuple[str, ...], answers: tuple[str, ...]) -> bool:
    """Whether a line takes up one of the planned answer words (plural or possessive forms count)."""
    lower = {w.lower() for w in words}
    return any(a in lower or f"{a}s" in lower or f"{a}'s" in lower for a in answers)


def load_verses(quick: bool) -> list[tuple[str, list[str]]]:
    """The shipped opponent verses, by file name."""
    paths = sorted(VERSES_DIR.glob("*.txt"))
    verses = [(p.stem, [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]) for p in paths]
    return verses[:QUICK_VERSES] if quick else verses


def run_verse(filler: Any, lm: LMFiller, style: Any, opponent: list[str], seed: int, tally: Tally) -> None:
    """Answer one verse bar by bar with `filler` and add its figures to `tally`."""
    context = FillContext(opponent_lines=(), seed=seed)
    words_all: list[str] = []
    lines: list[dict[str, Any]] = []
    for bar in range(BARS):
        heard = opponent[: bar + 1]
        context.opponent_lines = tuple(heard)
        started, started_cpu = time.perf_counter(), time.process_time()
        plan = plan_line(style, bar, heard, context.previous)
        filled = filler.fill_line(plan, context)
        took = time.perf_counter() - started
        (tally.first_s if bar == 0 else tally.per_bar_s).append(took)
        if bar:
            tally.per_bar_cpu_s.append(time.process_time() - started_cpu)
        fluency = lm.fluency(lm.prompt_ids(plan, context), filled.text)
        context.previous.append(filled)
        count = sum(syllables(w) for w in filled.words)
        hit = bool(filled.words) and any(rhymes([filled.words[-1].lower()], [r]) for r in plan.rhyme_words)
        tally.lines += 1
        tally.fit += abs(count - plan.budget) <= 1
        tally.hit += hit
        tally.refs += refers(filled.words, plan.answer_words)
        tally.fluency.append(fluency)
        words_all += [w.lower() for w in filled.words]
        lines.append({"text": filled.text, "budget": plan.budget, "syllables": count,
                      "rhyme_words": list(plan.rhyme_words), "hit": hit,
                      "answer_words": list(plan.answer_words), "fluency": round(fluency, 3),
                      "time_s": round(took, 3)})
    tally.density.append(rhyme_density(words_all))
    tally.distinct.append(distinct_2(words_all))
    tally.verses.append({"lines": lines, "rhyme_density": round(tally.density[-1], 3)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"only the first {QUICK_VERSES} verses")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--lines", action="store_true", help="with --json: every written line too")
    parser.add_argument("--columns", default=",".join(COLUMNS), help="comma-separated subset of the columns")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    console = Console()
    columns = [c for c in args.columns.split(",") if c in COLUMNS]
    style = load_style("boom_bap")
    verses = load_verses(args.quick)
    lm = LMFiller(candidates=4, seed=args.seed)
    fillers: dict[str, Any] = {"plain": PlainFiller(lm, args.seed), "cypher": lm, "lexicon": LexiconFiller()}
    tallies = {c: Tally() for c in columns}
    started = time.perf_counter()
    for i, (name, opponent) in enumerate(verses):
        for column in columns:
            run_verse(fillers[column], lm, style, opponent, args.seed + i, tallies[column])
            tallies[column].verses[-1]["name"] = name
    elapsed = time.perf_counter() - started
    summary = {c: tallies[c].summary() for c in columns}
    if args.json:
        out: dict[str, Any] = {"verses": len(verses), "seed": args.seed, "elapsed_s": round(elapsed, 1),
                               "summary": summary}
        if args.lines:
            out["lines"] = {c: tallies[c].verses for c in columns}
        print(json.dumps(out, indent=2))
        return 0
    table = Table(title=f"Verse writing: {len(verses)} verses × {BARS} bars, seed {args.seed}, {elapsed:.0f} s")
    table.add_column("row")
    for c in columns:
        table.add_column(c, justify="right")
    for key, label in ROWS.items():
        fmt = "{:.0%}" if key in ("syllable_fit", "end_rhyme_hit") else "{:.2f}"
        table.add_row(label, *(fmt.format(summary[c][key]) for c in columns))
    console.print(table)
    if "cypher" in columns:
        first = tallies["cypher"].verses[0]
        console.print(f"cypher, {first['name']}:")
        for ln in first["lines"]:
            console.print(f"  {ln['text']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
