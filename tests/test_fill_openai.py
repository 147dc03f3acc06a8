"""The OpenAI-compatible filler against a stand-in server on 127.0.0.1 that speaks the real
/v1/chat/completions shape (real HTTP over a real socket; the stand-in's replies are canned lines)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from engine.errors import BackendMissingError, CypherError, PlanError
from engine.presets import load_style
from engine.write.fill_openai import OpenAIFiller
from engine.write.plan import FillContext
from engine.write.planner import plan_line

OPPONENT = ("You came to the cypher with a borrowed rhyme", "your flow is stuck in a different time")
REPLIES = [
    "I got the cypher locked and I am never gonna stop for anyone tonight",  # far too long
    "Your cypher is weak, I keep it on the beat",  # fits, no rhyme with "rhyme"
    "This cypher is mine, I am taking time\nand a second row",  # fits, rhymes, takes up "cypher"
    "I came to win and I am in my prime",  # fits, rhymes, no opponent word
]


class StandIn(BaseHTTPRequestHandler):
    """Answers POST /v1/chat/completions like an OpenAI-compatible server, recording each request."""

    server: Any

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, dict(self.headers), body))
        status, payload = self.server.behaviour
        if self.path != "/v1/chat/completions":
            status, payload = 404, {"error": {"message": "not found"}}
        elif payload is None:
            n = body.get("n", 1)
            payload = {
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": i, "message": {"role": "assistant", "content": REPLIES[i % len(REPLIES)]},
                             "finish_reason": "stop"} for i in range(n)],
                "usage": {"prompt_tokens": 50, "completion_tokens": 12 * n, "total_tokens": 50 + 12 * n},
            }
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture()
def server() -> Iterator[Any]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    srv.requests = []
    srv.behaviour = (200, None)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def first_plan() -> Any:
    return plan_line(load_style("boom_bap"), 0, OPPONENT[:1])


def test_picks_the_candidate_that_fits_rhymes_and_answers(server: Any) -> None:
    url = f"http://127.0.0.1:{server.server_port}/v1"
    filler = OpenAIFiller(url, "some-model", api_key="k3y", candidates=4, seed=2)
    plan = first_plan()
    line = filler.fill_line(plan, FillContext(OPPONENT))
    assert line.text == "This cypher is mine I am taking time"  # first row only, punctuation dropped
    assert line.syllables == (1, 2, 1, 1, 1, 1, 2, 1)
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer k3y"
    assert body["model"] == "some-model" and body["n"] == 4 and body["stop"] == ["\n"]
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    ask = body["messages"][-1]["content"]
    assert f"exactly {plan.budget} syllables" in ask and "rhymes with rhyme" in ask and "cypher" in ask


def test_a_used_line_is_not_written_again(server: Any) -> None:
    filler = OpenAIFiller(f"http://127.0.0.1:{server.server_port}", "m", candidates=4)
    used = {"This cypher is mine I am taking time"}
    line = filler.fill_line(first_plan(), FillContext(OPPONENT, used_lines=used))
    assert line.text == "I came to win and I am in my prime"


def test_server_errors_say_what_to_do(server: Any) -> None:
    filler = OpenAIFiller(f"http://127.0.0.1:{server.server_port}", "m")
    server.behaviour = (401, {"error": {"message": "bad key"}})
    with pytest.raises(BackendMissingError, match="HTTP 401.*API key"):
        filler.fill_line(first_plan(), FillContext(OPPONENT))
    server.behaviour = (200, b"<html>not json</html>")
    with pytest.raises(BackendMissingError, match="not JSON"):
        filler.fill_line(first_plan(), FillContext(OPPONENT))
    server.behaviour = (200, {"object": "chat.completion", "choices": []})
    with pytest.raises(BackendMissingError, match="no choices"):
        filler.fill_line(first_plan(), FillContext(OPPONENT))
    server.behaviour = (200, {"choices": [{"message": {"role": "assistant", "content": "!!! ..."}}]})
    with pytest.raises(PlanError, match="no words"):
        filler.fill_line(first_plan(), FillContext(OPPONENT))


def test_no_server_listening_is_one_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    filler = OpenAIFiller(f"http://127.0.0.1:{port}", "m", timeout_s=2.0)
    with pytest.raises(BackendMissingError, match="did not answer.*start it"):
        filler.fill_line(first_plan(), FillContext(OPPONENT))


@pytest.mark.parametrize("kwargs", [{"base_url": "127.0.0.1:8000"}, {"candidates": 0}, {"timeout_s": 0}])
def test_bad_settings_are_cypher_errors(kwargs: dict[str, Any]) -> None:
    args = {"base_url": "http://127.0.0.1:8000", "model": "m", **kwargs}
    with pytest.raises(CypherError):
        OpenAIFiller(**args)
