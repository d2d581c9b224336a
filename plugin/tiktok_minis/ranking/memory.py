"""The in-process rank index: a sorted list of keys per board period (sortedcontainers).

For the embedded default, one server process: every write passes through this process, in the
order the database committed it (the leaderboard service holds a lock per player around the
write and its ``apply``). ``SortedList`` gives O(log n) insert, remove and position, and the
keys between two positions in O(log n + k).

A board period is loaded from the database the first time it is used, in the background; reads
answer ``None`` meanwhile (the caller counts in the database) and writes wait in a queue that
is replayed, in order, once the load is in. A period unused for ``idle_seconds`` is dropped, so
memory holds what is being played, not history.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sortedcontainers import SortedList

from tiktok_minis.ranking._logs import log_loaded
from tiktok_minis.ranking.base import Loader, Row
from tiktok_minis.ranking.keys import Order
from tiktok_minis.support.concurrency import TaskSet

__all__ = ["MemoryRankIndex"]

log = logging.getLogger("tiktok_minis.ranking")

# A removed row's id is remembered this long: a write of it still in flight (committed before
# the delete, applied after) must not bring it back.
_TOMBSTONE_SECONDS = 600.0

#: A write that waits for the load: a row to put, or the ids of rows to drop.
_Op = Row | list[int]


@dataclass(slots=True)
class _Period:
    """One board period: its keys in order, each row's key, and the load's state."""

    keys: SortedList[int] = field(default_factory=SortedList)
    key_of: dict[int, int] = field(default_factory=dict)
    ready: bool = False
    pending: list[_Op] = field(default_factory=list)
    used: float = 0.0

    def put(self, row: Row) -> None:
        old = self.key_of.get(row.id)
        if old == row.key:
            return
        if old is not None:
            self.keys.remove(old)
        self.keys.add(row.key)
        self.key_of[row.id] = row.key

    def drop(self, row_ids: list[int]) -> None:
        for row_id in row_ids:
            old = self.key_of.pop(row_id, None)
            if old is not None:
                self.keys.remove(old)


class MemoryRankIndex:
    """:class:`~tiktok_minis.ranking.RankIndex` in this process's memory."""

    def __init__(
        self,
        loader: Loader,
        *,
        idle_seconds: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader = loader
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._periods: dict[tuple[str, str], _Period] = {}
        self._tombstones: dict[int, float] = {}
        self._loading: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._tasks = TaskSet("rank-index")

    async def start(self) -> None:
        """Begin evicting idle periods; ``start`` after ``close`` works again."""
        if self._tasks.closed:
            self._tasks = TaskSet("rank-index")
        self._tasks.spawn(self._evict_idle_loop())

    async def close(self) -> None:
        """Stop loading and evicting; drop every period. Closing twice is harmless."""
        await self._tasks.close()
        self._periods.clear()
        self._tombstones.clear()

    # -- writes ------------------------------------------------------------------------------

    async def apply(self, board: str, period: str, order: Order, row: Row) -> None:
        """Insert or move ``row`` (writes arrive in commit order: see the module)."""
        if row.id in self._tombstones:
            return
        held = self._period(board, period, order)
        if held.ready:
            held.put(row)
        else:
            held.pending.append(row)

    async def remove(self, board: str, period: str, row_ids: list[int]) -> None:
        """Drop the rows; a late write of one of them is ignored from now on."""
        now = self._clock()
        self._tombstones.update(dict.fromkeys(row_ids, now))
        held = self._periods.get((board, period))
        if held is not None:
            if held.ready:
                held.drop(row_ids)
            else:
                held.pending.append(list(row_ids))

    # -- reads -------------------------------------------------------------------------------

    async def rank(self, board: str, period: str, order: Order, key: int) -> int | None:
        """1 + the rows ahead of ``key``; ``None`` while the period loads."""
        held = self._period(board, period, order)
        if not held.ready:
            return None
        return int(held.keys.bisect_left(key)) + 1

    async def keys(
        self, board: str, period: str, order: Order, first: int, last: int
    ) -> list[int] | None:
        """The keys ranked ``first`` to ``last``; ``None`` while the period loads."""
        held = self._period(board, period, order)
        if not held.ready:
            return None
        return list(held.keys.islice(max(first, 1) - 1, max(last, 0)))

    async def ready(self, board: str, period: str, order: Order) -> bool:
        """Load the period now if it is not (a warm-up at start, a test); whether it loaded."""
        held = self._period(board, period, order)
        if not held.ready:
            task = self._loading.get((board, period))
            if task is not None:
                await asyncio.shield(task)
        return held.ready

    def size(self, board: str, period: str) -> int | None:
        """How many rows the period holds, ``None`` unless it is loaded."""
        held = self._periods.get((board, period))
        return len(held.keys) if held is not None and held.ready else None

    # -- loading and evicting ----------------------------------------------------------------

    def _period(self, board: str, period: str, order: Order) -> _Period:
        held = self._periods.get((board, period))
        if held is None:
            held = _Period()
            # Once closed nothing loads it: the period stays unready and the database answers.
            task = self._tasks.spawn(self._load(board, period, order, held))
            if task is not None:
                self._periods[(board, period)] = held
                self._loading[(board, period)] = task
                task.add_done_callback(lambda _: self._loading.pop((board, period), None))
        held.used = self._clock()
        return held

    async def _load(self, board: str, period: str, order: Order, held: _Period) -> None:
        started = time.perf_counter()
        keys: list[int] = []
        key_of: dict[int, int] = {}
        try:
            async for batch in self._loader(board, period, order):
                for row in batch:
                    keys.append(row.key)
                    key_of[row.id] = row.key
                await asyncio.sleep(0)  # a million rows must not hold the loop for seconds
        except Exception:
            # The next use tries again; meanwhile the database answers.
            log.exception(
                "rank index load failed", extra={"event": "rank_load_failed", "board": board}
            )
            if self._periods.get((board, period)) is held:
                del self._periods[(board, period)]
            return
        held.keys = SortedList(keys)  # the loader reads in key order: sorting is one pass
        held.key_of = key_of
        for op in held.pending:
            if isinstance(op, Row):
                if op.id not in self._tombstones:
                    held.put(op)
            else:
                held.drop(op)
        held.pending = []
        held.ready = True
        log_loaded(board, period, len(keys), started)

    async def _evict_idle_loop(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self._idle_seconds / 2))
            self.evict_idle()

    def evict_idle(self) -> int:
        """Drop the periods unused for ``idle_seconds`` and old tombstones; how many periods."""
        now = self._clock()
        idle = [
            where
            for where, held in self._periods.items()
            if held.ready and now - held.used > self._idle_seconds
        ]
        for where in idle:
            del self._periods[where]
        self._tombstones = {
            row_id: at for row_id, at in self._tombstones.items() if now - at < _TOMBSTONE_SECONDS
        }
        return len(idle)
