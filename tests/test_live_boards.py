"""Live boards: coalesced pushes that end on the latest state, across processes through Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio
from aiohttp import web
from game import FAST_UPSTREAM, Game, run_game

from tiktok_minis import MINIS_KEY, Board, ConfigurationError, Settings, TikTokMinis
from tiktok_minis.realtime._pushes import BoardPusher
from tiktok_minis.testing import GameClient, serve


async def test_burst_of_submits_is_coalesced_and_ends_on_latest_state(game: Game) -> None:
    """Fifty quick submits give a watcher a few pushes, the last one showing the final scores."""
    watcher = await game.client()
    await watcher.call("leaderboard:join", {"board": "global"})
    players = [await game.logged_in() for _ in range(5)]
    submits = [
        client.call("leaderboard:submit", {"board": "global", "score": round_ * 10 + n})
        for round_ in range(10)
        for n, (client, _, _) in enumerate(players)
    ]
    acks = await asyncio.gather(*submits)
    assert all(ack["ok"] for ack in acks)
    final = await watcher.wait_for(
        "leaderboard:update", lambda u: [e["score"] for e in u["entries"]] == [94, 93, 92, 91, 90]
    )
    assert [entry["rank"] for entry in final["entries"]] == [1, 2, 3, 4, 5]
    pushes = [data for event, data in watcher.received if event == "leaderboard:update"]
    assert len(pushes) < len(submits), "pushes are coalesced"


async def test_board_pusher_paces_and_reads_state_at_push_time() -> None:
    """At most one push per interval per board; a change during a push triggers one more."""
    pushed: list[tuple[str, int]] = []
    state = {"a": 0}
    second_push = asyncio.Event()

    async def push(board: str) -> None:
        pushed.append((board, state["a"]))
        if len(pushed) == 2:
            second_push.set()

    pusher = BoardPusher(0.05, push)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for value in range(1, 21):
        state["a"] = value
        pusher.changed("a")
        await asyncio.sleep(0)
    await asyncio.wait_for(second_push.wait(), 2)
    assert pushed[0] == ("a", 1), "the first change of a quiet board goes out at once"
    assert pushed[1] == ("a", 20), "the next push shows the latest state"
    assert loop.time() - started >= 0.05
    await pusher.close()
    await pusher.close()


async def test_profile_change_pushes_boards_showing_the_player(game: Game) -> None:
    """Authorizing renames the player on every board where they are visible."""
    sandbox = game.sandbox
    user = sandbox.add_user(display_name="Shown Everywhere")
    client, _, _ = await game.logged_in(user)
    await client.call("leaderboard:submit", {"board": "global", "score": 3})
    watcher = await game.client()
    await watcher.call("leaderboard:join", {"board": "global"})
    await client.call(
        "tiktok:authorize", {"granted": True, "code": sandbox.authorize_code(user.open_id)}
    )
    update = await watcher.wait_for(
        "leaderboard:update",
        lambda u: u["entries"][0]["player"]["display_name"] == "Shown Everywhere",
    )
    assert update["entries"][0]["player"]["placeholder"] is False


async def test_two_processes_share_pushes_through_redis(postgres_url: str, redis_url: str) -> None:
    """A watcher on one server sees a score submitted on another (shared Redis and PostgreSQL)."""
    import uuid

    from tiktok_minis.store.database import connection

    channel = f"ttminis-test-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        sandbox=True,
        database_url=postgres_url,
        redis_url=redis_url,
        redis_channel=channel,
        **FAST_UPSTREAM,
    )
    async with run_game(settings) as first:
        await connection().execute_script("TRUNCATE ttminis_score, ttminis_player CASCADE")
        watcher = await first.client()
        await watcher.call("leaderboard:join", {"board": "global"})
        second_app_settings: dict[str, Any] = settings.model_dump()
        async with run_game(Settings(**second_app_settings)) as second:
            user = second.sandbox.add_user()
            client = await second.client()
            ack = await client.call(
                "tiktok:login", {"code": second.sandbox.login_code(user.open_id)}
            )
            assert ack["ok"], ack
            assert (await client.call("leaderboard:submit", {"board": "global", "score": 77}))["ok"]
            update = await watcher.wait_for(
                "leaderboard:update", lambda u: any(e["score"] == 77 for e in u["entries"])
            )
            assert update["entries"][0]["player"]["id"] == ack["player"]["id"]
        await connection().execute_script("TRUNCATE ttminis_score, ttminis_player CASCADE")


def _own_server_game(settings: Settings) -> web.Application:
    """A game that builds its own AsyncServer, as docs/embedding.md shows, with the plugin."""
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    minis = TikTokMinis(settings)
    minis.boards.define(Board("global", client_scores=True))
    minis.attach(sio, app)
    app[MINIS_KEY] = minis
    return app


async def test_a_games_own_server_shares_pushes_through_redis(
    sqlite_url: str, redis_url: str
) -> None:
    """TTMINIS_REDIS_URL with the game's own AsyncServer: attach installs the Redis manager, and
    a score on one server reaches a watcher on the other."""
    import uuid

    settings = Settings(
        sandbox=True,
        database_url=sqlite_url,
        redis_url=redis_url,
        redis_channel=f"ttminis-test-{uuid.uuid4().hex[:8]}",
        **FAST_UPSTREAM,
    )
    first_app, second_app = _own_server_game(settings), _own_server_game(settings)
    async with (
        serve(first_app) as first_url,
        serve(second_app) as second_url,
        GameClient(first_url) as watcher,
        GameClient(second_url) as player,
    ):
        assert (await watcher.call("leaderboard:join", {"board": "global"}))["ok"]
        sandbox = second_app[MINIS_KEY].sandbox
        assert sandbox is not None
        user = sandbox.add_user()
        ack = await player.call("tiktok:login", {"code": sandbox.login_code(user.open_id)})
        assert ack["ok"], ack
        assert (await player.call("leaderboard:submit", {"board": "global", "score": 5}))["ok"]
        update = await watcher.wait_for(
            "leaderboard:update", lambda u: any(e["score"] == 5 for e in u["entries"])
        )
        assert update["entries"][0]["player"]["id"] == ack["player"]["id"]


def test_a_server_with_a_manager_of_its_own_is_refused(sqlite_url: str) -> None:
    """TTMINIS_REDIS_URL and a server whose manager would keep pushes in one process: one
    sentence says what to do, before anything serves."""

    class Custom(socketio.AsyncManager):  # type: ignore[misc]
        """A game's own in-process manager."""

    settings = Settings(sandbox=True, database_url=sqlite_url, redis_url="redis://127.0.0.1:6379")
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=Custom())
    with pytest.raises(ConfigurationError, match="redis_manager"):
        TikTokMinis(settings).attach(sio, web.Application())
