"""The emulator as an aiohttp app, and a server that runs it on a real loopback port."""

from __future__ import annotations

from types import TracebackType

from aiohttp import web

from tiktok_minis.sandbox.api import (
    CONTROL_APP_KEY,
    SANDBOX_KEY,
    SLEEPERS_KEY,
    Sleepers,
    add_api_routes,
)
from tiktok_minis.sandbox.control import create_control_app
from tiktok_minis.sandbox.state import Sandbox

__all__ = ["CONTROL_PREFIX", "SandboxServer", "create_app"]

#: Where :func:`create_app` mounts the control routes.
CONTROL_PREFIX = "/sandbox"


def create_app(sandbox: Sandbox) -> web.Application:
    """The whole emulator: the Open API routes, and the control app mounted at ``/sandbox``."""
    app = web.Application()
    app[SANDBOX_KEY] = sandbox
    sleepers = Sleepers()
    app[SLEEPERS_KEY] = sleepers
    control = create_control_app(sandbox)
    app[CONTROL_APP_KEY] = control
    add_api_routes(app)
    app.add_subapp(CONTROL_PREFIX, control)

    async def wake_sleepers(_: web.Application) -> None:
        sleepers.wake_all()

    app.on_shutdown.append(wake_sleepers)
    return app


class SandboxServer:
    """Runs :func:`create_app` on a real port: ``async with SandboxServer(sandbox) as server``.

    ``port=0`` lets the operating system pick a free port; :attr:`url` tells which once started.
    Closing is idempotent, and wakes any injected delay in progress so it never hangs.
    """

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = sandbox
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The emulator's base URL, e.g. ``http://127.0.0.1:54321`` (the Open API's base)."""
        if self._url is None:
            raise RuntimeError("the sandbox server is not running: await start() first")
        return self._url

    @property
    def control_url(self) -> str:
        """The control app's URL, e.g. ``http://127.0.0.1:54321/sandbox``."""
        return self.url + CONTROL_PREFIX

    async def start(self) -> None:
        """Listen on the host and port; RuntimeError when already started."""
        if self._runner is not None:
            raise RuntimeError("the sandbox server is already running")
        runner = web.AppRunner(create_app(self.sandbox), shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._url = f"http://{host}:{port}"
        self.sandbox.served_avatar_base_url = self.control_url

    async def close(self) -> None:
        """Stop listening and drop connections; harmless when not running."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._url is not None and self.sandbox.served_avatar_base_url == self.control_url:
            self.sandbox.served_avatar_base_url = None
        self._url = None
        await runner.cleanup()

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
