"""The upstream budget: TikTok's documented limits, shared by every process, and a pause on 429.

TikTok limits an app as a whole: user info takes 600 requests per minute (a sliding window),
and the token endpoint publishes no limit. So user-info calls are paced to
``user_info_rate_per_second`` (10: 600 a minute), every attempt counted, retries included,
through an aiohttp trace hook on the client's session; the other endpoints are not capped
unless the operator sets ``upstream_rate_per_second``. A 429 pauses every caller, not just the
one that met it, so a crowd does not keep hammering a limit it already tripped.

Pacing hands out slots ``1 / rate`` apart (a generic cell rate algorithm with no burst), so over
any half-open window of ``t`` seconds at most ``ceil(rate * t)`` slots fall: 600 in any minute
at 10 per second (an attempt starts at its slot, or a hair later when the event loop is busy).
With :class:`RedisPace` the slots and the pause live in Redis, so every process of the app draws
from one budget and nobody divides the limit by the number of processes by hand; without Redis
(one process), or while Redis does not answer, they are kept in the process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Protocol

import aiohttp

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["LocalPace", "Pace", "RedisPace", "UpstreamThrottle", "retry_after_seconds"]

log = logging.getLogger("tiktok_minis.tiktok")

#: How long everyone waits after a 429 that names no Retry-After.
DEFAULT_PAUSE_SECONDS = 1.0
#: The longest pause a Retry-After may impose on everyone.
MAX_PAUSE_SECONDS = 60.0


class Pace(Protocol):
    """Hands out attempt slots at a fixed rate, and holds a pause shared by its callers."""

    async def reserve(self, name: str, rate_per_second: float) -> float:
        """Take the next slot of the ``name`` budget; the seconds to wait before using it."""

    async def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` (a 429's Retry-After), unless held longer already."""

    async def paused_for(self) -> float:
        """Seconds until the shared pause ends (0 when none holds)."""


class LocalPace:
    """:class:`Pace` in this process: the embedded default, and the fallback when Redis fails."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next: dict[str, float] = {}
        self._paused_until = 0.0

    async def reserve(self, name: str, rate_per_second: float) -> float:
        """The next free slot of ``name``, booked now (callers are served in arrival order)."""
        now = self._clock()
        slot = max(self._next.get(name, now), now)
        self._next[name] = slot + 1.0 / rate_per_second
        return slot - now

    async def pause(self, seconds: float) -> None:
        """Hold every caller of this process for ``seconds``."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def paused_for(self) -> float:
        """Seconds until this process's pause ends."""
        return max(0.0, self._paused_until - self._clock())


# KEYS[1]: the budget's next free slot (ms, Redis's clock); KEYS[2]: the shared pause.
# ARGV[1]: the interval between slots, ms. Returns the ms to wait: for the pause (as a negative
# number, the slot not taken) or for the slot booked.
_RESERVE = """
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return -paused end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local interval = tonumber(ARGV[1])
redis.call('SET', KEYS[1], tostring(slot + interval), 'PX', math.ceil(slot + interval - now) + 1000)
return slot - now
"""
# KEYS[1]: the shared pause; ARGV[1]: its length, ms. Never shortens a longer pause.
_PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
"""


class RedisPace:
    """:class:`Pace` in Redis: one budget and one pause for every process of the app.

    Slots are counted on Redis's clock, so the processes' own clocks need not agree. When
    Redis does not answer, the process falls back to its own :class:`LocalPace` (logged once per
    outage) rather than stopping its calls to TikTok.
    """

    def __init__(self, redis: Redis, prefix: str, fallback: LocalPace | None = None) -> None:
        self._redis = redis
        self._prefix = prefix
        self._fallback = fallback if fallback is not None else LocalPace()
        self._reserve = redis.register_script(_RESERVE)
        self._pause = redis.register_script(_PAUSE)
        self._failing = False

    async def reserve(self, name: str, rate_per_second: float) -> float:
        """The next slot of ``name`` across every process; a shared pause is waited out first."""
        interval_ms = 1000.0 / rate_per_second
        while True:
            try:
                waited = int(
                    await self._reserve(
                        keys=[f"{self._prefix}:{name}", f"{self._prefix}:pause"],
                        args=[interval_ms],
                    )
                )
            except Exception:  # noqa: BLE001 (any Redis failure: pace this process alone)
                self._failed()
                return await self._fallback.reserve(name, rate_per_second)
            self._failing = False
            if waited >= 0:
                return waited / 1000
            await asyncio.sleep(-waited / 1000)  # paused: try for a slot once it ends

    async def pause(self, seconds: float) -> None:
        """Hold every process for ``seconds`` (and this one, should Redis fail)."""
        await self._fallback.pause(seconds)
        try:
            await self._pause(keys=[f"{self._prefix}:pause"], args=[math.ceil(seconds * 1000)])
        except Exception:  # noqa: BLE001 (the local pause holds this process meanwhile)
            self._failed()

    async def paused_for(self) -> float:
        """Seconds until the shared pause ends."""
        local = await self._fallback.paused_for()
        try:
            shared = int(await self._redis.pttl(f"{self._prefix}:pause"))
        except Exception:  # noqa: BLE001 (Redis down: the local pause is what there is)
            self._failed()
            return local
        return max(local, shared / 1000 if shared > 0 else 0.0)

    def _failed(self) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "shared upstream budget unavailable: pacing this process alone",
                extra={"event": "upstream_budget_local"},
            )


class UpstreamThrottle:
    """Paces attempts to TikTok: tighter budgets for some paths, an optional cap on all of
    them; everyone pauses after a 429.

    ``path_rates`` maps URL paths to attempts per second (user info: 10, TikTok's 600 a
    minute); ``rate_per_second`` caps every attempt to any path, ``None`` for no cap (the
    token endpoint publishes no limit).
    """

    def __init__(
        self,
        rate_per_second: float | None = None,
        *,
        path_rates: Mapping[str, float] | None = None,
        pace: Pace | None = None,
    ) -> None:
        self.rate_per_second = rate_per_second
        self._path_rates = dict(path_rates or {})
        self.pace: Pace = pace if pace is not None else LocalPace()
        #: Attempts let through, and 429s met (for metrics and tests).
        self.attempts = 0
        self.rate_limited = 0

    async def paused_for(self) -> float:
        """Seconds until calls may start again after a 429 (0 when not paused)."""
        return await self.pace.paused_for()

    async def wait_out_pause(self) -> None:
        """Return once no 429 pause holds (at once when none does)."""
        # Sleeping to a deadline, in a loop because another 429 may push the deadline later.
        while (wait := await self.paused_for()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)

    async def acquire(self, path: str = "") -> None:
        """Wait for the shared pause to end and for a slot in ``path``'s budget and the cap."""
        await self.wait_out_pause()
        path_rate = self._path_rates.get(path)
        if path_rate is not None:
            await asyncio.sleep(await self.pace.reserve(path, path_rate))
        if self.rate_per_second is not None:
            await asyncio.sleep(await self.pace.reserve("*", self.rate_per_second))
        self.attempts += 1

    async def pause(self, seconds: float | None) -> None:
        """Hold every caller for ``seconds`` (TikTok's Retry-After), within sane bounds."""
        self.rate_limited += 1
        seconds = DEFAULT_PAUSE_SECONDS if seconds is None else seconds
        await self.pace.pause(min(max(seconds, 0.0), MAX_PAUSE_SECONDS))

    def trace_config(self) -> aiohttp.TraceConfig:
        """Hooks for an ``aiohttp.ClientSession``: every request waits its turn, 429s pause."""
        trace = aiohttp.TraceConfig()

        async def on_start(
            _session: aiohttp.ClientSession,
            _context: SimpleNamespace,
            params: aiohttp.TraceRequestStartParams,
        ) -> None:
            await self.acquire(params.url.path)

        async def on_end(
            _session: aiohttp.ClientSession,
            _context: SimpleNamespace,
            params: aiohttp.TraceRequestEndParams,
        ) -> None:
            if params.response.status == 429:
                await self.pause(retry_after_seconds(params.response.headers.get("Retry-After")))

        trace.on_request_start.append(on_start)
        trace.on_request_end.append(on_end)
        return trace


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds; ``None`` when absent or an HTTP date (rare from APIs).

    Negative values count as zero.
    """
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if seconds == seconds else None  # NaN is no answer
