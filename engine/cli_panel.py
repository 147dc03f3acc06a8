"""`cypher panel`: a terminal front panel over the same OSC as the Max for Live device.

Live mode shows what the engine reports (clock, turn, style, parameters, the verse as it is written, stage
latencies, meters, errors). One-shot mode (`--send ADDRESS [ARG ...]`) sends one command, typed and checked
against the address map before it leaves, and prints the engine's answer.
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bridge.addresses import ERROR_PATH, PARAMS, OscError, Value, inbound, lookup
from bridge.osc import DEFAULT_ENGINE_PORT, DEFAULT_HOST, DEFAULT_PANEL_PORT
from engine.errors import CypherError

DESCRIPTION = """\
A terminal front panel for Cypher, over the same OSC as the Max for Live device: it listens where the engine
sends its status (every bar line), the verse as it is written, meters, stage latencies and errors, and shows
them live. With --send it sends one command instead and prints the engine's answer.
"""

EPILOG = """\
examples:
  cypher panel                                        watch the engine (Ctrl-C to stop)
  cypher panel --send /cypher/style/set boom_bap      switch style
  cypher panel --send /cypher/arm/set 1               arm Cypher
  cypher panel --send /cypher/param/energy 0.8        set a parameter (0 to 1)
  cypher panel --send /cypher/turn/answer             answer from the next bar line
  cypher panel --send /cypher/opponent/text "you rap like a fax machine"
  cypher panel --list                                 every command and its arguments

The engine listens on 127.0.0.1:9400 and answers to 127.0.0.1:9401 unless told otherwise. Only one program can
listen on the answer port: close the Max device (or give it another port) to use this panel beside it, or
send with --wait 0. docs/osc.md describes every address.
"""

MAX_ERRORS_SHOWN = 5
ANSWER_SETTLE_S = 0.25  # after a first full status, how long a fresher one may still come


class PanelError(CypherError):
    """The panel cannot send or listen."""


def parse_command(words: list[str]) -> tuple[str, tuple[Value, ...]]:
    """An address and its arguments from the command line, typed and checked against the map."""
    path, *texts = words
    address = lookup(path, "in")
    if len(texts) != len(address.args):
        raise OscError(f"{path} takes {len(address.args)} argument(s) "
                       f"({' '.join(a.name for a in address.args) or 'none'}), got {len(texts)}")
    values: list[Value] = []
    for arg, text in zip(address.args, texts):
        try:
            values.append(int(text) if arg.type == "i" else float(text) if arg.type == "f" else text)
        except ValueError:
            raise OscError(f"argument '{arg.name}' of {path} must be {arg.describe()}, got {text!r}") from None
    return path, address.check(values)


@dataclass
class PanelView:
    """What the panel shows, updated from the engine's messages (pure: no I/O)."""

    status: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    verse: dict[int, tuple[int, str]] = field(default_factory=dict)
    errors: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=MAX_ERRORS_SHOWN))
    meters: tuple[float, ...] = ()
    stages_ms: tuple[float, ...] = ()
    messages: int = 0

    def update(self, path: str, args: tuple[Any, ...]) -> None:
        """Take in one message from the engine."""
        self.messages += 1
        if path.startswith("/cypher/status/"):
            self.status[path.rsplit("/", 1)[1]] = args
        elif path == "/cypher/verse/line" and len(args) == 3:
            if args[1] == 1:
                self.verse.clear()
            self.verse[int(args[1])] = (int(args[0]), str(args[2]))
        elif path == ERROR_PATH and len(args) == 2:
            self.errors.append((str(args[0]), str(args[1])))
        elif path == "/cypher/meter/levels":
            self.meters = args
        elif path == "/cypher/latency/stages":
            self.stages_ms = args

    def render(self) -> Group:
        """The panel as rich renderables."""
        if not self.messages:
            return Group(Text("waiting for the engine… (is `cypher live` running and sending to this port?)"))
        tempo, bar, beat, transport = self.status.get("clock", (0.0, 1, 1, "stopped"))
        turn, bar_in_turn, opp_bars, our_bars = self.status.get("turn", ("idle", 0, 8, 8))
        style = self.status.get("style", ("?",))[0]
        armed = "ARMED" if self.status.get("arm", (0,))[0] else "disarmed"
        head = Text(f"{tempo:6.1f} BPM   bar {bar}.{beat}   {transport}   style {style}   {armed}   "
                    f"turn {turn} {bar_in_turn}/{opp_bars if turn == 'opponent' else our_bars}")
        params = Table(show_header=True, box=None)
        for spec in PARAMS:
            params.add_column(spec.name, justify="right")
        params.add_column("latency", justify="right")
        params.add_column("learn", justify="right")
        params.add_row(*[f"{self.status.get(s.name, (s.default,))[0]:.2f}" for s in PARAMS],
                       f"{self.status.get('latency', (0.0,))[0]:.2f} ms", str(self.status.get("learn", ("none",))[0]))
        verse = Text("\n".join(f"{n:2d} (bar {b}) {text}" for n, (b, text) in sorted(self.verse.items()))
                     or "no verse yet")
        parts: list[Any] = [head, params, Panel(verse, title="verse")]
        if self.stages_ms:
            names = ("listen", "write", "voice", "fx", "total")
            parts.append(Text("stages  " + "  ".join(f"{n} {ms:.0f} ms" for n, ms in zip(names, self.stages_ms))))
        if self.meters:
            parts.append(Text("levels  " + "  ".join(f"{n} {db:.1f} dBFS"
                                                     for n, db in zip(("opponent", "beat", "out"), self.meters))))
        for address, reason in self.errors:
            parts.append(Text(f"error {address}: {reason}", style="red"))
        return Group(*parts)


class Listener:
    """A python-osc server on the panel's port, handing (address, args) to the caller's thread via a queue."""

    def __init__(self, host: str, port: int) -> None:
        self.messages: queue.Queue[tuple[str, tuple[Any, ...]]] = queue.Queue()
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *args: self.messages.put((address, args)))
        try:
            self._server = BlockingOSCUDPServer((host, port), dispatcher)
        except OSError as err:
            raise PanelError(f"cannot listen on {host}:{port}: {err}. Another panel or the Max device may hold it: "
                             "close it, pick --listen-port (and tell the engine), or send with --wait 0") from err
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="cypher-panel", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()


def register(sub: argparse._SubParsersAction) -> None:
    """Add `cypher panel`."""
    parser = sub.add_parser("panel", help="a terminal front panel over OSC (watch the engine, send commands)",
                            description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--send", nargs="+", metavar=("ADDRESS", "ARG"),
                        help="send one command (an address from docs/osc.md and its arguments) and exit")
    parser.add_argument("--list", action="store_true", help="list the commands the engine accepts and exit")
    parser.add_argument("--engine-host", default=DEFAULT_HOST, help=f"where the engine listens (default {DEFAULT_HOST})")
    parser.add_argument("--engine-port", type=int, default=DEFAULT_ENGINE_PORT,
                        help=f"the engine's OSC port (default {DEFAULT_ENGINE_PORT})")
    parser.add_argument("--listen-host", default=DEFAULT_HOST, help=f"where to listen (default {DEFAULT_HOST})")
    parser.add_argument("--listen-port", type=int, default=DEFAULT_PANEL_PORT,
                        help=f"the port the engine answers to (default {DEFAULT_PANEL_PORT})")
    parser.add_argument("--wait", type=float, default=1.0, metavar="S",
                        help="with --send: seconds to wait for the engine's answer; 0 sends without listening")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="watch for this many seconds, then exit (default: until Ctrl-C)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """`cypher panel`: list, send one command, or watch."""
    if args.list:
        table = Table(title="Cypher OSC commands")
        for column in ("address", "arguments", "what it does"):
            table.add_column(column)
        for address in inbound():
            table.add_row(address.path, " ".join(f"{a.name}:{a.type}" for a in address.args), address.doc)
        console.print(table)
        return 0
    for name in ("engine_port", "listen_port"):
        if not 0 < getattr(args, name) < 65536:
            raise PanelError(f"--{name.replace('_', '-')} must be a UDP port from 1 to 65535")
    if args.send:
        return _send(args, console)
    return _watch(args, console)


def _send(args: argparse.Namespace, console: Console) -> int:
    path, values = parse_command(args.send)
    listener = Listener(args.listen_host, args.listen_port) if args.wait > 0 else None
    try:
        try:
            with SimpleUDPClient(args.engine_host, args.engine_port) as client:
                client.send_message(path, list(values))
        except OSError as err:
            raise PanelError(f"cannot send to {args.engine_host}:{args.engine_port}: {err}") from err
        console.print(f"sent {path} {' '.join(map(str, values))}".rstrip(), highlight=False)
        if listener is None:
            return 0
        return _answer(listener, path, args.wait, console)
    finally:
        if listener is not None:
            listener.close()


def _answer(listener: Listener, path: str, wait_s: float, console: Console) -> int:
    """Wait for the engine's error about `path` or its status after applying it; print it.

    A bar line's status can cross the command on its way (sent before the command arrived): the engine publishes
    again as soon as it applies a command, so the latest full status within ANSWER_SETTLE_S of the first one is
    the one printed."""
    view = PanelView()
    deadline_s = time.monotonic() + wait_s
    complete = False
    while (left_s := deadline_s - time.monotonic()) > 0:
        try:
            address, reply = listener.messages.get(timeout=left_s)
        except queue.Empty:
            break
        view.update(address, reply)
        if address == ERROR_PATH and reply and reply[0] == path:
            console.print(f"[red]engine refused {path}:[/] {reply[1]}", highlight=False)
            return 1
        if address == "/cypher/status/learn":  # the last message of a status bundle
            if not complete:
                complete = True
                deadline_s = min(deadline_s, time.monotonic() + ANSWER_SETTLE_S)
    if complete:
        console.print(view.render())
        return 0
    console.print(f"[yellow]no answer within {wait_s:g} s[/]: is the engine running, listening on this host and "
                  f"port, and answering to port {listener.port}?", highlight=False)
    return 1


def _watch(args: argparse.Namespace, console: Console) -> int:
    view = PanelView()
    listener = Listener(args.listen_host, args.listen_port)
    try:
        with SimpleUDPClient(args.engine_host, args.engine_port) as client:
            client.send_message("/cypher/status/get", [])
        stop_s = time.monotonic() + args.duration if args.duration is not None else float("inf")
        with Live(view.render(), console=console, refresh_per_second=10, transient=False) as live:
            while (left_s := stop_s - time.monotonic()) > 0:
                try:
                    address, reply = listener.messages.get(timeout=min(0.1, left_s))
                except queue.Empty:
                    continue
                view.update(address, reply)
                while not listener.messages.empty():
                    view.update(*listener.messages.get_nowait())
                live.update(view.render())
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
    return 0

