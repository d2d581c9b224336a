"""Liveness and readiness: what a load balancer asks, and what makes a process not ready."""

from __future__ import annotations

import socket

import aiohttp
from game import FAST_UPSTREAM, Game, run_game

from tiktok_minis import Settings


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object]]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_a_started_plugin_is_live_and_ready(game: Game, http: aiohttp.ClientSession) -> None:
    """Both answer 200; readiness shows the database, no Redis, and TikTok as a detail."""
    assert await _get(http, game.url + "/ttminis/health/live") == (200, {"ok": True})
    status, ready = await _get(http, game.url + "/ttminis/health/ready")
    assert status == 200
    assert ready["ok"] is True and ready["database"] is True and ready["redis"] is None
    assert ready["tiktok"] == {"answering": True, "failures_in_a_row": 0, "seconds_since_ok": None}


async def test_a_database_that_stopped_answering_is_not_ready(
    game: Game, http: aiohttp.ClientSession
) -> None:
    """The database gone: readiness 503 and says why; liveness still 200."""
    await game.minis.database.close()
    status, ready = await _get(http, game.url + "/ttminis/health/ready")
    assert status == 503 and ready["database"] is False and ready["ok"] is False
    assert (await _get(http, game.url + "/ttminis/health/live"))[0] == 200


async def test_tiktok_down_is_a_detail_not_a_failure(
    game: Game, http: aiohttp.ClientSession
) -> None:
    """TikTok failing: logins fail upstream_unavailable, the process stays ready."""
    client = await game.client()
    game.sandbox.inject("token", status=503, times=None)
    ack = await client.call("tiktok:login", {"code": "whatever"})
    assert ack["error"]["code"] == "upstream_unavailable"
    status, ready = await _get(http, game.url + "/ttminis/health/ready")
    assert status == 200 and ready["ok"] is True
    tiktok = ready["tiktok"]
    assert isinstance(tiktok, dict) and tiktok["answering"] is False
    assert tiktok["failures_in_a_row"] == 1


async def test_redis_unreachable_is_not_ready(sqlite_url: str, http: aiohttp.ClientSession) -> None:
    """With TTMINIS_REDIS_URL and nothing there, readiness is 503 and names Redis."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        sandbox=True,
        database_url=sqlite_url,
        redis_url=f"redis://127.0.0.1:{port}/0",
        rank_index="memory",
        **FAST_UPSTREAM,
    )
    async with run_game(settings) as game:
        status, ready = await _get(http, game.url + "/ttminis/health/ready")
        assert status == 503 and ready["redis"] is False and ready["database"] is True
