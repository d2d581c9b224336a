"""Periods whose writes may have missed Redis, and hiding them until they are rebuilt.

A write that fails does not raise: the database has committed, the caller has nothing to undo.
The period is remembered as dirty instead: reads here answer ``None`` for it, and as soon as
Redis answers again this process deletes its marker and its lock (a rebuild under way elsewhere
may have missed the write: it must not set the marker), so that every process falls back to the
database until the period is rebuilt. While Redis is unreachable, writes only mark their period
dirty; the background probe (every quarter of a second while Redis fails) repairs once Redis
answers it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from tiktok_minis.ranking._redis_link import Link
from tiktok_minis.ranking._redis_loading import Rebuilds, Spawn
from tiktok_minis.ranking._redis_restart import ServerWatch
from tiktok_minis.ranking.keys import Order

__all__ = ["Repairs"]

log = logging.getLogger("tiktok_minis.ranking")


@dataclass(slots=True, eq=False)
class _Dirty:
    """A period whose writes may have missed Redis.

    Each failure stores a new one: a repair that finds another than it started from (compared
    by identity) knows that a write failed meanwhile.
    """

    order: Order | None


class Repairs:
    """The dirty periods of this process, and their repair once Redis answers.

    ``wake`` wakes the index's probe loop, and says whether it runs (if not, a repair is run as
    a one-off task through ``spawn``).
    """

    def __init__(
        self,
        link: Link,
        server: ServerWatch,
        rebuilds: Rebuilds,
        spawn: Spawn,
        wake: Callable[[], bool],
    ) -> None:
        self._link = link
        self._server = server
        self._rebuilds = rebuilds
        self._spawn = spawn
        self._wake = wake
        self._dirty: dict[tuple[str, str], _Dirty] = {}
        self._repairing: asyncio.Task[Any] | None = None

    @property
    def pending(self) -> bool:
        """Whether any period is dirty."""
        return bool(self._dirty)

    def dirty(self, board: str, period: str) -> bool:
        """Whether Redis may lack a write of the period (reads must not trust it)."""
        return (board, period) in self._dirty

    def lost_write(
        self, board: str, period: str, order: Order | None, exc: RedisError | None
    ) -> None:
        """Remember that Redis may lack a write of this period (``exc`` None: not tried)."""
        held = self._dirty.get((board, period))
        self._dirty[(board, period)] = _Dirty(
            order if order is not None else (held.order if held else None)
        )
        if exc is not None:
            self._link.failed("write", exc)

    def answered(self) -> None:
        """Redis answered: calls try again at once, and dirty periods are repaired soon."""
        self._link.up()
        self.kick()

    def kick(self) -> None:
        """Repair dirty periods soon: the probe loop, or (not started) a one-off task."""
        if not self._dirty or self._link.down():
            return
        if not self._wake() and self._repairing is None:
            self._repairing = self._spawn(self._repair_once())

    async def _repair_once(self) -> None:
        try:
            await self.repair()
        finally:
            self._repairing = None

    async def repair(self) -> None:
        """Delete the marker and lock of every dirty period, then rebuild what we can."""
        for where, mark in list(self._dirty.items()):
            names = self._link.names(*where)
            try:
                async with self._link.calls:
                    await self._link.redis.delete(names.ready, names.lock)
            except RedisError as exc:
                self._link.failed("repair", exc)
                return
            self.answered()
            # A write that failed while the delete was under way needs another round.
            if self._dirty.get(where) is mark:
                del self._dirty[where]
            log.info(
                "rank index period hidden until rebuilt (a write missed Redis)",
                extra={"event": "rank_repaired", "board": where[0], "period": where[1]},
            )
            if mark.order is not None:
                self._rebuilds.request(where[0], where[1], mark.order)

    async def check_server(self) -> None:
        """Probe Redis: repair dirty periods once it answers, notice a restarted server."""
        try:
            run_id = await self._server.run_id()
        except RedisError as exc:
            self._link.failed("probe", exc)
            return
        self.answered()
        try:
            await self._server.observe(run_id)  # also keeps the recorded run_id from expiring
        except RedisError as exc:
            self._link.failed("probe", exc)
            return
        await self.repair()

    async def close(self) -> None:
        """Repair once more; forget (and log) what is still dirty then."""
        if self._dirty:
            await self.repair()
            if self._dirty:
                log.warning(
                    "rank index closed with periods Redis may lack writes of",
                    extra={"event": "rank_dirty_at_close", "periods": len(self._dirty)},
                )
                self._dirty.clear()
