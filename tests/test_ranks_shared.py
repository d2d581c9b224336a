"""The shared rank index: two servers on one PostgreSQL and one Redis keep exact ranks, through
concurrent writes of the same players and a Redis flushed under them."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from game import FAST_UPSTREAM, Game, run_game
from redis.asyncio import Redis

from tiktok_minis import Settings
from tiktok_minis.services.leaderboards import Entry
from tiktok_minis.store.database import connection
from tiktok_minis.store.scores import BoardPeriod

BOARD = "global"


@pytest.fixture
async def two_servers(postgres_url: str, redis_url: str) -> AsyncIterator[tuple[Game, Game, str]]:
    """Two example servers of one app on the test PostgreSQL and Redis (their own channel)."""
    channel = f"ttminis-test-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        sandbox=True,
        database_url=postgres_url,
        redis_url=redis_url,
        redis_channel=channel,
        **FAST_UPSTREAM,
    )
    async with run_game(settings) as first:
        await connection().execute_script(
            "TRUNCATE ttminis_score, ttminis_player, ttminis_score_removal CASCADE"
        )
        async with run_game(settings) as second:
            yield first, second, channel
        await connection().execute_script(
            "TRUNCATE ttminis_score, ttminis_player, ttminis_score_removal CASCADE"
        )
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{channel}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _indexed(game: Game, deadline: float = 20.0) -> None:
    """Wait (polling, bounded) until the server's rank index answers for the board."""
    period = game.minis.leaderboards.period(BOARD)
    give_up = time.monotonic() + deadline
    while await game.minis.rank_index.rank(BOARD, period, "desc", 0) is None:
        assert time.monotonic() < give_up, "the rank index never loaded"
        await asyncio.sleep(0.05)


def _shown(entry: Entry | None) -> Any:
    return entry and (entry.rank, entry.score, entry.player.id)


async def _assert_exact(game: Game, open_ids: list[str]) -> None:
    """Every player's entry, the top and around, from this server, equal the counted ones."""
    service = game.minis.leaderboards
    where = BoardPeriod(BOARD, service.period(BOARD), "desc")
    scores = game.minis.store.scores
    for open_id in open_ids:
        counted = await scores.entry(where, open_id, service.entry_of)
        assert _shown(await service.entry(BOARD, open_id)) == _shown(counted)
    counted_top = await scores.top(where, 10, service.entry_of)
    assert [_shown(e) for e in await service.top(BOARD)] == [_shown(e) for e in counted_top]


async def test_concurrent_writes_from_two_servers_keep_every_rank_exact(
    two_servers: tuple[Game, Game, str],
) -> None:
    """Both servers submit for the same players at once; afterwards either one's ranks equal
    the database's own count."""
    first, second, _ = two_servers
    open_ids = []
    for n in range(12):
        row, _ = await first.minis.store.players.ensure_player(f"shared-{n}")
        open_ids.append(row.open_id)
    await asyncio.gather(_indexed(first), _indexed(second))
    rng = random.Random(7)
    writes = [
        game.minis.leaderboards.submit(open_id, BOARD, rng.randrange(0, 40))
        for _ in range(15)
        for open_id in open_ids
        for game in (first, second)
    ]
    rng.shuffle(writes)
    await asyncio.gather(*writes)
    for game in (first, second):
        assert await game.minis.rank_index.rank(BOARD, "all", "desc", 0) is not None
        await _assert_exact(game, open_ids)


async def test_a_flushed_redis_falls_back_then_is_rebuilt(
    two_servers: tuple[Game, Game, str], redis_url: str
) -> None:
    """Redis loses the index mid-run: ranks stay exact meanwhile (counted), writes go on, and
    the index is rebuilt to the database's state."""
    first, second, channel = two_servers
    open_ids = []
    for n in range(8):
        row, _ = await first.minis.store.players.ensure_player(f"flushed-{n}")
        open_ids.append(row.open_id)
    await _indexed(first)
    for n, open_id in enumerate(open_ids):
        await first.minis.leaderboards.submit(open_id, BOARD, 10 * n)
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{channel}:rank*")]
        assert keys
        await client.delete(*keys)
    finally:
        await client.aclose()
    # Right after the flush: no index, the database answers, and it is exact.
    await second.minis.leaderboards.submit(open_ids[0], BOARD, 1000)
    await _assert_exact(second, open_ids)
    await _indexed(second)
    await _indexed(first)
    await first.minis.leaderboards.submit(open_ids[1], BOARD, 999)
    for game in (first, second):
        await _assert_exact(game, open_ids)
