"""The example game: one board, the demo page and a health check around the plugin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from tiktok_minis import MINIS_KEY, Board, Settings, TikTokMinis

__all__ = ["create_app"]

STATIC_DIR = Path(__file__).parent / "static"


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def _healthz(request: web.Request) -> web.Response:
    minis = request.app[MINIS_KEY]
    if await minis.healthy():
        return web.json_response({"ok": True, "sandbox": minis.settings.sandbox})
    return web.json_response({"ok": False}, status=503)


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], float] | None = None
) -> web.Application:
    """The example game's aiohttp app: the plugin, board ``global``, and its own routes.

    ``/`` (the demo page), ``/healthz`` and ``/metrics`` (Prometheus).

    ``clock`` (seconds since the epoch) replaces the real time, for tests that make days pass.
    """
    minis = TikTokMinis(settings, clock=clock)
    minis.boards.define(Board("global", order="desc", operator="best", client_scores=True))
    sio = minis.create_server()
    app = web.Application()
    sio.attach(app)
    minis.attach(sio, app)
    app.router.add_get("/", _index)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", minis.metrics.handler)
    app.router.add_static("/static/", STATIC_DIR)
    return app
