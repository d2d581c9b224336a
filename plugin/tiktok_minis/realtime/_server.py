"""The game's ``AsyncServer`` as the plugin needs it: built with the plugin's defaults, given
the Redis client manager when the game built it itself, and hung up on at shutdown."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import socketio
from socketio.async_pubsub_manager import AsyncPubSubManager

from tiktok_minis.errors import ConfigurationError
from tiktok_minis.realtime._guard import DEFAULT_MAX_FRAME_BYTES
from tiktok_minis.realtime._redis import RedisManager

__all__ = ["build_server", "hang_up", "share_rooms"]

log = logging.getLogger("tiktok_minis")


def build_server(manager: RedisManager | None, **options: Any) -> socketio.AsyncServer:
    """An ``AsyncServer`` for aiohttp with the plugin's limits; ``manager`` shares rooms."""
    if manager is not None:
        options.setdefault("client_manager", manager)
    options.setdefault("async_mode", "aiohttp")
    options.setdefault("cors_allowed_origins", [])
    options.setdefault("max_http_buffer_size", DEFAULT_MAX_FRAME_BYTES)
    return socketio.AsyncServer(**options)


def share_rooms(sio: socketio.AsyncServer, make_manager: Callable[[], RedisManager]) -> None:
    """Make sure ``sio`` shares rooms and pushes through Redis.

    A server still on python-socketio's default in-process manager gets the Redis manager
    (nothing was emitted through it yet); one with a manager of another kind is refused,
    since pushes would silently stay in one process.
    """
    if isinstance(sio.manager, AsyncPubSubManager):
        return
    if type(sio.manager) is not socketio.AsyncManager:
        raise ConfigurationError(
            "TTMINIS_REDIS_URL is set but the AsyncServer given to attach() has a client "
            f"manager of its own ({type(sio.manager).__name__}): build the server with "
            "minis.create_server(), or pass client_manager=minis.redis_manager()."
        )
    manager = make_manager()
    manager.set_server(sio)
    sio.manager = manager
    log.info(
        "redis manager installed on the game's server", extra={"event": "redis_manager_installed"}
    )


async def hang_up(sio: socketio.AsyncServer) -> None:
    """Tell every client this process is going away, so it reconnects elsewhere and resumes its
    session, end each transport, and close the client manager's links.

    engineio sends the close packet but leaves the websocket open until the client hangs up,
    which held a SIGTERM for seconds while any tab was open; a ``None`` in the send queue is
    engineio's own signal for its writer to close the websocket after what is queued.
    ``wait=False``: a socket whose client is already gone never drains its queue, and
    engineio's ``disconnect()`` would wait on it forever.
    """
    for socket in list(sio.eio.sockets.values()):
        await socket.close(wait=False, reason=sio.eio.reason.SERVER_DISCONNECT)
        socket.queue.put_nowait(None)
    close_manager = getattr(sio.manager, "close", None)
    if close_manager is not None:
        await close_manager()
