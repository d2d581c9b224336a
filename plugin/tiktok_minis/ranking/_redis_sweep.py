"""Re-applying rows whose apply was lost with a crashed process.

A process that dies between its database commit and its Redis apply leaves a row behind with
nothing to tell. With ``sweep``, every ``sweep_seconds`` one process (a lock decides which)
re-applies the rows written since the previous sweep began (a mark in Redis, minus a margin for
clocks and slow commits, at most a day back); the version check makes re-applying harmless.
Rows deleted by a dead process are for the removal feed every process follows.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

from tiktok_minis.ranking._redis_link import Link
from tiktok_minis.ranking._redis_names import sweep_lock_key, sweep_mark_key
from tiktok_minis.ranking._redis_scripts import lock_token
from tiktok_minis.ranking.base import Row
from tiktok_minis.ranking.keys import Order, micros

__all__ = ["Sweep", "Sweeper"]

log = logging.getLogger("tiktok_minis.ranking")

#: Rows written since a time, in batches of ``(board, period, order, row)``.
Sweep = Callable[[datetime], AsyncIterator[list[tuple[str, str, Order, Row]]]]

#: How far a sweep reaches back before the previous sweep's start (clocks, slow commits).
_SWEEP_MARGIN: Final = timedelta(seconds=30)
#: A sweep never reaches back further than this (a period unused that long has expired).
_SWEEP_LOOKBACK: Final = timedelta(days=1)


class Sweeper:
    """Sweeps every ``seconds``, taking turns with the other processes under the prefix."""

    def __init__(self, link: Link, seconds: float) -> None:
        self._link = link
        #: The interval between two sweeps.
        self.seconds = seconds

    async def turn(self, sweep: Sweep | None) -> None:
        """Sweep unless another process swept in this interval."""
        link = self._link
        lease_ms = max(int(self.seconds * 900), 1)
        lock = sweep_lock_key(link.prefix)
        mark_key = sweep_mark_key(link.prefix)
        started = datetime.now(UTC)
        async with link.calls:
            if not await link.redis.set(lock, lock_token(), nx=True, px=lease_ms):
                return
            mark = await link.redis.get(mark_key)
        if mark is None:
            since = started - 2 * timedelta(seconds=self.seconds)
        else:
            since = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=int(mark))
        since = max(since - _SWEEP_MARGIN, started - _SWEEP_LOOKBACK)
        await self.reapply(sweep, since)
        lookback_s = int(_SWEEP_LOOKBACK.total_seconds())
        async with link.calls:
            await link.redis.set(mark_key, micros(started), ex=lookback_s)

    async def reapply(self, sweep: Sweep | None, since: datetime) -> int:
        """Re-apply every row ``sweep`` reads as written since ``since``; how many it read."""
        if sweep is None:
            return 0
        seen = 0
        async for batch in sweep(since):
            for (board, period), rows in _by_period(batch).items():
                await self._link.apply_rows(self._link.names(board, period), rows, token=None)
            seen += len(batch)
        if seen:
            log.info("rank index swept", extra={"event": "rank_swept", "rows": seen})
        return seen


def _by_period(batch: Iterable[tuple[str, str, Order, Row]]) -> dict[tuple[str, str], list[Row]]:
    grouped: dict[tuple[str, str], list[Row]] = {}
    for board, period, _order, row in batch:
        grouped.setdefault((board, period), []).append(row)
    return grouped
