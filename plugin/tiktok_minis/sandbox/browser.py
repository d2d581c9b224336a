"""The emulator's browser half: the stand-in for TikTok's mini-game SDK (``window.TTMinis``).

Served only in sandbox mode, at the URL the guides give, so a production page can never load
the stand-in by mistake: outside sandbox mode that URL is a 404.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

__all__ = ["SDK_FILE", "add_sdk_route"]

SDK_FILE = Path(__file__).parent / "static" / "sandbox-sdk.js"


async def _sdk(request: web.Request) -> web.FileResponse:
    return web.FileResponse(SDK_FILE, headers={"Cache-Control": "no-cache"})


def add_sdk_route(app: web.Application, path: str) -> None:
    """Serve the stand-in SDK at ``path`` (register it before a static folder on that prefix)."""
    app.router.add_get(path, _sdk)
