"""The baseline for ``bench.login``: what a game would write instead of the plugin.

``python -m bench._login_bare --port P --api URL`` serves a python-socketio ``AsyncServer`` on
aiohttp with one handler, ``tiktok:login``, that POSTs the code to ``URL/v2/oauth/token/`` with one
shared ``aiohttp.ClientSession``, parses the JSON and acks ``{"ok": true, "open_id": ...}``: no
database, no session, no encryption, no retries, no logging. ``GET /healthz`` answers 200.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import aiohttp
import socketio
from aiohttp import web

from tiktok_minis.settings import SANDBOX_CLIENT_KEY, SANDBOX_CLIENT_SECRET

_SESSION_KEY = web.AppKey("bench.login.http", aiohttp.ClientSession)


def create_app(api_base_url: str) -> web.Application:
    """The bare game server, exchanging codes at ``api_base_url``."""
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    token_url = api_base_url.rstrip("/") + "/v2/oauth/token/"

    async def open_session(app: web.Application) -> None:
        app[_SESSION_KEY] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def close_session(app: web.Application) -> None:
        await app[_SESSION_KEY].close()

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)

    async def login(sid: str, data: Any = None) -> dict[str, Any]:
        code = data.get("code") if isinstance(data, dict) else None
        if not isinstance(code, str) or not code:
            return {"ok": False, "error": {"code": "invalid_payload", "message": "no code"}}
        form = {
            "client_key": SANDBOX_CLIENT_KEY,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "code": code,
            "grant_type": "authorization_code",
        }
        try:
            async with app[_SESSION_KEY].post(token_url, data=form) as response:
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            message = type(exc).__name__
            return {"ok": False, "error": {"code": "upstream_unavailable", "message": message}}
        open_id = body.get("open_id") if isinstance(body, dict) else None
        if not isinstance(open_id, str):
            message = str(body.get("error")) if isinstance(body, dict) else "bad answer"
            return {"ok": False, "error": {"code": "login_failed", "message": message}}
        return {"ok": True, "open_id": open_id}

    sio.on("tiktok:login", handler=login)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    """Parse the arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m bench._login_bare", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="the port to bind on 127.0.0.1")
    parser.add_argument("--api", required=True, help="the TikTok Open API's base URL")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    web.run_app(
        create_app(args.api), host="127.0.0.1", port=args.port, print=None, shutdown_timeout=1.0
    )


if __name__ == "__main__":
    main()
