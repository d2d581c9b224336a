"""The TikTok emulator in a process of its own, for ``bench.login``.

``python -m bench._login_tiktok --port P --control-port C`` serves the emulator's Open API
(:class:`~tiktok_minis.sandbox.SandboxServer`) on ``127.0.0.1:P`` and, on ``127.0.0.1:C``, the
bench's own control routes:

- ``POST /codes`` with ``{"count": N}``: N fresh silent-login codes, each of a new user
  (``{"codes": [...]}``); codes are single use, so the client asks for as many as it will spend;
- ``GET /calls``: the requests the Open API has seen, by endpoint;
- ``GET /healthz``: 200 once both ports listen.

It runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from aiohttp import web

from tiktok_minis.sandbox import Sandbox, SandboxServer

_MAX_CODES = 1_000_000  # one request never mints more than this
_SANDBOX_KEY = web.AppKey("bench.login.sandbox", Sandbox)


async def _codes(request: web.Request) -> web.Response:
    """``{"count": N}`` -> ``{"codes": [...]}``: one new user and one login code per code."""
    try:
        body = json.loads(await request.read())
        count = int(body["count"])
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": 'send {"count": N}'}, status=400)
    if not 0 <= count <= _MAX_CODES:
        return web.json_response({"error": f"count must be 0..{_MAX_CODES}"}, status=400)
    sandbox = request.app[_SANDBOX_KEY]
    codes = [sandbox.login_code(sandbox.add_user().open_id) for _ in range(count)]
    return web.json_response({"codes": codes})


async def _calls(request: web.Request) -> web.Response:
    """The Open API's requests so far, by endpoint."""
    return web.json_response(dict(request.app[_SANDBOX_KEY].calls))


async def _healthz(_: web.Request) -> web.Response:
    """200 once serving."""
    return web.json_response({"ok": True})


def control_app(sandbox: Sandbox) -> web.Application:
    """The bench's control routes on ``sandbox``."""
    app = web.Application()
    app[_SANDBOX_KEY] = sandbox
    app.router.add_post("/codes", _codes)
    app.router.add_get("/calls", _calls)
    app.router.add_get("/healthz", _healthz)
    return app


async def serve(port: int, control_port: int) -> None:
    """Serve the emulator and the control routes until SIGINT or SIGTERM."""
    sandbox = Sandbox()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with SandboxServer(sandbox, "127.0.0.1", port):
        runner = web.AppRunner(control_app(sandbox), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", control_port).start()
            await stop.wait()
        finally:
            await runner.cleanup()


def main() -> None:
    """Parse the ports and serve."""
    parser = argparse.ArgumentParser(prog="python -m bench._login_tiktok", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="the Open API's port")
    parser.add_argument("--control-port", type=int, required=True, help="the bench's routes")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.control_port))


if __name__ == "__main__":
    main()
