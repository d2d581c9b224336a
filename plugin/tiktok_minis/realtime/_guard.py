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

import json
from collections.abc import Callable
from typing import Any

import socketio

from tiktok_minis.realtime._logs import LogRateLimit, route_logs
from tiktok_minis.realtime._packets import RESERVED_EVENTS, MessageGuard, guarded_websocket_class
from tiktok_minis.realtime._refusals import REFUSAL_REASONS, refused_packets

# The checks, the log quieting and the count live in their own modules; their public names are
# offered here too, beside ``harden``, as the one place that describes the whole guard.
__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "REFUSAL_REASONS",
    "RESERVED_EVENTS",
    "LogRateLimit",
    "harden",
    "refused_packets",
]

#: The frame limit when the game set none: Socket.IO frames carry small JSON payloads.
DEFAULT_MAX_FRAME_BYTES = 64 * 1024
# engine.io's own default; a server still holding it was built without a limit in mind.
_ENGINEIO_DEFAULT_BUFFER = 1_000_000
# engine.io's guard against int parsing that grows quadratically with the digits.
_MAX_INT_DIGITS = 100

_MARK = "_ttminis_hardened"
# What python-socketio's own message dispatch calls, and so the guard too.
_DISPATCH = ("_handle_connect", "_handle_disconnect", "_handle_event", "_handle_ack")


def harden(sio: socketio.AsyncServer) -> None:
    """Apply the plugin's limits to ``sio`` (idempotent)."""
    if getattr(sio, _MARK, False):
        return
    _require_json_text(sio)
    _limit_frames(sio)
    _parse_big_ints(sio)
    guard = MessageGuard(sio)
    _guard_messages(sio, guard)
    _guard_websocket_frames(sio, guard)
    route_logs(sio)
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


def _guard_messages(sio: socketio.AsyncServer, guard: MessageGuard) -> None:
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


def _guard_websocket_frames(sio: socketio.AsyncServer, guard: MessageGuard) -> None:
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
    sio.eio._async = {**drivers, "websocket": guarded_websocket_class(base, guard)}
