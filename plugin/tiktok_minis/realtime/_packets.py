"""The packet and frame checks of a hardened server: :class:`MessageGuard` in front of
python-socketio's dispatch, and a websocket driver that looks at each frame before engine.io.

What each refusal does to the client is told in ``_guard``; each is counted (``_refusals``) and
logged on the guard's logger.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

import socketio
from aiohttp import WebSocketError, WSCloseCode, web
from socketio import packet as sio_packet

from tiktok_minis.realtime._logs import GUARD_LOGGER
from tiktok_minis.realtime._refusals import count_refusal

__all__ = ["RESERVED_EVENTS", "MessageGuard", "guarded_websocket_class"]

log = logging.getLogger(GUARD_LOGGER)

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
_BINARY_REASON = b"binary packets are not part of the protocol"


class MessageGuard:
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
        count_refusal(reason)
        log.info(
            "packet ignored",
            extra={"event": "packet_refused", "reason": reason, "address": self._address(eio_sid)},
        )

    async def refuse(self, eio_sid: str) -> None:
        """Count, log and close the connection ``eio_sid``, which sent a binary packet."""
        count_refusal("binary")
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
        count_refusal("oversized")
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


def guarded_websocket_class(base: type[Any], guard: MessageGuard) -> type[Any]:
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


async def _receive(websocket: Any, guard: MessageGuard) -> str | bytes:
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
