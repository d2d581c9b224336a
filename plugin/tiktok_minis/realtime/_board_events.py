"""The leaderboard events: ``leaderboard:join``, ``leaderboard:leave``, ``leaderboard:submit``
and ``leaderboard:around`` (``leaderboard:update``, the push to a board's room, is sent with the
other pushes by ``Realtime``)."""

from __future__ import annotations

from typing import Any

import socketio

from tiktok_minis.realtime._connections import Connection, board_room
from tiktok_minis.realtime._wire import (
    Ack,
    AroundPayload,
    BoardPayload,
    SubmitPayload,
    entry_to_wire,
    parse,
)
from tiktok_minis.services.leaderboards import Leaderboards

__all__ = ["BoardEvents"]


class BoardEvents:
    """The handlers of the leaderboard events."""

    def __init__(
        self, sio: socketio.AsyncServer, *, leaderboards: Leaderboards, namespace: str
    ) -> None:
        self._sio = sio
        self._leaderboards = leaderboards
        self._namespace = namespace

    async def join(self, sid: str, connection: Connection, data: Any) -> Ack:
        """``leaderboard:join``: watch a board; the ack has its top and the caller's entry."""
        board = self._leaderboards.boards.get(parse(BoardPayload, data).board).name
        entries = await self._leaderboards.top(board)
        me = None
        if connection.open_id is not None:
            me = await self._leaderboards.entry(board, connection.open_id)
        await self._sio.enter_room(sid, board_room(board), self._namespace)
        return {
            "board": board,
            "entries": [entry_to_wire(entry) for entry in entries],
            "me": entry_to_wire(me) if me else None,
        }

    async def leave(self, sid: str, connection: Connection, data: Any) -> Ack:
        """``leaderboard:leave``: stop watching a board."""
        board = self._leaderboards.boards.get(parse(BoardPayload, data).board).name
        await self._sio.leave_room(sid, board_room(board), self._namespace)
        return {}

    async def submit(self, sid: str, connection: Connection, data: Any) -> Ack:
        """``leaderboard:submit``: a score of the player logged in here."""
        payload = parse(SubmitPayload, data)
        open_id = connection.require_login()
        entry = await self._leaderboards.submit(
            open_id, payload.board, payload.score, from_client=True
        )
        return {"board": payload.board, "me": entry_to_wire(entry)}

    async def around(self, sid: str, connection: Connection, data: Any) -> Ack:
        """``leaderboard:around``: the entries near the caller's rank."""
        payload = parse(AroundPayload, data)
        board = self._leaderboards.boards.get(payload.board).name
        open_id = connection.require_login()
        entries = await self._leaderboards.around(board, open_id, payload.radius)
        return {"board": board, "entries": [entry_to_wire(entry) for entry in entries]}
