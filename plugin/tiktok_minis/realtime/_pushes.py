"""Coalesced board pushes: at most one per board per interval, always ending on the latest state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tiktok_minis.support.concurrency import TaskSet

__all__ = ["BoardPusher"]

log = logging.getLogger("tiktok_minis.pushes")


class BoardPusher:
    """Turns a stream of "board X changed" into paced pushes of board X's latest state.

    The first change of a quiet board is pushed at once; changes that arrive within the interval
    after a push fold into one more push at the end of it. The state is read when the push is
    made, never when the change happened, so the last push always shows the latest state.
    """

    def __init__(self, interval: float, push: Callable[[str], Awaitable[None]]) -> None:
        self._interval = interval
        self._push = push
        self._dirty: set[str] = set()
        self._running: set[str] = set()
        self._tasks = TaskSet("board-pusher")

    def changed(self, board: str) -> None:
        """Note that ``board`` changed; a push follows within one interval."""
        self._dirty.add(board)
        if board not in self._running:
            self._running.add(board)
            if self._tasks.spawn(self._drain(board)) is None:
                self._running.discard(board)

    async def _drain(self, board: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            while board in self._dirty:
                self._dirty.discard(board)
                started = loop.time()
                try:
                    await self._push(board)
                except Exception:
                    # A failed push (the database hiccuped) must not stop later ones.
                    log.exception(
                        "board push failed", extra={"event": "push_failed", "board": board}
                    )
                # Hold the board for the rest of the interval: changes meanwhile wait for the
                # next round, which reads the state afresh.
                await asyncio.sleep(max(0.0, self._interval - (loop.time() - started)))
        finally:
            self._running.discard(board)

    def start(self) -> None:
        """Push again after ``close``; a pusher that was never closed is already pushing."""
        if self._tasks.closed:
            self._tasks = TaskSet("board-pusher")
            self._dirty.clear()
            self._running.clear()

    async def close(self) -> None:
        """Stop pushing; pending changes are dropped. Closing twice is harmless."""
        await self._tasks.close()
