"""Test helpers, public so a game can test its own integration the way the plugin tests itself.

::

    async with serve(create_app(settings)) as url:
        async with GameClient(url) as alice:
            ack = await alice.call("tiktok:login", {"code": sandbox.login_code(open_id)})

Everything runs over real loopback sockets: the game's aiohttp app on a free port, a real
Socket.IO client, and the sandbox emulator over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import socketio
from aiohttp import web

if TYPE_CHECKING:
    from tiktok_minis.minis import TikTokMinis
    from tiktok_minis.tiktok.client import TikTokClient

__all__ = ["GameClient", "serve", "tiktok_client_of"]


def tiktok_client_of(minis: TikTokMinis) -> TikTokClient:
    """The TikTok client ``minis`` calls TikTok through: its upstream budget (``throttle``), or
    the same app for a second service built by hand, as another process would."""
    return minis._client


@asynccontextmanager
async def serve(
    app: web.Application, host: str = "127.0.0.1", shutdown_timeout: float = 1.0
) -> AsyncIterator[str]:
    """Run ``app`` on a free loopback port for the body of the ``async with``; yields its URL.

    A short ``shutdown_timeout``: a request still in flight at the stop (a long-poll, a slow
    handler) is not waited on for aiohttp's default minute.
    """
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


class GameClient:
    """A real Socket.IO client that records everything the server sends it.

    ``received`` holds every push and ack as ``(event, payload)``, so a test can check that no
    token or foreign ``open_id`` ever reached a client.
    """

    def __init__(
        self,
        url: str,
        *,
        session: str | None = None,
        namespace: str = "/",
        timeout: float = 10,
        headers: dict[str, str] | None = None,
    ) -> None:
        """``headers`` go with the websocket handshake (``X-Forwarded-For`` behind a proxy)."""
        self.url = url
        self.headers = headers or {}
        self.namespace = namespace
        self.timeout = timeout
        self.auth: dict[str, str] | None = {"session": session} if session else None
        self.received: list[tuple[str, Any]] = []
        self._waiters: list[tuple[str, Callable[[Any], bool], asyncio.Future[Any]]] = []
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("*", self._on_any, namespace=namespace)

    async def __aenter__(self) -> GameClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    async def connect(self) -> None:
        """Connect (websocket only), passing the session as ``auth`` when one was given."""
        await self.sio.connect(
            self.url,
            auth=self.auth,
            headers=self.headers,
            namespaces=[self.namespace],
            transports=["websocket"],
            wait_timeout=self.timeout,
        )

    async def disconnect(self) -> None:
        """Disconnect; harmless when not connected."""
        await self.sio.disconnect()

    async def call(self, event: str, data: Any = None) -> Any:
        """Emit ``event`` with ``data`` and return the server's ack (``None`` sends no payload)."""
        if data is None:
            ack = await self.sio.call(event, namespace=self.namespace, timeout=self.timeout)
        else:
            ack = await self.sio.call(event, data, namespace=self.namespace, timeout=self.timeout)
        self.received.append((f"ack:{event}", ack))
        return ack

    async def _on_any(self, event: str, data: Any = None) -> None:
        self.received.append((event, data))
        for waiter in list(self._waiters):
            name, predicate, future = waiter
            if name == event and not future.done() and predicate(data):
                future.set_result(data)
                self._waiters.remove(waiter)

    async def wait_for(
        self,
        event: str,
        predicate: Callable[[Any], bool] = lambda _: True,
        within: float | None = None,
    ) -> Any:
        """The next push of ``event`` whose payload satisfies ``predicate`` (waits, no polling)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiter = (event, predicate, future)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, within or self.timeout)
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def received_text(self) -> str:
        """Everything received, as one JSON text to search for leaks."""
        return json.dumps(self.received, default=str)
