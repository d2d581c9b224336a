"""Following an append-only table by its ids: how every process hears what any process recorded.

Ended sessions and removed scores are rows in the database, each with an increasing id. A
:class:`Feed` remembers the last id it read, reads what came after every ``poll_seconds`` and
hands each batch to its listeners. The database is the only thing the processes share for
sure (Redis is optional, the operator's shell has no socket), so this reaches all of them.

Ids are handed out before commit: on PostgreSQL a row with a lower id can become visible just
after a higher one was read, and a failed insert leaves a hole for good. So a hole below the
newest id read is asked for again for a few polls before it is let go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from tiktok_minis.support.concurrency import TaskSet
from tiktok_minis.support.listeners import Listeners

__all__ = ["Feed", "Identified"]

log = logging.getLogger("tiktok_minis.feeds")

_GAP_RETRIES = 5


class Identified(Protocol):
    """A feed's row: anything with an increasing integer ``id``."""

    @property
    def id(self) -> int:
        """The row's id."""
        ...


T = TypeVar("T", bound=Identified)
#: ``read(after_id, also_ids)``: the rows after ``after_id`` and those in ``also_ids``, by id.
Reader = Callable[[int, Sequence[int]], Awaitable[list[T]]]


class Feed(Generic[T]):
    """Polls a table for new rows and tells the listeners; one per table and process."""

    def __init__(
        self,
        name: str,
        read: Reader[T],
        latest: Callable[[], Awaitable[int]],
        *,
        poll_seconds: float,
    ) -> None:
        self._name = name
        self._read = read
        self._latest = latest
        self._poll_seconds = poll_seconds
        self._listeners: Listeners[list[T]] = Listeners(log, "feed")
        self._cursor = 0
        self._gaps: dict[int, int] = {}  # a missing id -> the polls left to wait for it
        self._tasks = TaskSet(name)

    def subscribe(self, listener: Callable[[list[T]], None]) -> Callable[[], None]:
        """Call ``listener`` with every batch of new rows; returns the unsubscribe function."""
        return self._listeners.subscribe(listener)

    async def start(self) -> None:
        """Begin following the rows recorded from now on (``start`` after ``close`` works)."""
        self._cursor = await self._latest()
        self._gaps.clear()
        if self._tasks.closed:
            self._tasks = TaskSet(self._name)
        self._tasks.spawn(self._follow())

    async def close(self) -> None:
        """Stop following. Closing twice is harmless."""
        await self._tasks.close()

    async def poll(self) -> list[T]:
        """Read the rows recorded since the last poll and tell the listeners; returns them."""
        rows = await self._read(self._cursor, list(self._gaps))
        expected = self._cursor + 1
        for row in rows:
            self._gaps.pop(row.id, None)
            if row.id > self._cursor:
                self._gaps.update(dict.fromkeys(range(expected, row.id), _GAP_RETRIES))
                self._cursor = row.id
                expected = row.id + 1
        self._gaps = {gap: left - 1 for gap, left in self._gaps.items() if left > 1}
        if rows:
            self._listeners.emit(rows)
        return rows

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                await self.poll()
            except Exception:  # logged below; the rows wait in the table for the next poll
                log.warning(
                    "following a feed failed",
                    extra={"event": "feed_poll_failed", "feed": self._name},
                    exc_info=True,
                )
