"""The upstream budget: one rate limit on every HTTP attempt to TikTok, and a shared pause on 429.

TikTok limits an app as a whole (600 requests per minute on user info), so a login storm and a
refresh batch draw from one budget. The limit applies per attempt, retries included, through an
aiohttp trace hook on the client's session; a 429 pauses every caller of this process, not just
the one that met it, so a crowd does not keep hammering a limit it already tripped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from types import SimpleNamespace

import aiohttp
from aiolimiter import AsyncLimiter

__all__ = ["UpstreamThrottle", "retry_after_seconds"]

#: How long everyone waits after a 429 that names no Retry-After.
DEFAULT_PAUSE_SECONDS = 1.0
#: The longest pause a Retry-After may impose on everyone.
MAX_PAUSE_SECONDS = 60.0


class UpstreamThrottle:
    """At most ``rate_per_second`` attempts per second to TikTok; everyone pauses after a 429.

    Paths with a documented limit of their own get a second, tighter bucket.

    Bursts up to one second's worth of calls are allowed (aiolimiter's leaky bucket), so over
    any window of ``t`` seconds at most ``rate * (t + 1)`` attempts start.
    """

    def __init__(
        self,
        rate_per_second: float,
        *,
        path_rates: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``path_rates``: tighter limits for some URL paths (TikTok's user info: 600/min)."""
        self.rate_per_second = rate_per_second
        self._limiter = _limiter(rate_per_second)
        self._path_limiters = {path: _limiter(rate) for path, rate in (path_rates or {}).items()}
        self._clock = clock
        self._paused_until = 0.0
        #: Attempts let through, and 429s met (for metrics and tests).
        self.attempts = 0
        self.rate_limited = 0

    @property
    def paused_for(self) -> float:
        """Seconds until calls may start again after a 429 (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    async def wait_out_pause(self) -> None:
        """Return once no 429 pause holds (at once when none does)."""
        # Sleeping to a deadline, in a loop because another 429 may push the deadline later.
        while (wait := self.paused_for) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)

    async def acquire(self, path: str = "") -> None:
        """Wait for the shared pause to end and for a slot in the rate (and in ``path``'s)."""
        await self.wait_out_pause()
        path_limiter = self._path_limiters.get(path)
        if path_limiter is not None:
            await path_limiter.acquire()
        await self._limiter.acquire()
        self.attempts += 1

    def pause(self, seconds: float | None) -> None:
        """Hold every caller for ``seconds`` (TikTok's Retry-After), within sane bounds."""
        self.rate_limited += 1
        seconds = DEFAULT_PAUSE_SECONDS if seconds is None else seconds
        seconds = min(max(seconds, 0.0), MAX_PAUSE_SECONDS)
        self._paused_until = max(self._paused_until, self._clock() + seconds)

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
                self.pause(retry_after_seconds(params.response.headers.get("Retry-After")))

        trace.on_request_start.append(on_start)
        trace.on_request_end.append(on_end)
        return trace


def _limiter(rate_per_second: float) -> AsyncLimiter:
    # aiolimiter wants a capacity of at least one whole call per period.
    period = max(1.0, 1.0 / rate_per_second)
    return AsyncLimiter(max_rate=rate_per_second * period, time_period=period)


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
