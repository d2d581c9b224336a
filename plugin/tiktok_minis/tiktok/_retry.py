"""When a call to TikTok is tried again, and after how long.

Connection errors, timeouts, 5xx and 429 are retried, and so is a body that is garbage or one of
TikTok's "try again later" answers, whatever its status: exponential backoff with full jitter,
``Retry-After`` honoured up to a cap.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Final

import aiohttp
from aiohttp_retry import ExponentialRetry

from tiktok_minis.tiktok._answers import BadBody, Endpoint, is_transient, parse_body
from tiktok_minis.tiktok.throttle import retry_after_seconds

__all__ = ["QUIET", "Backoff"]

_RETRY_EXCEPTIONS: Final = {
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    asyncio.TimeoutError,
}


class Backoff(ExponentialRetry):
    """Exponential backoff with full jitter, and ``Retry-After`` honoured up to a cap."""

    def __init__(
        self, *, attempts: int, base: float, cap: float, retry_after_cap: float, endpoint: Endpoint
    ) -> None:
        super().__init__(
            attempts=attempts,
            start_timeout=base,
            max_timeout=cap,
            statuses={429},
            exceptions=set(_RETRY_EXCEPTIONS),
            retry_all_server_errors=True,
            evaluate_response_callback=self._acceptable,
        )
        self._retry_after_cap = retry_after_cap
        self._endpoint = endpoint

    async def _acceptable(self, response: aiohttp.ClientResponse) -> bool:
        """False (retry) for a garbage body or a documented transient error, whatever the status."""
        try:
            body = parse_body(await response.read())
        except (BadBody, aiohttp.ClientError):
            return False
        return not is_transient(self._endpoint, body)

    def get_timeout(self, attempt: int, response: aiohttp.ClientResponse | None = None) -> float:
        """The wait before the next attempt."""
        if response is not None:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            response.release()  # the retried answer is not read again: free its connection
            if retry_after is not None:
                return min(retry_after, self._retry_after_cap)
        # Full jitter (AWS architecture blog): spreads a crowd of retries over the whole window.
        return random.uniform(0, super().get_timeout(attempt - 1, response))


class _QuietLogger:
    """aiohttp-retry logs each retry with the exception's repr; ours logs the outcome once."""

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """Drop retry chatter."""

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """Drop retry chatter."""

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """Drop retry chatter."""


#: The logger to give aiohttp-retry's client.
QUIET: Final = _QuietLogger()
