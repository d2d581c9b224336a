"""``Realtime``: the plugin's events on the game's ``AsyncServer``, and its pushes.

Each event goes through one guard: the connection's event budget, then its handler (the account
events in ``_account``, the leaderboard ones in ``_board_events``), and every answer is the ack,
``{"ok": true, ...}`` or ``{"ok": false, "error": {...}}``. It never raises into Socket.IO: an
unexpected failure becomes ``internal_error`` with a reference that the log line carries too.
Service change events become pushes: ``player:update`` to a player's own connections, coalesced
``leaderboard:update`` to a board's watchers, ``session:ended`` to connections whose session
ended elsewhere.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from tiktok_minis.errors import (
    InternalError,
    MinisError,
    NotAuthorized,
    NotLoggedIn,
    RateLimited,
    StorageUnavailable,
    UnknownPlayer,
)
from tiktok_minis.realtime._account import AccountEvents, LoginHook
from tiktok_minis.realtime._board_events import BoardEvents
from tiktok_minis.realtime._connections import (
    Connection,
    Connections,
    Handler,
    board_room,
    player_room,
)
from tiktok_minis.realtime._pushes import BoardPusher
from tiktok_minis.realtime._wire import Ack, entry_to_wire, player_to_wire
from tiktok_minis.services.leaderboards import BoardChange, Leaderboards
from tiktok_minis.services.players import Player, Players
from tiktok_minis.services.sessions import InvalidSession, SessionEnd, Sessions
from tiktok_minis.settings import Settings
from tiktok_minis.support.concurrency import TaskSet

__all__ = ["EventObserver", "LoginHook", "Realtime"]

log = logging.getLogger("tiktok_minis.realtime")

#: Called after every answered event: the event, its ack and the seconds it took.
EventObserver = Callable[[str, Ack, float], None]


def _failure(error: MinisError) -> Ack:
    return {"ok": False, "error": {"code": error.code, "message": error.message}}


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
        self._leaderboards = leaderboards
        self._sessions = sessions
        self._namespace = settings.namespace
        self._on_event = on_event
        self._on_push = on_push
        self._connections = Connections(sio, settings)
        self._account = AccountEvents(
            players=players,
            sessions=sessions,
            connections=self._connections,
            settings=settings,
            login_hooks=login_hooks,
        )
        self._boards = BoardEvents(sio, leaderboards=leaderboards, namespace=self._namespace)
        self._pusher = BoardPusher(settings.push_interval_ms / 1000, self._push_board)
        self._end_tasks = TaskSet("session-ends")

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
        account, boards = self._account, self._boards
        events: dict[str, Handler] = {
            "tiktok:login": account.login,
            "tiktok:authorize": account.authorize,
            "tiktok:logout": account.logout,
            "tiktok:me": account.me,
            "leaderboard:join": boards.join,
            "leaderboard:leave": boards.leave,
            "leaderboard:submit": boards.submit,
            "leaderboard:around": boards.around,
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
            await self._connections.unbind(sid, connection)
            return _failure(NotLoggedIn("This player no longer exists; log in again."))
        except NotAuthorized as exc:
            ack = _failure(exc)
            if exc.player is not None:
                # The player of this connection's own login or authorize: their own shape.
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
        connection = self._connections.new(sid, environ)
        session = auth.get("session") if isinstance(auth, dict) else None
        if session is None:
            self._connections.add(sid, connection)
            return
        player = await self._resume(session)
        self._connections.add(sid, connection)
        try:
            await self._connections.bind(sid, connection, player, session)
        except ValueError:
            # The client went away while its session was being checked: nothing to bind.
            self._connections.discard(sid)
            return
        log.info("session resumed", extra={"event": "resume", "player": player.id})

    async def _resume(self, session: str) -> Player:
        """The player of ``session``; a refused connection, with the code, when it is not valid."""
        try:
            return await self._sessions.resume(session)
        except InvalidSession as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"code": exc.code}
            ) from None
        except Exception as exc:  # noqa: BLE001 (a refusal with a code; logged there)
            error = self._unexpected("resume", exc)
            raise socketio.exceptions.ConnectionRefusedError(
                error.message, {"code": error.code}
            ) from None

    async def _on_disconnect(self, sid: str, *_reason: Any) -> None:
        self._connections.close(sid)

    # -- pushes -------------------------------------------------------------------------------

    def board_changed(self, change: BoardChange) -> None:
        """A service listener: the board's top may have changed; push it soon."""
        self._pusher.changed(change.board)

    async def _push_board(self, board: str) -> None:
        entries = await self._leaderboards.top(board)
        await self._sio.emit(
            "leaderboard:update",
            {"board": board, "entries": [entry_to_wire(entry) for entry in entries]},
            room=board_room(board),
            namespace=self._namespace,
        )
        self._pushed("leaderboard:update")

    def sessions_ended(self, ends: list[SessionEnd]) -> None:
        """A session listener: unbind this process's connections whose sessions ended, and tell
        each of them with ``session:ended``."""
        for sid, connection in self._connections.items():
            for end in ends:
                if connection.ended_by(end):
                    self._end_tasks.spawn(self._end_connection(sid, connection, end.reason))
                    break

    async def _end_connection(self, sid: str, connection: Connection, reason: str) -> None:
        await self._connections.unbind(sid, connection)
        await self._sio.emit("session:ended", {"reason": reason}, to=sid, namespace=self._namespace)
        self._pushed("session:ended")

    async def push_player(self, player: Player) -> None:
        """Send ``player:update`` to every connection of that player (across processes)."""
        await self._sio.emit(
            "player:update",
            {"player": player_to_wire(player)},
            room=player_room(player.id),
            namespace=self._namespace,
        )
        self._pushed("player:update")

    def _pushed(self, event: str) -> None:
        if self._on_push is not None:
            self._on_push(event)
