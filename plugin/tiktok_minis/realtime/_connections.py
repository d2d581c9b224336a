"""The connections of this process on the plugin's namespace: who is logged in on each, its
budgets (events, failed logins) and the player room it is bound to.

Everything here lives as long as the socket and in this process only; the rooms are shared
across processes by the server's client manager.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import socketio

from tiktok_minis.errors import NotLoggedIn
from tiktok_minis.realtime._ratelimit import TokenBucket
from tiktok_minis.realtime._wire import Ack
from tiktok_minis.services.players import Player
from tiktok_minis.services.sessions import SessionEnd, session_digest
from tiktok_minis.settings import Settings
from tiktok_minis.support.proxies import TrustedProxies

__all__ = ["Connection", "Connections", "Handler", "board_room", "player_room"]


@dataclass(slots=True)
class Connection:
    """What the server knows of one connection; lives as long as the socket."""

    bucket: TokenBucket
    #: Logins that may still fail on this connection, and the address it connects from.
    login_failures: TokenBucket
    address: str
    open_id: str | None = None
    public_id: str | None = None
    #: The session this connection logged in or resumed with, as its digest, and its epoch.
    session: str | None = None
    epoch: int = 0

    def require_login(self) -> str:
        """The ``open_id`` logged in here; :class:`NotLoggedIn` when nobody is."""
        if self.open_id is None:
            raise NotLoggedIn()
        return self.open_id

    def ended_by(self, end: SessionEnd) -> bool:
        """Whether ``end`` ends the session this connection is bound with."""
        if self.public_id != end.public_id:
            return False
        if end.digest is not None:
            return end.digest == self.session
        return end.epoch is not None and self.epoch < end.epoch


#: An event handler: ``(sid, connection, payload)`` to the ack's fields after ``"ok": true``.
Handler = Callable[[str, Connection, Any], Awaitable[Ack]]


def board_room(board: str) -> str:
    """The room of a board's watchers."""
    return f"board:{board}"


def player_room(public_id: str) -> str:
    """The room of a player's own connections, on every process."""
    return f"player:{public_id}"


class Connections:
    """The plugin's connections by ``sid``, their budgets, and their binding to a player."""

    def __init__(self, sio: socketio.AsyncServer, settings: Settings) -> None:
        self._sio = sio
        self._settings = settings
        self._namespace = settings.namespace
        self._proxies = TrustedProxies(settings.trusted_proxies)
        self._by_sid: dict[str, Connection] = {}
        self._socket_limits: dict[str, tuple[TokenBucket, TokenBucket]] = {}

    def __len__(self) -> int:
        return len(self._by_sid)

    def get(self, sid: str) -> Connection | None:
        """The connection under ``sid``, or ``None`` (never connected, or gone)."""
        return self._by_sid.get(sid)

    def items(self) -> Iterator[tuple[str, Connection]]:
        """Each ``(sid, connection)``, from a copy: callers may unbind as they go."""
        return iter(list(self._by_sid.items()))

    def new(self, sid: str, environ: dict[str, Any]) -> Connection:
        """A connection for the socket that is connecting as ``sid``, not yet added."""
        request = environ.get("aiohttp.request")
        bucket, login_failures = self._limits_of(sid)
        return Connection(
            bucket,
            login_failures,
            # The aiohttp driver puts 127.0.0.1 in REMOTE_ADDR whatever the peer.
            self._proxies.client_address(
                getattr(request, "remote", None),
                request.headers.get("X-Forwarded-For") if request is not None else None,
            ),
        )

    def add(self, sid: str, connection: Connection) -> None:
        """Hold ``connection`` under ``sid``: its events are answered from now on."""
        self._by_sid[sid] = connection

    def discard(self, sid: str) -> None:
        """Forget the connection under ``sid``, keeping its socket's budgets."""
        self._by_sid.pop(sid, None)

    def close(self, sid: str) -> None:
        """Forget the connection under ``sid`` and, once its socket is gone, its budgets."""
        self._by_sid.pop(sid, None)
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, self._namespace)
        if eio_sid is not None and eio_sid not in self._sio.eio.sockets:
            self._socket_limits.pop(eio_sid, None)

    def _limits_of(self, sid: str) -> tuple[TokenBucket, TokenBucket]:
        """The event and failed-login buckets of the socket under ``sid``.

        Kept per engine.io socket, not per namespace connection: a client that leaves the
        namespace and joins it again (``41`` then ``40``) gets a new sid but not new budgets.
        """
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, self._namespace) or sid
        limits = self._socket_limits.get(eio_sid)
        if limits is None:
            settings = self._settings
            limits = self._socket_limits[eio_sid] = (
                TokenBucket(settings.events_per_second, settings.events_burst),
                TokenBucket(settings.failed_logins_per_minute / 60, settings.failed_logins_burst),
            )
            if len(self._socket_limits) > 2 * len(self._by_sid) + 1000:
                # Sockets that closed after leaving the namespace never said goodbye here.
                live = set(self._sio.eio.sockets)
                for gone in [key for key in self._socket_limits if key not in live]:
                    del self._socket_limits[gone]
        return limits

    async def bind(self, sid: str, connection: Connection, player: Player, session: str) -> None:
        """Log ``player`` in on ``connection`` with ``session``, in the player's room.

        The server raises ``ValueError`` when the client went away meanwhile (its namespace
        holds nobody any more).
        """
        if connection.public_id is not None and connection.public_id != player.id:
            await self._sio.leave_room(sid, player_room(connection.public_id), self._namespace)
        connection.open_id = player.open_id
        connection.public_id = player.id
        connection.session = session_digest(session)
        connection.epoch = player.session_epoch
        await self._sio.enter_room(sid, player_room(player.id), self._namespace)

    async def unbind(self, sid: str, connection: Connection) -> None:
        """Back to a connection that nobody logged in on (a spectator)."""
        if connection.public_id is not None:
            await self._sio.leave_room(sid, player_room(connection.public_id), self._namespace)
        connection.open_id = connection.public_id = connection.session = None
