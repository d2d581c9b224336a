"""The Socket.IO face: event handlers, payload validation, sessions, rate limits and pushes.

This is the only module that knows Socket.IO. It validates each payload into a typed command,
calls a service, and answers every event through its ack with ``{"ok": true, ...}`` or
``{"ok": false, "error": {...}}``. It never raises into Socket.IO: an unexpected failure becomes
``internal_error`` with a reference that the log line carries too. Service change events become
pushes: ``player:update`` to a player's own connections, coalesced ``leaderboard:update`` to a
board's watchers.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import socketio

from tiktok_minis.errors import (
    InternalError,
    LoginFailed,
    MinisError,
    NotAuthorized,
    NotLoggedIn,
    RateLimited,
    StorageUnavailable,
    UnknownPlayer,
)
from tiktok_minis.realtime._pushes import BoardPusher
from tiktok_minis.realtime._ratelimit import KeyedBuckets, TokenBucket
from tiktok_minis.realtime._wire import (
    AroundPayload,
    AuthorizePayload,
    BoardPayload,
    EmptyPayload,
    LoginPayload,
    LogoutPayload,
    SubmitPayload,
    entry_to_wire,
    parse,
    player_to_wire,
)
from tiktok_minis.services.leaderboards import BoardChange, Leaderboards
from tiktok_minis.services.players import Player, Players
from tiktok_minis.services.sessions import InvalidSession, SessionEnd, Sessions, session_digest
from tiktok_minis.settings import Settings
from tiktok_minis.support.concurrency import TaskSet
from tiktok_minis.support.proxies import TrustedProxies

__all__ = ["EventObserver", "LoginHook", "Realtime"]

log = logging.getLogger("tiktok_minis.realtime")

Ack = dict[str, Any]
LoginHook = Callable[[str, Player], Awaitable[None]]
#: Called after every answered event: the event, its ack and the seconds it took.
EventObserver = Callable[[str, Ack, float], None]


@dataclass(slots=True)
class _Connection:
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
    boards: set[str] = field(default_factory=set)

    def require_login(self) -> str:
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


Handler = Callable[[str, _Connection, Any], Awaitable[Ack]]


def _failure(error: MinisError) -> Ack:
    return {"ok": False, "error": {"code": error.code, "message": error.message}}


def _board_room(board: str) -> str:
    return f"board:{board}"


def _player_room(public_id: str) -> str:
    return f"player:{public_id}"


class Realtime:
    """Registers the plugin's events on the game's ``AsyncServer`` and pushes changes."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        *,
        players: Players,
        leaderboards: Leaderboards,
        sessions: Sessions,
        settings: Settings,
        login_hooks: list[LoginHook],
        on_event: EventObserver | None = None,
        on_push: Callable[[str], None] | None = None,
        is_outage: Callable[[BaseException], bool] = lambda _: False,
    ) -> None:
        """``is_outage`` tells a database that is not answering from a bug: the first is
        answered ``storage_unavailable``, the second ``internal_error``."""
        self._sio = sio
        self._is_outage = is_outage
        self._players = players
        self._leaderboards = leaderboards
        self._sessions = sessions
        self._settings = settings
        self._namespace = settings.namespace
        self._login_hooks = login_hooks
        self._on_event = on_event
        self._on_push = on_push
        self._connections: dict[str, _Connection] = {}
        self._socket_limits: dict[str, tuple[TokenBucket, TokenBucket]] = {}
        self._pusher = BoardPusher(settings.push_interval_ms / 1000, self._push_board)
        self._end_tasks = TaskSet("session-ends")
        self._proxies = TrustedProxies(settings.trusted_proxies)
        self._address_failures = KeyedBuckets(
            settings.failed_logins_per_address_per_minute / 60,
            settings.failed_logins_per_address_burst,
        )

    @property
    def connection_count(self) -> int:
        """How many sockets this process holds on the plugin's namespace."""
        return len(self._connections)

    def open_id_of(self, sid: str) -> str | None:
        """The ``open_id`` of the player logged in on connection ``sid``, or ``None``."""
        connection = self._connections.get(sid)
        return connection.open_id if connection is not None else None

    def register(self) -> None:
        """Put the handlers on the server (once, before it serves)."""
        on = self._sio.on
        ns = self._namespace
        on("connect", namespace=ns)(self._on_connect)
        on("disconnect", namespace=ns)(self._on_disconnect)
        events: dict[str, Handler] = {
            "tiktok:login": self._login,
            "tiktok:authorize": self._authorize,
            "tiktok:logout": self._logout,
            "tiktok:me": self._me,
            "leaderboard:join": self._join,
            "leaderboard:leave": self._leave,
            "leaderboard:submit": self._submit,
            "leaderboard:around": self._around,
        }
        for event, handler in events.items():
            on(event, namespace=ns)(self._guard(event, handler))

    def start(self) -> None:
        """Push again after a ``close`` (the plugin restarted)."""
        self._pusher.start()
        if self._end_tasks.closed:
            self._end_tasks = TaskSet("session-ends")

    async def close(self) -> None:
        """Stop pushing. Closing twice is harmless."""
        await self._pusher.close()
        await self._end_tasks.close()

    # -- the guard every event goes through ---------------------------------------------------

    def _guard(self, event: str, handler: Handler) -> Callable[..., Awaitable[Ack]]:
        async def on_event(sid: str, data: Any = None, *_extra: Any) -> Ack:
            started = time.perf_counter()
            ack = await self._answer(event, handler, sid, data)
            if self._on_event is not None:
                self._on_event(event, ack, time.perf_counter() - started)
            return ack

        on_event.__name__ = f"on_{event.replace(':', '_')}"
        return on_event

    async def _answer(self, event: str, handler: Handler, sid: str, data: Any) -> Ack:
        """The ack for one event: the handler's answer, or the error it raised, as the wire says."""
        connection = self._connections.get(sid)
        if connection is None:  # an event racing the disconnect
            return _failure(NotLoggedIn("The connection is closing."))
        if not connection.bucket.take():
            return _failure(RateLimited())
        try:
            return {"ok": True, **await handler(sid, connection, data)}
        except UnknownPlayer:
            # The player was forgotten (on any process) after this connection logged in.
            await self._unbind(sid, connection)
            return _failure(NotLoggedIn("This player no longer exists; log in again."))
        except NotAuthorized as exc:
            ack = _failure(exc)
            if isinstance(exc.player, Player):
                ack["player"] = player_to_wire(exc.player)
            return ack
        except MinisError as exc:
            if exc.log_id:
                log.info(
                    "event refused",
                    extra={"event": event, "code": exc.code, "log_id": exc.log_id},
                )
            return _failure(exc)
        except Exception as exc:  # noqa: BLE001 (every failure becomes an ack; logged there)
            return _failure(self._unexpected(event, exc))

    def _unexpected(self, event: str, exc: Exception) -> MinisError:
        """The error to answer for an exception no handler expected, logged once."""
        if self._is_outage(exc):
            log.warning("event failed: database unavailable", extra={"event": event})
            return StorageUnavailable()
        reference = secrets.token_hex(6)
        log.error("event failed", extra={"event": event, "reference": reference}, exc_info=exc)
        return InternalError(reference)

    # -- connection lifecycle -----------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        request = environ.get("aiohttp.request")
        bucket, login_failures = self._limits_of(sid)
        connection = _Connection(
            bucket,
            login_failures,
            # The aiohttp driver puts 127.0.0.1 in REMOTE_ADDR whatever the peer.
            self._proxies.client_address(
                getattr(request, "remote", None),
                request.headers.get("X-Forwarded-For") if request is not None else None,
            ),
        )
        session = auth.get("session") if isinstance(auth, dict) else None
        if session is not None:
            try:
                player = await self._sessions.resume(session)
            except InvalidSession as exc:
                raise socketio.exceptions.ConnectionRefusedError(
                    exc.message, {"code": exc.code}
                ) from None
            except Exception as exc:  # noqa: BLE001 (a refusal with a code; logged there)
                error = self._unexpected("resume", exc)
                raise socketio.exceptions.ConnectionRefusedError(
                    error.message, {"code": error.code}
                ) from None
            self._connections[sid] = connection
            try:
                await self._bind(sid, connection, player, session)
            except ValueError:
                # The client went away while its session was being checked: nothing to bind.
                self._connections.pop(sid, None)
                return
            log.info("session resumed", extra={"event": "resume", "player": player.id})
        else:
            self._connections[sid] = connection

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
            if len(self._socket_limits) > 2 * len(self._connections) + 1000:
                # Sockets that closed after leaving the namespace never said goodbye here.
                live = set(self._sio.eio.sockets)
                for gone in [key for key in self._socket_limits if key not in live]:
                    del self._socket_limits[gone]
        return limits

    async def _on_disconnect(self, sid: str, *_reason: Any) -> None:
        self._connections.pop(sid, None)
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, self._namespace)
        if eio_sid is not None and eio_sid not in self._sio.eio.sockets:
            self._socket_limits.pop(eio_sid, None)

    async def _bind(self, sid: str, connection: _Connection, player: Player, session: str) -> None:
        if connection.public_id is not None and connection.public_id != player.id:
            await self._sio.leave_room(sid, _player_room(connection.public_id), self._namespace)
        connection.open_id = player.open_id
        connection.public_id = player.id
        connection.session = session_digest(session)
        connection.epoch = player.session_epoch
        await self._sio.enter_room(sid, _player_room(player.id), self._namespace)

    async def _unbind(self, sid: str, connection: _Connection) -> None:
        """Back to a connection that nobody logged in on (a spectator)."""
        if connection.public_id is not None:
            await self._sio.leave_room(sid, _player_room(connection.public_id), self._namespace)
        connection.open_id = connection.public_id = connection.session = None

    # -- events -------------------------------------------------------------------------------

    async def _login(self, sid: str, connection: _Connection, data: Any) -> Ack:
        payload = parse(LoginPayload, data)
        player = await self._login_within_limits(connection, payload.code)
        session = self._sessions.issue(player)
        await self._bind(sid, connection, player, session)
        for hook in self._login_hooks:
            try:
                await hook(sid, player)
            except Exception:
                # The game's hook failing is the game's bug; the player is logged in regardless.
                log.exception("on_login hook failed", extra={"event": "hook_failed"})
        return {"player": player_to_wire(player), "session": session}

    async def _login_within_limits(self, connection: _Connection, code: str) -> Player:
        """Log in, unless this connection or its address has failed too often: a failed login
        costs a call to TikTok, so junk codes must not crowd out real players.

        The connection's token is taken before the call (so its concurrent attempts count too)
        and given back when the login succeeds. The address's is charged only when a login
        fails: many players behind one address (a carrier's NAT) may log in at once, while an
        address that keeps failing is refused until its debt is paid back.
        """
        by_address = self._address_failures.bucket(connection.address)
        if not connection.login_failures.take():
            raise RateLimited("Too many failed logins on this connection; wait and retry.")
        if by_address.empty:
            connection.login_failures.refund()
            raise RateLimited("Too many failed logins from this address; wait and retry.")
        try:
            player = await self._players.login(code)
        except LoginFailed:
            by_address.charge()
            raise
        except BaseException:
            # Not the code's fault (TikTok or the database did not answer): it does not count.
            connection.login_failures.refund()
            raise
        connection.login_failures.refund()
        return player

    async def _authorize(self, sid: str, connection: _Connection, data: Any) -> Ack:
        payload = parse(AuthorizePayload, data)
        open_id = connection.require_login()
        player = await self._players.authorize(open_id, payload.granted, payload.code)
        return {"player": player_to_wire(player)}

    async def _me(self, sid: str, connection: _Connection, data: Any) -> Ack:
        parse(EmptyPayload, data)
        if connection.open_id is None:
            return {"player": None}
        player = await self._players.get(connection.open_id)
        return {"player": player_to_wire(player) if player else None}

    async def _logout(self, sid: str, connection: _Connection, data: Any) -> Ack:
        payload = parse(LogoutPayload, data)
        open_id, public_id, session = connection.open_id, connection.public_id, connection.session
        if open_id is None or public_id is None:
            return {}  # nobody to log out: already the state the client asked for
        await self._unbind(sid, connection)
        if payload.everywhere:
            player = await self._players.get(open_id)
            if player is not None:
                await self._sessions.end_all(player)
        elif session is not None:
            await self._sessions.end(public_id, session)
        return {}

    async def _join(self, sid: str, connection: _Connection, data: Any) -> Ack:
        board = self._leaderboards.boards.get(parse(BoardPayload, data).board).name
        entries = await self._leaderboards.top(board)
        me = None
        if connection.open_id is not None:
            me = await self._leaderboards.entry(board, connection.open_id)
        await self._sio.enter_room(sid, _board_room(board), self._namespace)
        connection.boards.add(board)
        return {
            "board": board,
            "entries": [entry_to_wire(entry) for entry in entries],
            "me": entry_to_wire(me) if me else None,
        }

    async def _leave(self, sid: str, connection: _Connection, data: Any) -> Ack:
        board = self._leaderboards.boards.get(parse(BoardPayload, data).board).name
        await self._sio.leave_room(sid, _board_room(board), self._namespace)
        connection.boards.discard(board)
        return {}

    async def _submit(self, sid: str, connection: _Connection, data: Any) -> Ack:
        payload = parse(SubmitPayload, data)
        open_id = connection.require_login()
        entry = await self._leaderboards.submit(
            open_id, payload.board, payload.score, from_client=True
        )
        return {"board": payload.board, "me": entry_to_wire(entry)}

    async def _around(self, sid: str, connection: _Connection, data: Any) -> Ack:
        payload = parse(AroundPayload, data)
        board = self._leaderboards.boards.get(payload.board).name
        open_id = connection.require_login()
        entries = await self._leaderboards.around(board, open_id, payload.radius)
        return {"board": board, "entries": [entry_to_wire(entry) for entry in entries]}

    # -- pushes -------------------------------------------------------------------------------

    def board_changed(self, change: BoardChange) -> None:
        """A service listener: the board's top may have changed; push it soon."""
        self._pusher.changed(change.board)

    async def _push_board(self, board: str) -> None:
        entries = await self._leaderboards.top(board)
        await self._sio.emit(
            "leaderboard:update",
            {"board": board, "entries": [entry_to_wire(entry) for entry in entries]},
            room=_board_room(board),
            namespace=self._namespace,
        )
        if self._on_push is not None:
            self._on_push("leaderboard:update")

    def sessions_ended(self, ends: list[SessionEnd]) -> None:
        """A session listener: unbind this process's connections whose sessions ended, and tell
        each of them with ``session:ended``."""
        for sid, connection in list(self._connections.items()):
            for end in ends:
                if connection.ended_by(end):
                    self._end_tasks.spawn(self._end_connection(sid, connection, end.reason))
                    break

    async def _end_connection(self, sid: str, connection: _Connection, reason: str) -> None:
        await self._unbind(sid, connection)
        await self._sio.emit("session:ended", {"reason": reason}, to=sid, namespace=self._namespace)
        if self._on_push is not None:
            self._on_push("session:ended")

    async def push_player(self, player: Player) -> None:
        """Send ``player:update`` to every connection of that player (across processes)."""
        await self._sio.emit(
            "player:update",
            {"player": player_to_wire(player)},
            room=_player_room(player.id),
            namespace=self._namespace,
        )
        if self._on_push is not None:
            self._on_push("player:update")
