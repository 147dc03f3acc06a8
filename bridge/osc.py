"""The OSC adapter: a python-osc UDP server that decodes commands onto a queue, and the client that replies.

The server binds 127.0.0.1 by default: OSC has no authentication, so anyone who can reach the port can drive
the engine. Its handlers only decode and validate against the address map (`bridge.addresses`) and put a
frozen `Command` on a `queue.Queue`; they never touch engine state. Bundles are unpacked on arrival and their
timetags are not waited for (python-osc's dispatcher would sleep until a future timetag, blocking every later
message): when a command takes effect is the engine's bar grid's business.

Every bad datagram (not OSC, truncated, oversized, an unknown address or a wildcard pattern, wrong type or
arity, out of range) is rejected and answered on `/cypher/error` (address, reason) at the configured reply
host:port (never at the sender: no reflection), and logged at most a few times a second. The server keeps
running whatever arrives.
"""

from __future__ import annotations

import argparse
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

from pythonosc import osc_server
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.parsing import osc_types
from pythonosc.udp_client import UDPClient

from bridge.addresses import ERROR_PATH, UNKNOWN_ADDRESS, Command, OscError, Value, lookup
from engine.errors import CypherError

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_ENGINE_PORT = 9400
"""Where the engine listens for commands."""
DEFAULT_PANEL_PORT = 9401
"""Where the engine sends status, verse, meters and errors (the device or `cypher panel` listens)."""
MAX_DATAGRAM_BYTES = 8192
"""Longest datagram accepted; longer ones are rejected as oversized."""
RECEIVE_BUFFER_BYTES = 65536
"""Read size: big enough for any UDP datagram, so an oversized one is seen whole and rejected, not truncated."""
SOCKET_BUFFER_BYTES = 1 << 20
"""Requested kernel receive buffer, so a burst of automation is not dropped (the kernel may grant less)."""
MAX_BUNDLE_DEPTH = 4
BUNDLE_HEADER = b"#bundle\x00"
PATTERN_CHARS = frozenset("*?[]{}")
PARSED_TAGS = frozenset("ihfdsbrmtTFN[]")
"""The type tags python-osc decodes; any other is rejected here before it reaches the parser."""
ACCEPTED_TAGS = MappingProxyType({"i": "ih", "f": "fdih", "s": "s"})
TAG_NAMES = MappingProxyType({"i": "an int", "h": "an int64", "f": "a float", "d": "a double", "s": "a string",
                              "b": "a blob", "r": "a colour", "m": "a MIDI message", "t": "a timetag",
                              "T": "true", "F": "false", "N": "nil", "[": "an array", "]": "an array"})
"""Per map type, the OSC type tags accepted for it (ints widen to floats; nothing else is coerced)."""
Message = tuple[str, tuple[Value, ...]]


class OscServerError(CypherError):
    """The OSC server could not start."""


class RateLimitedLog:
    """Logs at most `burst` lines, refilled at `per_s` lines a second; counts what it left out and says so."""

    def __init__(self, log: logging.Logger, *, burst: int = 5, per_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._burst = float(burst)
        self._per_s = per_s
        self._clock = clock
        self._tokens = float(burst)
        self._last_s = clock()
        self._lock = threading.Lock()
        self.suppressed = 0

    def warning(self, text: str) -> bool:
        """Log one warning unless over the rate; True if it was logged."""
        with self._lock:
            now_s = self._clock()
            self._tokens = min(self._burst, self._tokens + (now_s - self._last_s) * self._per_s)
            self._last_s = now_s
            if self._tokens < 1.0:
                self.suppressed += 1
                return False
            self._tokens -= 1.0
            left_out, self.suppressed = self.suppressed, 0
        suffix = f" ({left_out} more rejected since the last line, not logged)" if left_out else ""
        self._log.warning("%s%s", text, suffix)
        return True


def encode_message(path: str, args: Sequence[Value]) -> OscMessage:
    """An outbound message, checked against the map, with the map's type tags."""
    address = lookup(path, "out")
    values = address.check(args)
    builder = OscMessageBuilder(path)
    for arg, value in zip(address.args, values):
        builder.add_arg(value, arg.type)
    return builder.build()


class Replies:
    """Sends the engine's outbound messages to one host:port through a python-osc client (thread-safe)."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PANEL_PORT) -> None:
        if not 0 < port < 65536:
            raise OscServerError(f"reply port {port} is not a UDP port (1-65535)")
        self.host = host
        self.port = port
        try:
            self._client = UDPClient(host, port)
        except OSError as err:
            raise OscServerError(f"cannot send OSC to {host}:{port}: {err}") from err
        self._lock = threading.Lock()
        self.sent = 0

    def send(self, path: str, *args: Value) -> None:
        """Send one message (checked against the map)."""
        self._send(encode_message(path, args))

    def send_bundle(self, messages: Sequence[Message]) -> None:
        """Send several messages as one bundle, to be applied together (timetag: immediately)."""
        builder = OscBundleBuilder(IMMEDIATELY)
        for path, args in messages:
            builder.add_content(encode_message(path, args))
        self._send(builder.build())

    def error(self, address: str, reason: str) -> None:
        """Answer on /cypher/error; control characters are replaced and both texts cut to the map's limits."""
        self.send(ERROR_PATH, printable(address, 200) or UNKNOWN_ADDRESS, printable(reason, 1000) or "rejected")

    def _send(self, content: Any) -> None:
        with self._lock:
            try:
                self._client.send(content)
            except OSError as err:  # nobody listening (ICMP refused) or the network went away: not fatal
                logger.debug("OSC reply to %s:%d not sent: %s", self.host, self.port, err)
                return
            self.sent += 1

    def close(self) -> None:
        """Close the client's socket."""
        self._client.close()


def printable(text: str, max_chars: int) -> str:
    """Text safe to echo in a reply: control characters become '?', cut to `max_chars`, blank becomes ''."""
    cleaned = "".join(c if ord(c) >= 32 else "?" for c in text[:max_chars])
    return cleaned if cleaned.strip() else ""


class Rejected(Exception):
    """A datagram or one of its messages does not fit; carries the address (if any) and the reason."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(reason)
        self.address = address
        self.reason = reason


def split_packet(data: bytes, depth: int = 0) -> list[bytes]:
    """The message datagrams in an OSC packet (a message, or a bundle of them, nested at most 4 deep)."""
    if data.startswith(BUNDLE_HEADER):
        if depth >= MAX_BUNDLE_DEPTH:
            raise Rejected(UNKNOWN_ADDRESS, f"bundles nested more than {MAX_BUNDLE_DEPTH} deep")
        if len(data) < 16:
            raise Rejected(UNKNOWN_ADDRESS, "truncated bundle: no timetag")
        messages: list[bytes] = []
        index = 16
        while index < len(data):
            if index + 4 > len(data):
                raise Rejected(UNKNOWN_ADDRESS, "truncated bundle: an element size is cut off")
            size = int.from_bytes(data[index:index + 4], "big", signed=True)
            if size <= 0 or size % 4 or index + 4 + size > len(data):
                raise Rejected(UNKNOWN_ADDRESS, f"malformed bundle: element size {size} does not fit the datagram")
            messages.extend(split_packet(data[index + 4:index + 4 + size], depth + 1))
            index += 4 + size
        return messages
    if data.startswith(b"/"):
        return [data]
    raise Rejected(UNKNOWN_ADDRESS, "not an OSC packet: it must start with '/' (a message) or '#bundle'")


def decode_message(dgram: bytes) -> Message:
    """Path and typed arguments of one message datagram that fits the map; Rejected otherwise."""
    try:
        path, index = osc_types.get_string(dgram, 0)
    except (osc_types.ParseError, ValueError):
        raise Rejected(UNKNOWN_ADDRESS, "malformed OSC message: the address is not a padded string") from None
    if any(c in PATTERN_CHARS for c in path):
        raise Rejected(path, "address patterns (wildcards) are not supported: send one exact address")
    tags = ""
    if index < len(dgram):
        try:
            tags, _ = osc_types.get_string(dgram, index)
        except (osc_types.ParseError, ValueError):
            raise Rejected(path, "malformed OSC message: the type tags are not a padded string") from None
        if not tags.startswith(",") or not set(tags[1:]) <= PARSED_TAGS:
            raise Rejected(path, f"malformed OSC message: bad type tags {tags[:16]!r}; Cypher uses only i, f, s")
    try:
        address = lookup(path, "in")
    except OscError as err:
        raise Rejected(path, str(err)) from None
    try:
        # python-osc raises its ParseError, UnicodeDecodeError or struct/index errors on broken arguments.
        params = OscMessage(dgram).params
    except Exception as err:  # noqa: BLE001 - any failure of the third-party parser is a malformed datagram
        raise Rejected(path, f"malformed OSC message: the arguments do not match the type tags ({err})") from None
    if "[" not in tags and _size(path, tags, params) != len(dgram):
        raise Rejected(path, f"malformed OSC message: {len(dgram)} bytes where its type tags need "
                             f"{_size(path, tags, params)} (truncated, or bytes left over)")
    if len(params) == len(address.args) == len(tags) - 1:
        for tag, arg in zip(tags[1:], address.args):
            if tag not in ACCEPTED_TAGS[arg.type]:
                raise Rejected(path, f"argument '{arg.name}' must be {arg.describe()}, got {TAG_NAMES[tag]} (OSC type '{tag}')")
    try:
        return path, address.check(params)
    except OscError as err:
        raise Rejected(path, str(err)) from None


def _padded(length: int) -> int:
    return (length + 3) // 4 * 4


def _size(path: str, tags: str, params: Sequence[object]) -> int:
    """The exact length an OSC message with these tags and decoded arguments has when well formed."""
    size = _padded(len(path.encode()) + 1) + (_padded(len(tags.encode()) + 1) if tags else 0)
    fixed = {"i": 4, "f": 4, "r": 4, "m": 4, "h": 8, "d": 8, "t": 8}
    for tag, value in zip(tags[1:], params):
        if tag in fixed:
            size += fixed[tag]
        elif tag == "s":
            size += _padded(len(str(value).encode()) + 1)
        elif tag == "b":
            size += 4 + _padded(len(bytes(value)))  # type: ignore[arg-type]
    return size


class CommandDispatcher(Dispatcher):
    """Decodes each datagram against the address map, queues commands, answers rejections; never sleeps."""

    def __init__(self, commands: queue.Queue[Command], replies: Replies,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._commands = commands
        self._replies = replies
        self._clock = clock
        self._log = RateLimitedLog(logger)
        self.received = 0
        self.accepted = 0
        self.rejected = 0

    def call_handlers_for_packet(self, data: bytes, client_address: tuple[str, int]) -> list:
        """Handle one datagram: enqueue what fits, answer what does not. Returns no replies to the sender."""
        time_s = self._clock()
        self.received += 1
        if len(data) > MAX_DATAGRAM_BYTES:
            self._reject(Rejected(UNKNOWN_ADDRESS, f"datagram of {len(data)} bytes is over the "
                                                   f"{MAX_DATAGRAM_BYTES}-byte limit"), client_address)
            return []
        try:
            dgrams = split_packet(data)
        except Rejected as rejection:
            self._reject(rejection, client_address)
            return []
        for dgram in dgrams:
            try:
                path, args = decode_message(dgram)
            except Rejected as rejection:
                self._reject(rejection, client_address)
                continue
            self.accepted += 1
            self._commands.put(Command(path, args, time_s))
        return []

    def _reject(self, rejection: Rejected, client_address: tuple[str, int]) -> None:
        self.rejected += 1
        self._replies.error(rejection.address, rejection.reason)
        self._log.warning(f"OSC from {client_address[0]}:{client_address[1]} rejected: "
                          f"{rejection.address} {rejection.reason}")


class _Server(osc_server.BlockingOSCUDPServer):
    """python-osc's blocking UDP server, reading whole datagrams and passing every one to the dispatcher."""

    max_packet_size = RECEIVE_BUFFER_BYTES

    def server_bind(self) -> None:
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        except OSError:
            logger.debug("could not enlarge the OSC receive buffer")
        super().server_bind()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return True  # python-osc drops non-OSC datagrams silently; ours are answered on /cypher/error

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.exception("OSC datagram from %s could not be handled", client_address)


class OscServer:
    """Listens for OSC commands on host:port (127.0.0.1 by default; port 0 picks a free one) in a thread."""

    def __init__(self, commands: queue.Queue[Command], replies: Replies, *, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_ENGINE_PORT, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 <= port < 65536:
            raise OscServerError(f"OSC port {port} is not a UDP port (0-65535)")
        if host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning("OSC server listens on %s: OSC has no authentication, so anyone who can reach port %d "
                           "can drive Cypher. Use 127.0.0.1 unless the panel runs on another machine.", host, port)
        self.dispatcher = CommandDispatcher(commands, replies, clock)
        try:
            self._server = _Server((host, port), self.dispatcher)
        except OSError as err:
            raise OscServerError(f"cannot listen for OSC on {host}:{port}: {err}. Is another Cypher running? "
                                 "Choose another port with --osc-port.") from err
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="cypher-osc", daemon=True)

    def start(self) -> OscServer:
        """Start serving in a background thread."""
        self._thread.start()
        logger.info("listening for OSC on %s:%d", self.host, self.port)
        return self

    def close(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=2.0)
        self._server.server_close()

    def __enter__(self) -> OscServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --osc-host, --osc-port, --osc-reply-host and --osc-reply-port to a command that runs the engine."""
    parser.add_argument("--osc-host", default=DEFAULT_HOST,
                        help=f"address to listen for OSC on (default {DEFAULT_HOST}; anything wider lets anyone on "
                             "that network drive Cypher: OSC has no authentication)")
    parser.add_argument("--osc-port", type=int, default=DEFAULT_ENGINE_PORT,
                        help=f"UDP port to listen for OSC on (default {DEFAULT_ENGINE_PORT})")
    parser.add_argument("--osc-reply-host", default=DEFAULT_HOST,
                        help=f"where the panel listens for status and errors (default {DEFAULT_HOST})")
    parser.add_argument("--osc-reply-port", type=int, default=DEFAULT_PANEL_PORT,
                        help=f"the panel's UDP port (default {DEFAULT_PANEL_PORT})")


def open_from_args(args: argparse.Namespace, commands: queue.Queue[Command]) -> tuple[OscServer, Replies]:
    """The reply client and the (not yet started) server that `add_server_arguments` describes."""
    replies = Replies(args.osc_reply_host, args.osc_reply_port)
    try:
        return OscServer(commands, replies, host=args.osc_host, port=args.osc_port), replies
    except OscServerError:
        replies.close()
        raise
