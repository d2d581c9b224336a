"""The upstream budget: paced slots, a pause after a 429, and one budget for every process
through Redis (with the process's own as a fallback)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from game import FAST_UPSTREAM, Game, run_game
from redis.asyncio import Redis

from tiktok_minis import Settings
from tiktok_minis.tiktok.throttle import LocalPace, RedisPace, UpstreamThrottle


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the test Redis; the keys a test makes carry a prefix of its own."""
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"ttminis-test-{uuid.uuid4().hex[:8]}"


def _within(arrivals: list[float], rate: float, slack: float = 0.5) -> bool:
    """Over every window of t seconds, at most rate * t + 1 (+ slack) arrivals.

    Slots are exact; a start may come a little after its slot (the event loop is busy), so
    two starts can sit a little closer than their slots: ``slack`` allows for that.
    """
    arrivals = sorted(arrivals)
    return all(
        last - first + 1 <= rate * (arrivals[last] - arrivals[first]) + 1 + slack
        for first in range(len(arrivals))
        for last in range(first, len(arrivals))
    )


async def _acquire_all(throttle: UpstreamThrottle, path: str, count: int) -> list[float]:
    started: list[float] = []

    async def one() -> None:
        await throttle.acquire(path)
        started.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(count)))
    return started


async def test_attempts_are_paced_without_a_burst() -> None:
    """Twenty callers at once on a 40/s budget start 25 ms apart, none early."""
    throttle = UpstreamThrottle(path_rates={"/v2/user/info/": 40.0})
    started = await _acquire_all(throttle, "/v2/user/info/", 20)
    assert _within(started, 40.0)
    assert max(started) - min(started) >= 19 / 40 - 0.01
    # Paths without a budget, and no cap: the token endpoint never reserves a slot, so it
    # never waits for one (counted, not timed: a busy machine must not fail this).
    reserved: list[str] = []
    reserve = throttle.pace.reserve

    async def counted(key: str, rate: float) -> float:
        reserved.append(key)
        return await reserve(key, rate)

    throttle.pace.reserve = counted  # type: ignore[method-assign]
    await _acquire_all(throttle, "/v2/oauth/token/", 50)
    assert reserved == []
    assert throttle.attempts == 70


async def test_a_cap_paces_every_path() -> None:
    """``upstream_rate_per_second`` caps all paths together."""
    throttle = UpstreamThrottle(50.0)
    started = await _acquire_all(throttle, "/v2/oauth/token/", 15)
    assert _within(started, 50.0)


async def test_a_pause_holds_every_caller() -> None:
    """After a 429 nobody starts until the Retry-After has passed."""
    throttle = UpstreamThrottle(pace=LocalPace())
    await throttle.pause(0.3)
    began = time.monotonic()
    await throttle.acquire("/v2/oauth/token/")
    assert time.monotonic() - began >= 0.29
    assert throttle.rate_limited == 1


async def test_two_processes_share_one_redis_budget(redis: Redis, prefix: str) -> None:
    """Two throttles on one Redis (two processes) together never beat the app's rate."""
    first = UpstreamThrottle(path_rates={"/u": 30.0}, pace=RedisPace(redis, prefix))
    second = UpstreamThrottle(path_rates={"/u": 30.0}, pace=RedisPace(redis, prefix))
    both = await asyncio.gather(_acquire_all(first, "/u", 15), _acquire_all(second, "/u", 15))
    arrivals = both[0] + both[1]
    assert _within(arrivals, 30.0)
    assert max(arrivals) - min(arrivals) >= 29 / 30 - 0.05
    await redis.delete(f"{prefix}:/u")


async def test_a_pause_in_one_process_holds_the_other(redis: Redis, prefix: str) -> None:
    """A 429 met by one process pauses every process sharing the budget."""
    here = UpstreamThrottle(pace=RedisPace(redis, prefix))
    there = UpstreamThrottle(path_rates={"/u": 1000.0}, pace=RedisPace(redis, prefix))
    await here.pause(0.4)
    assert 0.2 < await there.paused_for() <= 0.4
    began = time.monotonic()
    await there.acquire("/u")
    assert time.monotonic() - began >= 0.3
    await redis.delete(f"{prefix}:/u", f"{prefix}:pause")


async def test_without_redis_the_process_paces_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis unreachable: calls still go, paced by the process, and the log says so once."""
    unreachable = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    try:
        throttle = UpstreamThrottle(path_rates={"/u": 40.0}, pace=RedisPace(unreachable, "x"))
        started = await _acquire_all(throttle, "/u", 8)
        await throttle.pause(0.05)
        assert await throttle.paused_for() > 0
    finally:
        await unreachable.aclose()
    assert _within(started, 40.0)
    warnings = [r for r in caplog.records if getattr(r, "event", "") == "upstream_budget_local"]
    assert len(warnings) == 1


async def _user_info_storm(game: Game, arrivals: list[float], players: int) -> None:
    """Every player authorized, then their profiles refreshed all at once, arrivals recorded."""
    record = game.sandbox.record_call

    def timed(endpoint: str) -> None:
        if endpoint == "user_info":
            arrivals.append(time.monotonic())
        record(endpoint)

    users = [game.sandbox.add_user() for _ in range(players)]
    for user in users:
        await game.minis.players.login(game.sandbox.login_code(user.open_id))
    game.sandbox.record_call = timed  # type: ignore[method-assign]
    await asyncio.gather(
        *(
            game.minis.players.authorize(
                user.open_id, True, game.sandbox.authorize_code(user.open_id)
            )
            for user in users
        )
    )


async def test_two_games_on_one_redis_keep_tiktoks_user_info_limit(
    sqlite_url: str, redis_url: str, prefix: str
) -> None:
    """Two servers of one app, each with its own emulator, together stay within the shared
    user-info rate: the budget is the app's, not each process's."""
    values: dict[str, Any] = {
        **FAST_UPSTREAM,
        "upstream_budget_seconds": 5.0,
        "user_info_rate_per_second": 20.0,
    }
    settings = Settings(
        sandbox=True, database_url=sqlite_url, redis_url=redis_url, redis_channel=prefix, **values
    )
    arrivals: list[float] = []
    async with run_game(settings) as first, run_game(settings) as second:
        await asyncio.gather(
            _user_info_storm(first, arrivals, 15), _user_info_storm(second, arrivals, 15)
        )
    assert len(arrivals) == 30
    assert _within(arrivals, 20.0, slack=1.0)
    assert max(arrivals) - min(arrivals) >= 29 / 20 - 0.1
