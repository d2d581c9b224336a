"""The shared rank index: one Redis sorted set per board period, for several server processes.

Every process applies its own writes (after the database committed them) and reads the same
sets, so a rank answered by any process counts every process's writes. The database stays the
source of truth: whatever Redis holds can be rebuilt from it, and whenever this index cannot
vouch for what Redis holds it answers ``None`` and the caller counts in the database. A rank is
never wrong, only slower for a moment.

How, one module each (Redis 6.2 or newer): the keys and how a row is encoded in them
(``_redis_names``); the scripts, each atomic, that write and read them (``_redis_scripts``);
the calls to Redis and what a failure means (``_redis_link``); loading a period from the
database (``_redis_loading``); hiding a period whose writes missed Redis until it is rebuilt
(``_redis_repair``); noticing a restarted Redis (``_redis_restart``); re-applying the writes of
a crashed process (``_redis_sweep``). This module composes them.

Running it. redis-py 8 retries a command ten times with a backoff of up to a second: give the
client a short retry budget, or the first write of an outage waits for it. Run this Redis
without persistence and with ``noeviction`` if you can: the index is derived, a restore only
brings back an old state, and eviction could drop one of a period's keys and not the others (a
flush or an expiry of all of them is handled).

Staleness, then: a write that reached Redis is seen by every process at once; a write lost to
an outage is hidden (reads fall back to the database) once Redis answers the process that lost
it again, within about a quarter of a second of that, and stays visible elsewhere meanwhile if
only that process was cut off; a write lost with a crashed process, for up to ``sweep_seconds``
plus the sweep's own time; a snapshot restore, for up to two seconds (the probe's interval).

Limits. Tombstones live as long as their period's keys: after a flush, a late write of a row
removed before it (one still in flight across the flush) brings the row back until the period
is next rebuilt. Rows, their versions and tombstones are per period; ids are never reused.

Cost, measured by ``python -m bench rank_redis_memory`` (one million rows, this machine kind):
about 190 bytes of Redis memory per row (the sorted set 118, the hash 72; about 200 MiB per
million rows), and 7 to 11 seconds to load a million rows, 2 to 3 of them the benchmark's own
loader making the rows (some 4.4 microseconds of Redis time per row, against 2.8 for bare
pipelined ZADD and HSET).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, Final

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from tiktok_minis.ranking._redis_link import POLL_SECONDS, Link
from tiktok_minis.ranking._redis_loading import Rebuilds
from tiktok_minis.ranking._redis_names import row_args
from tiktok_minis.ranking._redis_repair import Repairs
from tiktok_minis.ranking._redis_restart import ServerWatch
from tiktok_minis.ranking._redis_scripts import CHUNK
from tiktok_minis.ranking._redis_sweep import Sweep, Sweeper
from tiktok_minis.ranking.base import Loader, Row
from tiktok_minis.ranking.keys import Order, key_bytes
from tiktok_minis.support.concurrency import TaskSet

__all__ = ["RedisRankIndex", "Sweep"]

log = logging.getLogger("tiktok_minis.ranking")

#: How often Redis's run_id is compared when all is well.
_HEALTH_SECONDS: Final = 2.0
#: How long ``close`` lets the probe and sweep loops finish what they are doing.
_STOP_SECONDS: Final = 2.0
#: The name the index's background tasks are logged under.
_TASKS: Final = "redis-rank-index"


class RedisRankIndex:
    """:class:`~tiktok_minis.ranking.RankIndex` on Redis sorted sets, shared by processes.

    ``redis`` must return bytes (``decode_responses=False``, the default); this index uses it
    and never closes it. ``prefix`` namespaces the keys per game and environment, for instance
    ``"ttminis:<channel>:rank"``. A period unused for ``idle_seconds`` expires from Redis.
    ``sweep`` reads the rows written since a time; with it, rows whose apply was lost with a
    crashed process are re-applied every ``sweep_seconds`` (see the module).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        loader: Loader,
        *,
        prefix: str,
        idle_seconds: float = 900.0,
        sweep: Sweep | None = None,
        sweep_seconds: float = 30.0,
    ) -> None:
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError(
                "RedisRankIndex needs a Redis client that returns bytes: create it without "
                "decode_responses=True (keys are binary)"
            )
        if not prefix:
            raise ValueError("RedisRankIndex needs a prefix, e.g. 'ttminis:<channel>:rank'")
        if idle_seconds < 1.0:
            raise ValueError(f"idle_seconds must be at least 1 second, not {idle_seconds}")
        if sweep_seconds <= 0:
            raise ValueError(f"sweep_seconds must be positive, not {sweep_seconds}")
        self._sweep = sweep
        self._link = Link(redis, prefix, idle_seconds)
        server = ServerWatch(self._link)
        self._rebuilds = Rebuilds(self._link, server, loader, self._spawn)
        self._repairs = Repairs(self._link, server, self._rebuilds, self._spawn, self._wake_probe)
        self._sweeper = Sweeper(self._link, sweep_seconds)
        self._tasks = TaskSet(_TASKS)
        self._loops_running = False
        self._loops: list[asyncio.Task[Any] | None] = []
        self._stopping = False
        self._wake = asyncio.Event()
        self._wake_sweep = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin repairing, watching Redis and sweeping; ``start`` after ``close`` works."""
        if self._tasks.closed:
            self._tasks = TaskSet(_TASKS)
            self._loops_running = False
        if self._loops_running:
            return
        self._loops_running = True
        self._stopping = False
        self._wake_sweep = asyncio.Event()
        self._loops = [self._tasks.spawn(self._watch_loop())]
        if self._sweep is not None:
            self._loops.append(self._tasks.spawn(self._sweep_loop()))

    async def close(self) -> None:
        """Stop the background work; Redis keeps the index. Closing twice is harmless.

        A period still dirty is repaired once more if Redis answers; if it does not, the other
        processes' sweeps re-apply its lost writes (and their removal feeds its removes).
        """
        # The loops finish the call they are in (one cancelled after it was sent would still
        # run in Redis, after this returns), then the rest is cancelled.
        self._stopping = True
        self._wake.set()
        self._wake_sweep.set()
        loops = [task for task in self._loops if task is not None]
        if loops:
            await asyncio.wait(loops, timeout=_STOP_SECONDS)
        self._loops = []
        await self._tasks.close()
        self._loops_running = False
        self._rebuilds.forget()
        await self._repairs.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        # Through self: start after close replaces the task set.
        return self._tasks.spawn(coro)

    def _wake_probe(self) -> bool:
        """Wake the probe loop; whether it runs."""
        if self._loops_running:
            self._wake.set()
        return self._loops_running

    # -- writes ------------------------------------------------------------------------------

    async def apply(self, board: str, period: str, order: Order, row: Row) -> None:
        """Insert or move ``row`` unless Redis holds a newer version or a tombstone of it.

        Never raises for Redis being unavailable: the period is repaired once it answers.
        """
        args = row_args(row)
        link = self._link
        names = link.names(board, period)
        try:
            await link.call(link.scripts.apply, names.data, [*link.ttls, *args])
        except RedisError as exc:
            self._repairs.lost_write(board, period, order, exc)
        else:
            self._repairs.answered()

    async def remove(self, board: str, period: str, row_ids: list[int]) -> None:
        """Drop the rows and keep tombstones, so a late write of one of them is refused.

        Never raises for Redis being unavailable: the period is repaired once it answers.
        """
        if not row_ids:
            return
        link = self._link
        names = link.names(board, period)
        try:
            for start in range(0, len(row_ids), CHUNK):
                chunk = [str(row_id) for row_id in row_ids[start : start + CHUNK]]
                await link.call(link.scripts.remove, names.data, [*link.ttls, *chunk])
        except RedisError as exc:
            self._repairs.lost_write(board, period, None, exc)
        else:
            self._repairs.answered()

    # -- reads -------------------------------------------------------------------------------

    async def ready(self, board: str, period: str, order: Order) -> bool:
        """Load the period now if it is not loaded (a warm-up at start, a test); whether it is.

        Waits for this process's rebuild of it, if one runs; another process's rebuild is not
        waited for (the answer is then ``False`` until its marker is set).
        """
        if await self.rank(board, period, order, 0) is not None:
            return True
        rebuilding = self._rebuilds.running(board, period)
        if rebuilding is not None:
            await asyncio.gather(asyncio.shield(rebuilding), return_exceptions=True)
        return await self.rank(board, period, order, 0) is not None

    async def rank(self, board: str, period: str, order: Order, key: int) -> int | None:
        """1 + the rows ahead of ``key``; ``None`` until the period is loaded, or on failure."""
        member = key_bytes(key)
        found = await self._read(board, period, order, self._link.scripts.rank, [member])
        return None if found is None else int(found) + 1

    async def keys(
        self, board: str, period: str, order: Order, first: int, last: int
    ) -> list[int] | None:
        """The keys ranked ``first`` to ``last``; ``None`` until loaded, or on failure."""
        script = self._link.scripts.keys
        found = await self._read(board, period, order, script, [max(first, 1) - 1, last - 1])
        if found is None:
            return None
        return [int.from_bytes(member, "big") for member in found]

    async def _read(
        self, board: str, period: str, order: Order, script: AsyncScript, args: list[Any]
    ) -> Any:
        """What ``script`` answers; ``None`` if the period is dirty, not ready, or Redis failed."""
        if self._repairs.dirty(board, period):
            self._repairs.kick()
            return None
        link = self._link
        try:
            found = await link.call(script, link.names(board, period).data, [*link.ttls, *args])
        except RedisError as exc:
            link.failed("read", exc)
            return None
        self._repairs.answered()
        if found is None:
            self._rebuilds.request(board, period, order)
        return found

    # -- background --------------------------------------------------------------------------

    async def sweep_once(self, since: datetime) -> int:
        """Re-apply every row ``sweep`` reads as written since ``since``; how many it read.

        The background sweep does this every ``sweep_seconds``; it raises what Redis raises.
        """
        return await self._sweeper.reapply(self._sweep, since)

    async def _watch_loop(self) -> None:
        while not self._stopping:
            quick = self._repairs.pending or self._link.down()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), POLL_SECONDS if quick else _HEALTH_SECONDS
                )
            self._wake.clear()
            if not self._stopping:
                await self._repairs.check_server()

    async def _sweep_loop(self) -> None:
        while not self._stopping:
            try:
                await self._sweeper.turn(self._sweep)
            except RedisError as exc:
                self._link.failed("sweep", exc)
            except Exception:
                log.exception("rank index sweep failed", extra={"event": "rank_sweep_failed"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_sweep.wait(), self._sweeper.seconds)
