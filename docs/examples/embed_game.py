"""An existing aiohttp + python-socketio game with tiktok-minis embedded (docs/embedding.md).

Run it: ``TTMINIS_SANDBOX=true .venv/bin/python docs/examples/embed_game.py`` (the built-in
TikTok emulator: no credentials; without ``TTMINIS_SANDBOX`` it needs the app's credentials).
"""

from typing import Any

import socketio
from aiohttp import web

from tiktok_minis import Board, MinisError, TikTokMinis

sio = socketio.AsyncServer(async_mode="aiohttp")  # the game's own server, as it was
app = web.Application()
sio.attach(app)

minis = TikTokMinis()  # TTMINIS_* from the environment (TTMINIS_SANDBOX=true for the emulator)
minis.boards.define(Board("kills", operator="incr"))  # scores only the server gives
minis.attach(sio, app)  # tiktok:* and leaderboard:* events, /ttminis/ routes, start and stop


async def match_end(sid: str, data: Any) -> dict[str, Any]:
    open_id = minis.open_id_of(sid)  # the player logged in on this connection
    kills = data.get("kills") if isinstance(data, dict) else None
    if open_id is None or not isinstance(kills, int):
        return {"ok": False, "error": "log in, then send {kills: <int>}"}
    try:
        entry = await minis.leaderboards.submit(open_id, "kills", kills)
    except MinisError as error:
        return {"ok": False, "error": error.message}
    return {"ok": True, "rank": entry.rank, "score": entry.score}


sio.on("match:end", match_end)  # one of the game's own events


if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=8080)
