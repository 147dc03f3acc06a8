"""The filler over an OpenAI-compatible server (vLLM, TGI, Ollama, the llama.cpp server): a bigger model run
elsewhere writes each planned line.

A remote model cannot be constrained while it decodes, so the plan goes into the prompt (syllables, the rhyme,
the opponent's words) and several candidates come back in one request (`n`); they are reranked by syllable fit,
end rhyme, reference to the opponent and freshness, as the local filler's are. Plain `http.client`, no SDK.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from engine.errors import BackendMissingError, PlanError
from engine.write.fill_lm import EXAMPLE, SYSTEM, spoken_words
from engine.write.phonetics import normalize, syllables
from engine.write.plan import FillContext, FilledLine, LinePlan
from engine.write.rhyme import rhymes

log = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"
MAX_TOKENS = 48
FIT_WEIGHT = 2.0  # rerank malus per syllable off the budget
RHYME_BONUS = 3.0  # rerank bonus for ending on the planned rhyme
REFER_BONUS = 1.5  # rerank bonus for taking up an opponent word
STALE_MALUS = 10.0  # rerank malus for a line already used or written


class OpenAIFiller:
    """Fills planned lines through an OpenAI-compatible `/v1/chat/completions` endpoint."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, candidates: int = 4,
                 temperature: float = 0.8, timeout_s: float = 10.0, seed: int = 0) -> None:
        """`base_url` like `http://127.0.0.1:8000` (a trailing `/v1` is allowed); `model` as the server names it."""
        parts = urlsplit(base_url.rstrip("/").removesuffix("/v1"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PlanError(f"server URL must look like http://host:port, got {base_url!r}")
        if candidates < 1:
            raise PlanError(f"candidates must be at least 1, got {candidates}")
        if timeout_s <= 0:
            raise PlanError(f"timeout_s must be above 0, got {timeout_s}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path
        self.model = model
        self.api_key = api_key
        self.candidates = candidates
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.seed = seed

    def messages(self, line: LinePlan, context: FillContext) -> list[dict[str, str]]:
        """The chat messages for one line: the plan spelled out for a model that cannot be constrained."""
        ask = ["Opponent:\n" + ("\n".join(context.opponent_lines[-8:]) or "(silence)") + "\n"]
        ours = "\n".join(f.text for f in context.previous[-4:])
        if ours:
            ask.append(f"My lines so far:\n{ours}\n")
        ask.append(f"Write my next line, exactly {line.budget} syllables")
        if line.rhyme_words:
            ask.append(f", ending on a word that rhymes with {line.rhyme_words[0]}")
        if line.answer_words:
            ask.append(f", use the word {' and '.join(line.answer_words)}")
        ask.append(". Reply with the line only.")
        return [{"role": "system", "content": SYSTEM}, *EXAMPLE, {"role": "user", "content": "".join(ask)}]

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON body to the chat endpoint and return the decoded JSON reply."""
        conn_type = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = conn_type(self.host, self.port, timeout=self.timeout_s)
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        where = f"{self.scheme}://{self.host}:{self.port}{self.prefix}{CHAT_PATH}"
        try:
            conn.request("POST", self.prefix + CHAT_PATH, json.dumps(body), headers)
            reply = conn.getresponse()
            raw = reply.read()
        except (OSError, http.client.HTTPException) as exc:
            raise BackendMissingError(f"the words server at {where} did not answer ({exc}); start it or fix "
                                      "the URL") from exc
        finally:
            conn.close()
        if reply.status != 200:
            detail = raw[:200].decode("utf-8", "replace")
            raise BackendMissingError(f"the words server at {where} answered HTTP {reply.status}: {detail}; "
                                      "check the model name and API key")
        try:
            data = json.loads(raw)
            return data if isinstance(data, dict) else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BackendMissingError(f"the words server at {where} sent something that is not JSON ({exc}); "
                                      "is it an OpenAI-compatible server?") from exc

    def _choices(self, data: dict[str, Any]) -> list[str]:
        """The text of every choice in a chat-completion reply; raises when there is none."""
        texts = []
        for choice in data.get("choices") or []:
            message = choice.get("message") if isinstance(choice, dict) else None
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                texts.append(content)
        if not texts:
            raise BackendMissingError("the words server's reply has no choices[].message.content; "
                                      "is it an OpenAI-compatible chat endpoint?")
        return texts

    def _score(self, words: tuple[str, ...], line: LinePlan, stale: set[str]) -> float:
        """Higher is better: syllable fit, end rhyme, reference to the opponent, freshness."""
        lower = [w.lower() for w in words]
        score = -FIT_WEIGHT * abs(sum(syllables(w) for w in words) - line.budget)
        if line.rhyme_words and any(rhymes(lower[-1:], [r]) for r in line.rhyme_words):
            score += RHYME_BONUS
        answers = {normalize(a) for a in line.answer_words}
        if any(normalize(w) in answers or normalize(w).rstrip("s") in answers for w in lower):
            score += REFER_BONUS
        if " ".join(lower) in stale:
            score -= STALE_MALUS
        return score

    def fill_line(self, line: LinePlan, context: FillContext) -> FilledLine:
        """Words for one planned line: `candidates` replies in one request, the best by the rerank."""
        started = time.perf_counter()
        body = {"model": self.model, "messages": self.messages(line, context), "n": self.candidates,
                "temperature": self.temperature, "max_tokens": MAX_TOKENS,
                "seed": self.seed * 1000 + context.seed * 100 + line.bar, "stop": ["\n"]}
        texts = self._choices(self._post(body))
        stale = {" ".join(w.lower() for w in spoken_words(s)) for s in context.used_lines}
        stale |= {f.text.lower() for f in context.previous}
        lines = [spoken_words(next((t for t in text.splitlines() if spoken_words(t)), "")) for text in texts]
        lines = [words for words in lines if words]
        if not lines:
            raise PlanError(f"line {line.bar}: the words server replied with no words; try again or use "
                            "--words lexicon")
        words = max(lines, key=lambda ws: self._score(ws, line, stale))
        log.debug("line %d in %.2f s from %s: %s", line.bar, time.perf_counter() - started, self.host,
                  " ".join(words))
        return FilledLine(plan=line, words=words, syllables=tuple(syllables(w) for w in words))
