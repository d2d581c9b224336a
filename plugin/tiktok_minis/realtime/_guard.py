"""Hardening of the game's ``AsyncServer`` below the event handlers.

The wire contract has no binary packets, bounded frames and JSON text only; python-socketio and
engine.io accept more than that by default. :func:`harden` closes those gaps on a server the
plugin attaches to, whether the plugin built it or the game brought its own. It sets instance
attributes only, so other servers in the process keep the libraries' behaviour.

What a client sees:

- a binary websocket frame, a base64 binary message (``b...``) or a Socket.IO binary packet
  (``45...``, ``46...``, attachments of any count): the websocket is closed with code 1003
  (unsupported data) and the reason ``binary packets are not part of the protocol``; over
  long-polling the engine.io session ends and the next request gets 400 ``Session is
  disconnected``. The disconnect handlers have run by then, and nothing of the packet is kept,
  whatever number of attachments it announces;
- a frame larger than the limit: closed by aiohttp with code 1009 (message too big) and an empty
  reason, compressed frames measured after inflating; a long-polling POST over the limit gets
  400 and its session ends. The limit is the server's ``max_http_buffer_size``: 64 KiB when the
  game left engine.io's default of 1,000,000, and engine.io announces it as ``maxPayload`` in the
  open packet;
- an event named as Socket.IO reserves (``connect``, ``disconnect``, ``connect_error``, ...):
  ignored, no handler runs and no ack comes, the connection stays as it was;
- a packet that is not Socket.IO (garbage, bad JSON, an unknown type, a namespace the client has
  not joined, an event without a name): dropped, the connection stays usable. engine.io alone
  would end the websocket with an exception (1006) on some of them and log a traceback for each;
- a JSON integer of more than 100 digits: parsed as a float (engine.io would drop the packet
  unanswered), which every payload model refuses, so the ack is ``invalid_payload``.

Each refusal counts in ``ttminis_refused_packets_total{reason}`` (see :func:`refused_packets`),
except a long-polling POST over the limit, which engine.io refuses before the guard sees it.
The libraries' logs go to ``tiktok_minis.socketio`` and ``tiktok_minis.engineio`` at WARNING
(set those loggers' levels to see more; their INFO lines carry whole packets, login codes and
sessions included), each call site a few times a minute at most: see :class:`LogRateLimit`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

import socketio
from aiohttp import WebSocketError, WSCloseCode, web
from socketio import packet as sio_packet

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "REFUSAL_REASONS",
    "RESERVED_EVENTS",
    "LogRateLimit",
    "harden",
    "refused_packets",
]

log = logging.getLogger("tiktok_minis.socket_guard")

#: The frame limit when the game set none: Socket.IO frames carry small JSON payloads.
DEFAULT_MAX_FRAME_BYTES = 64 * 1024
# engine.io's own default; a server still holding it was built without a limit in mind.
_ENGINEIO_DEFAULT_BUFFER = 1_000_000
# engine.io's guard against int parsing that grows quadratically with the digits.
_MAX_INT_DIGITS = 100

#: Event names python-socketio (server and client) or the JavaScript implementation treat
#: specially; ``*`` would reach a catch-all handler with the arguments shifted.
RESERVED_EVENTS = frozenset(
    {
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "__disconnect_final",
        "newListener",
        "removeListener",
        "*",
    }
)
#: The labels of ``ttminis_refused_packets_total``.
REFUSAL_REASONS = ("binary", "oversized", "reserved_event", "malformed", "unknown_namespace")
_BINARY_REASON = b"binary packets are not part of the protocol"

# Process-wide, like the libraries' own state: every hardened server of the process adds here.
_refused: Counter[str] = Counter()
_MARK = "_ttminis_hardened"
# What python-socketio's own message dispatch calls, and so the guard too.
_DISPATCH = ("_handle_connect", "_handle_disconnect", "_handle_event", "_handle_ack")


def refused_packets() -> dict[str, int]:
    """Packets and frames refused or ignored so far in this process, by reason."""
    return {reason: _refused[reason] for reason in REFUSAL_REASONS}


def harden(sio: socketio.AsyncServer) -> None:
    """Apply the plugin's limits to ``sio`` (idempotent)."""
    if getattr(sio, _MARK, False):
        return
    _require_json_text(sio)
    _limit_frames(sio)
    _parse_big_ints(sio)
    guard = _MessageGuard(sio)
    _guard_messages(sio, guard)
    _guard_websocket_frames(sio, guard)
    _route_logs(sio)
    setattr(sio, _MARK, True)


# -- the parts ---------------------------------------------------------------------------------


def _require_json_text(sio: socketio.AsyncServer) -> None:
    """Refuse a msgpack server: every frame would be binary, which the protocol has not."""
    if any(cls.__module__ == "socketio.msgpack_packet" for cls in sio.packet_class.__mro__):
        raise TypeError(
            "The plugin's wire protocol is JSON text: build the AsyncServer without "
            "serializer='msgpack'."
        )


def _limit_frames(sio: socketio.AsyncServer) -> None:
    """Lower engine.io's default frame limit to 64 KiB; a limit the game chose stays.

    aiohttp enforces it on each websocket (read when the socket opens) and engine.io on each
    long-polling POST.
    """
    if sio.eio.max_http_buffer_size == _ENGINEIO_DEFAULT_BUFFER:
        sio.eio.max_http_buffer_size = DEFAULT_MAX_FRAME_BYTES


def _parse_int(digits: str) -> int | float:
    # A float is linear to parse, JSON-native, and no payload model accepts one for an int or
    # a string: the handler answers invalid_payload instead of engine.io dropping the packet.
    return int(digits) if len(digits) <= _MAX_INT_DIGITS else float(digits)


class _WireJson:
    """The ``json`` of the server's packets: the base class's ``dumps``, a ``loads`` that turns
    integers of more than 100 digits into floats."""

    def __init__(self, dumps: Callable[..., str]) -> None:
        self.dumps = dumps

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        """``json.loads`` with the bounded integer parser."""
        kwargs.setdefault("parse_int", _parse_int)
        return json.loads(text, **kwargs)


def _parse_big_ints(sio: socketio.AsyncServer) -> None:
    """Give ``sio`` a packet subclass whose JSON accepts integers of any length.

    ``Packet.json`` is a class attribute shared by every server and client of the process (and
    ``AsyncServer(json=...)`` sets it there): a subclass on this instance changes nothing else.
    """
    base: Any = sio.packet_class
    if isinstance(base.json, _WireJson):
        return
    sio.packet_class = type(
        f"Wire{base.__name__}",
        (base,),
        {"json": _WireJson(base.json.dumps), "__doc__": "Packets with the plugin's JSON."},
    )


def _guard_messages(sio: socketio.AsyncServer, guard: _MessageGuard) -> None:
    """Route every engine.io message through ``guard`` instead of python-socketio's dispatch.

    The guard calls the private methods ``_handle_eio_message`` dispatches to: a python-socketio
    without them stops the start here rather than dropping every packet later.
    """
    missing = [name for name in _DISPATCH if not callable(getattr(sio, name, None))]
    if missing:
        raise RuntimeError(
            f"This python-socketio has no {', '.join(missing)}: the socket guard needs 5.x."
        )
    # A bound coroutine method: engine.io awaits only what inspect calls a coroutine function.
    sio.eio.on("message", guard.handle)


def _guard_websocket_frames(sio: socketio.AsyncServer, guard: _MessageGuard) -> None:
    """Check each websocket frame before engine.io decodes it.

    engine.io decodes a frame outside its error handling: an empty frame, one that does not start
    with a packet type, or JSON nested past the recursion limit ends the websocket handler with an
    exception (no disconnect handler runs until the ping timeout). The driver's class is in a
    dictionary shared by every server of the process, so this server gets its own copy.
    """
    drivers: dict[str, Any] = sio.eio._async
    base = drivers.get("websocket")
    if base is None or getattr(base, "_ttminis_guard", None) is not None:
        return
    sio.eio._async = {**drivers, "websocket": _guarded_websocket_class(base, guard)}


def _route_logs(sio: socketio.AsyncServer) -> None:
    """Send the libraries' logs to the plugin's loggers, once each, at WARNING, rate-limited.

    Without ``logger=``, each library logs to its own logger with a plain-text handler of its own
    and, through the root logger, to the game's handlers too: every traceback written twice. A
    logger the game passed stays its own.
    """
    if sio.logger is logging.getLogger("socketio.server"):
        sio.logger = _quiet_logger("tiktok_minis.socketio")
    if sio.eio.logger is logging.getLogger("engineio.server"):
        sio.eio.logger = _quiet_logger("tiktok_minis.engineio")
    _rate_limit(log)


def _quiet_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    _rate_limit(logger)
    return logger


def _rate_limit(logger: logging.Logger) -> None:
    if not any(isinstance(existing, LogRateLimit) for existing in logger.filters):
        logger.addFilter(LogRateLimit())


# -- the message guard -------------------------------------------------------------------------


class _MessageGuard:
    """python-socketio's ``_handle_eio_message`` with the contract's refusals in front.

    It decodes each message once with the server's packet class and dispatches it to the same
    python-socketio methods; binary packets close the connection before any attachment is kept.
    """

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio
        #: Open guarded websockets by engine.io sid, to close them with a code.
        self.websockets: dict[str, Any] = {}
        # Sockets already refused: what they still send is dropped without a word.
        self._refused: weakref.WeakSet[Any] = weakref.WeakSet()

    async def handle(self, eio_sid: str, data: Any) -> None:
        """Handle one engine.io message of ``eio_sid``."""
        sio = self._sio
        if sio.eio.sockets.get(eio_sid) in self._refused:
            return
        if isinstance(data, bytes | bytearray):
            await self.refuse(eio_sid)
            return
        if not isinstance(data, str):  # engine.io parsed JSON that is no Socket.IO packet
            self.drop(eio_sid, "malformed")
            return
        if data[:1] in ("5", "6"):  # BINARY_EVENT, BINARY_ACK: refused before decoding
            await self.refuse(eio_sid)
            return
        try:
            pkt = sio.packet_class(encoded_packet=data)
        except (ValueError, RecursionError):  # bad JSON, nested too deep, a huge ack id
            self.drop(eio_sid, "malformed")
            return
        kind, namespace = pkt.packet_type, pkt.namespace
        if kind == sio_packet.EVENT:
            await self._event(eio_sid, namespace, pkt.id, pkt.data)
        elif kind == sio_packet.CONNECT:
            await sio._handle_connect(eio_sid, namespace, pkt.data)
        elif kind == sio_packet.DISCONNECT:
            await sio._handle_disconnect(eio_sid, namespace, sio.reason.CLIENT_DISCONNECT)
        elif kind == sio_packet.ACK:
            await sio._handle_ack(eio_sid, namespace, pkt.id, pkt.data)
        else:  # CONNECT_ERROR is the server's to send; 7 to 9 are no type at all
            self.drop(eio_sid, "malformed")

    async def _event(self, eio_sid: str, namespace: str | None, ack_id: Any, data: Any) -> None:
        if not (isinstance(data, list) and data and isinstance(data[0], str)):
            # python-socketio would index or hash the name and fail in a task nobody awaits.
            self.drop(eio_sid, "malformed")
            return
        if data[0] in RESERVED_EVENTS:
            self.drop(eio_sid, "reserved_event")
            return
        sio = self._sio
        namespace = namespace or "/"
        sid = sio.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not sio.manager.is_connected(sid, namespace):
            self.drop(eio_sid, "unknown_namespace")
            return
        await sio._handle_event(eio_sid, namespace, ack_id, data)

    def drop(self, eio_sid: str, reason: str) -> None:
        """Count and log a packet that is ignored; the connection stays."""
        _refused[reason] += 1
        log.info(
            "packet ignored",
            extra={"event": "packet_refused", "reason": reason, "address": self._address(eio_sid)},
        )

    async def refuse(self, eio_sid: str) -> None:
        """Count, log and close the connection ``eio_sid``, which sent a binary packet."""
        _refused["binary"] += 1
        log.warning(
            "connection closed: binary packet",
            extra={
                "event": "packet_refused",
                "reason": "binary",
                "address": self._address(eio_sid),
            },
        )
        socket = self._sio.eio.sockets.get(eio_sid)
        websocket = self.websockets.get(eio_sid)
        if socket is not None:
            self._refused.add(socket)
            # The disconnect handlers run first, so the state is gone when the client learns;
            # engine.io's CLOSE packet would never reach a long-polling client (the session is
            # gone at its next request), and over a websocket the close code says why.
            await socket.close(
                wait=False, abort=True, reason=self._sio.eio.reason.SERVER_DISCONNECT
            )
        if websocket is not None:
            await websocket.refuse(WSCloseCode.UNSUPPORTED_DATA, _BINARY_REASON)

    def count_oversized(self, eio_sid: str) -> None:
        """A frame over the limit closed ``eio_sid`` (aiohttp closed it)."""
        _refused["oversized"] += 1
        log.warning(
            "connection closed: frame over the limit",
            extra={
                "event": "packet_refused",
                "reason": "oversized",
                "address": self._address(eio_sid),
                "limit": self._sio.eio.max_http_buffer_size,
            },
        )

    def _address(self, eio_sid: str) -> str | None:
        request = self._sio.environ.get(eio_sid, {}).get("aiohttp.request")
        return getattr(request, "remote", None)


def _frame_kind(frame: str | bytes) -> str | None:
    """``None`` for a frame engine.io may decode; else the reason to refuse or drop it."""
    if not isinstance(frame, str):
        return "binary"
    kind, rest = frame[:1], frame[1:]
    if kind == "b":  # engine.io's base64 binary message
        return "binary"
    if kind == "4":
        return None if rest[:1] in ("0", "1", "2", "3", "4", "5", "6") else "malformed"
    # The other types carry nothing but the upgrade's probe; engine.io would parse the rest.
    return None if kind in ("1", "2", "3", "5", "6") and rest in ("", "probe") else "malformed"


def _guarded_websocket_class(base: type[Any], guard: _MessageGuard) -> type[Any]:
    """A subclass of the driver's websocket whose ``wait`` refuses binary and garbage frames."""

    async def call(self: Any, environ: dict[str, Any]) -> Any:
        sid = _engineio_sid(self)
        guard.websockets[sid] = self
        try:
            return await base.__call__(self, environ)
        finally:
            guard.websockets.pop(sid, None)

    async def wait(self: Any) -> str | bytes:
        while True:
            if self._ttminis_refused:
                raise OSError("connection refused by the socket guard")
            frame = await _receive(self, guard)
            kind = _frame_kind(frame)
            if kind is None:
                return frame
            if kind == "binary":
                await guard.refuse(_engineio_sid(self))
            else:
                guard.drop(_engineio_sid(self), kind)
                # Buffered frames come without a pause: yield as engine.io does between frames,
                # or a flood of garbage would hold the loop from every other connection.
                await asyncio.sleep(0)

    async def refuse(self: Any, code: int, reason: bytes) -> None:
        self._ttminis_refused = True
        sock = getattr(self, "_sock", None)
        if isinstance(sock, web.WebSocketResponse):
            await sock.close(code=code, message=reason)
        else:
            await self.close()

    return type(
        f"Guarded{base.__name__}",
        (base,),
        {
            "__doc__": base.__doc__,
            "__call__": call,
            "wait": wait,
            "refuse": refuse,
            "_ttminis_guard": guard,
            "_ttminis_refused": False,
        },
    )


async def _receive(websocket: Any, guard: _MessageGuard) -> str | bytes:
    """The next frame, as the aiohttp driver's ``wait`` reads it, noticing oversized frames."""
    sock = getattr(websocket, "_sock", None)
    if not isinstance(sock, web.WebSocketResponse):
        frame: str | bytes = await super(type(websocket), websocket).wait()
        return frame
    message = await sock.receive()
    if isinstance(message.data, str | bytes):
        return message.data
    if (
        isinstance(message.data, WebSocketError)
        and message.data.code == WSCloseCode.MESSAGE_TOO_BIG
    ):
        guard.count_oversized(_engineio_sid(websocket))
    raise OSError("websocket closed")


def _engineio_sid(websocket: Any) -> str:
    # The driver is built with the socket's bound ``_websocket_handler``.
    return str(websocket.handler.__self__.sid)


# -- logs --------------------------------------------------------------------------------------


class LogRateLimit(logging.Filter):
    """Lets each message shape through ``burst`` times per ``window`` seconds; counts the rest.

    A shape is a logging call site (logger, level, file and line, and the ``reason`` extra where
    there is one), so a flood of one bad packet is a few lines a minute whatever it carries. The
    first record let through after some were held back carries ``suppressed``: how many. Long
    string arguments are cut, so one line stays small even when a client chose what it holds.
    """

    #: Distinct shapes remembered; past it the counts start over (shapes are call sites: few).
    MAX_SHAPES = 1024
    MAX_ARG_CHARS = 200

    def __init__(
        self, burst: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()  # handlers may log from threads
        # shape -> [window start, let through in it, held back since the last let through]
        self._shapes: dict[tuple[str, int, str, int, str], list[float]] = {}
        #: Records held back since this filter was made.
        self.suppressed_total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` goes on; held-back records are only counted."""
        # A ``reason`` extra splits a call site: one flood does not hide another kind.
        shape = (record.name, record.levelno, record.pathname, record.lineno, _reason(record))
        now = self._clock()
        with self._lock:
            state = self._shapes.get(shape)
            if state is None:
                if len(self._shapes) >= self.MAX_SHAPES:
                    self._shapes.clear()
                state = self._shapes[shape] = [now, 0, 0]
            elif now - state[0] >= self.window:
                state[0], state[1] = now, 0
            if state[1] >= self.burst:
                state[2] += 1
                self.suppressed_total += 1
                return False
            state[1] += 1
            held_back, state[2] = int(state[2]), 0
        if held_back:
            record.suppressed = held_back
        _clip_args(record, self.MAX_ARG_CHARS)
        return True


def _reason(record: logging.LogRecord) -> str:
    reason = getattr(record, "reason", "")
    return reason if isinstance(reason, str) else ""


def _clip_args(record: logging.LogRecord, limit: int) -> None:
    args = record.args
    if isinstance(args, tuple) and any(isinstance(a, str) and len(a) > limit for a in args):
        record.args = tuple(
            a[:limit] + "..." if isinstance(a, str) and len(a) > limit else a for a in args
        )
