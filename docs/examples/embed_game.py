"""An existing aiohttp + python-socketio game with tiktok-minis embedded (docs/embedding.md).

Run it: ``TTMINIS_SANDBOX=true .venv/bin/python docs/examples/embed_game.py``, then open
http://127.0.0.1:8080/ (the built-in TikTok emulator: no credentials; without
``TTMINIS_SANDBOX`` it needs the app's credentials). ``PORT=9000`` moves it. The page at ``/`` is
``html_game/index.html``, the game's HTML client (docs/html-client.md).
"""

import os
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web

from tiktok_minis import Board, MinisError, TikTokMinis

PAGE = Path(__file__).parent / "html_game" / "index.html"  # the game's own page

sio = socketio.AsyncServer(async_mode="aiohttp")  # the game's own server, as it was
app = web.Application()
sio.attach(app)

minis = TikTokMinis()  # TTMINIS_* from the environment (TTMINIS_SANDBOX=true for the emulator)
minis.boards.define(Board("kills", operator="incr"))  # scores only the server gives
minis.attach(sio, app)  # tiktok:* and leaderboard:* events, /ttminis/ routes, start and stop


def failed(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}  # as the plugin's acks


async def match_end(sid: str, data: Any) -> dict[str, Any]:
    open_id = minis.open_id_of(sid)  # the player logged in on this connection
    kills = data.get("kills") if isinstance(data, dict) else None
    if open_id is None:
        return failed("not_logged_in", "Log in first.")
    if not isinstance(kills, int):
        return failed("invalid_payload", "Send {kills: <int>}.")
    try:
        entry = await minis.leaderboards.submit(open_id, "kills", kills)
    except MinisError as error:
        return failed(error.code, error.message)
    return {"ok": True, "rank": entry.rank, "score": entry.score}


sio.on("match:end", match_end)  # one of the game's own events


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE)


app.router.add_get("/", index)  # the game's own page, next to this file

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
