"""Counting the requests that reach the emulator, and waiting for them without sleeping."""

from __future__ import annotations

import asyncio
import collections

__all__ = ["CallCounter"]


class CallCounter(collections.Counter[str]):
    """Requests per endpoint (``"token"``, ``"revoke"``, ``"user_info"``), counted on arrival.

    A plain :class:`collections.Counter` that can also be awaited: :meth:`wait_for` returns
    once an endpoint has seen a number of requests, so tests wait on events, never on sleeps.
    """

    def __init__(self) -> None:
        super().__init__()
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []

    def record(self, endpoint: str) -> None:
        """Count one request to ``endpoint`` and wake whoever waits for that count."""
        self[endpoint] += 1
        count = self[endpoint]
        for waited, target, future in self._waiters:
            if waited == endpoint and count >= target and not future.done():
                future.set_result(None)

    async def wait_for(
        self,
        endpoint: str,
        count: int | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 (a test helper must never hang by default)
    ) -> None:
        """Wait until ``endpoint`` has seen ``count`` requests (default: one more than now).

        Give ``count`` when the request may already have arrived; TimeoutError after
        ``timeout`` seconds.
        """
        target = self[endpoint] + 1 if count is None else count
        if self[endpoint] >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (endpoint, target, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{endpoint}: {self[endpoint]} requests after {timeout}s, waited for {target}"
            ) from None
        finally:
            self._waiters.remove(entry)
