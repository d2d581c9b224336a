"""The Socket.IO Redis manager the plugin installs: several processes share rooms and pushes.

python-socketio's own ``AsyncRedisManager``, observed and quicker to find Redis again. While
Redis is down the stock listener waits 1, 2, 4 ... 60 s between attempts, and pub/sub keeps
nothing for a subscriber that is away: pushes from the other processes would stay lost for up
to a minute after Redis is back. This one tries every second, reports publishes it dropped and
the state of its link, and once the link is back says so, so that every board is pushed again
and the watchers here catch up with what the other processes changed meanwhile. It also closes
its Redis clients at shutdown, which the stock one never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import socketio

__all__ = ["RedisManager"]


class RedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """``AsyncRedisManager`` with reports, a one-second retry and a ``close``."""

    def __init__(
        self,
        url: str,
        *,
        channel: str,
        on_failure: Callable[[str], None] = lambda _: None,
        on_link: Callable[[bool], None] = lambda _: None,
        on_relinked: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_failure("publish" | "listen")``, ``on_link(up)`` and ``on_relinked()`` (the
        link came back after an outage) report to the plugin."""
        super().__init__(
            url,
            channel=channel,
            # redis-py's default socket_timeout makes the listener drop messages.
            redis_options={"socket_timeout": None, "socket_connect_timeout": 5},
            logger=logging.getLogger("tiktok_minis.redis"),
        )
        self._on_failure = on_failure
        self._on_link = on_link
        self._on_relinked = on_relinked

    async def _publish(self, data: Any) -> Any:
        sent = await super()._publish(data)
        if sent is None:  # given up after two tries (the stock manager logs it)
            self._on_failure("publish")
        return sent

    async def close(self) -> None:
        """Stop listening and close both Redis clients."""
        thread = getattr(self, "thread", None)
        if isinstance(thread, asyncio.Task):
            thread.cancel()
            await asyncio.gather(thread, return_exceptions=True)
        await self._close_clients()

    async def _close_clients(self) -> None:
        for client in (self.pubsub, self.redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _redis_listen_with_retries(self) -> AsyncIterator[Any]:
        broken = False
        while True:
            try:
                await self._close_clients()  # the broken link's, before a new one
                self._redis_connect()
                await self.pubsub.subscribe(self.channel)
                self._on_link(True)
                if broken:
                    broken = False
                    self._on_relinked()
                async for message in self.pubsub.listen():
                    yield message
            except Exception as exc:  # noqa: BLE001 (as the stock listener: retry)
                broken = True
                self._on_link(False)
                self._on_failure("listen")
                self._get_logger().error(
                    "Cannot receive from redis... retrying in 1 s",
                    extra={"event": "redis_unavailable", "redis_exception": str(exc)},
                )
                await asyncio.sleep(1.0)
