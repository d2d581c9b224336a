"""The shared rank index's one way to Redis: connection slots, the scripts, and failures.

A read that fails answers ``None``; a warning is logged at most once per few seconds, never a
traceback per call. For a second after each failure to reach Redis, calls do not try: an outage
costs the callers no time per call, and the probe keeps it so until Redis answers. The index
keeps its calls to at most half the connection pool's size, so a burst of writes waits for a
connection rather than failing for want of one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tiktok_minis.ranking._redis_names import PeriodKeys, period_keys, row_args
from tiktok_minis.ranking._redis_scripts import CHUNK, LOCK_MS, Scripts, ttl_args
from tiktok_minis.ranking.base import Row

__all__ = ["POLL_SECONDS", "Link", "Skipped"]

log = logging.getLogger("tiktok_minis.ranking")

#: How often a process waiting for another's rebuild, or for Redis to answer, looks again.
POLL_SECONDS: Final = 0.25
#: After failing to reach Redis, reads and writes do not try for this long (probes extend it).
_RETRY_SECONDS: Final = 1.0
#: At most one warning per this many seconds about an unreachable Redis.
_WARN_SECONDS: Final = 5.0


class Skipped(RedisError):
    """A call not made: Redis was unreachable a moment ago (nothing to log again)."""


class _Throttle:
    """Logs a warning at most once per ``seconds``, counting the ones it kept quiet."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._last = -float("inf")
        self._quiet = 0

    def warn(self, message: str, **extra: object) -> None:
        now = time.monotonic()
        if now - self._last < self._seconds:
            self._quiet += 1
            return
        log.warning(message, extra={**extra, "suppressed": self._quiet})
        self._last, self._quiet = now, 0


class Link:
    """The index's calls to Redis under ``prefix``, and whether Redis answered a moment ago.

    ``redis`` is used, never closed; periods idle ``idle_seconds`` expire.
    """

    def __init__(self, redis: aioredis.Redis, prefix: str, idle_seconds: float) -> None:
        #: The client, returning bytes.
        self.redis = redis
        #: What every key of the index starts with.
        self.prefix = prefix
        #: The first arguments of every data script (:func:`ttl_args`).
        self.ttls = ttl_args(idle_seconds)
        #: The scripts, registered on ``redis``.
        self.scripts = Scripts.register(redis)
        # At most half the pool's connections at once: a burst of writes waits here for a
        # connection instead of failing with MaxConnectionsError (and costing a rebuild), and
        # leaves room for whoever shares the client.
        pool_size = getattr(redis.connection_pool, "max_connections", 100)
        #: Held around every call to Redis.
        self.calls = asyncio.Semaphore(max(1, int(pool_size) // 2))
        self._down_until = 0.0
        self._throttle = _Throttle(_WARN_SECONDS)

    def names(self, board: str, period: str) -> PeriodKeys:
        """The keys of ``board``'s ``period``."""
        return period_keys(self.prefix, board, period)

    def down(self) -> bool:
        """Whether Redis was unreachable a moment ago and has not answered since."""
        return time.monotonic() < self._down_until

    def up(self) -> None:
        """Redis answered: calls try again at once."""
        self._down_until = 0.0

    def failed(self, what: str, exc: BaseException) -> None:
        """Note that ``what`` failed with ``exc``: log it (throttled), skip calls a moment."""
        if isinstance(exc, Skipped):
            return
        # Only an unreachable server is skipped for a while; an error reply is per command, and
        # an exhausted pool is this process's own congestion.
        unreachable = isinstance(exc, RedisConnectionError | RedisTimeoutError)
        if unreachable and not isinstance(exc, MaxConnectionsError):
            self._down_until = time.monotonic() + _RETRY_SECONDS
        self._throttle.warn(
            f"rank index: Redis {what} failed ({type(exc).__name__}: {exc}); "
            "answering from the database",
            event="rank_redis_unavailable",
        )

    async def call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """Run ``script`` in a connection slot, unless Redis was unreachable a moment ago.

        The check comes after the wait for a slot: calls queued behind a hung server give up
        as soon as one of them finds out, instead of each waiting out its own timeout.
        """
        async with self.calls:
            if self.down():
                raise Skipped("Redis was unreachable a moment ago")
            return await script(keys=keys, args=args)

    async def apply_rows(
        self, names: PeriodKeys, rows: Sequence[Row], *, token: str | None
    ) -> bool:
        """Apply ``rows`` in one pipeline; ``False`` if ``token`` no longer holds the lock."""
        if not rows:
            return True
        calls: list[list[Any]] = []
        for start in range(0, len(rows), CHUNK):
            args: list[Any] = [*self.ttls]
            for row in rows[start : start + CHUNK]:
                args += row_args(row)
            calls.append(args)
        async with self.calls, self.redis.pipeline(transaction=False) as pipe:
            if token is not None:
                await self.scripts.extend(keys=[names.lock], args=[token, LOCK_MS], client=pipe)
            for args in calls:
                await self.scripts.apply(keys=names.data, args=args, client=pipe)
            results = await pipe.execute()
        return token is None or int(results[0]) == 1
