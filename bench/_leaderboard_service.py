"""The service-level half of ``bench.leaderboard``: no sockets, the ranking cost alone.

In the benchmark's own process, on the database just measured over the wire (its server is
stopped by then), :class:`tiktok_minis.leaderboards.Leaderboards` is driven directly with each
rank index in turn: none (every rank counted in the database), the in-process index, and on
PostgreSQL the Redis index when it can be imported. One call at a time, the operations
interleaved in a shuffled order round after round, against the same baseline as the old bench
(a ``SELECT 1`` round trip on the same pool): submit (a better score, so it writes), entry (a
player's rank), around (radius 5) and top 10, for random loaded players (spread over the whole
board). The index's load time and what it adds to this process's RSS are reported too.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._leaderboard_load import BOARD, PERIOD, Loaded
from tiktok_minis.ranking import MemoryRankIndex, NoRankIndex, RankIndex
from tiktok_minis.ranking.keys import rank_key
from tiktok_minis.services.leaderboards import Board, BoardRegistry, Leaderboards, index_loader
from tiktok_minis.services.profile import Placeholder
from tiktok_minis.store import Store
from tiktok_minis.store.database import Database, connection

__all__ = ["SERVICE_OPERATIONS", "IndexChoice", "ServiceResult", "redis_index_class", "run"]

SERVICE_OPERATIONS = ("select1", "submit", "entry", "around", "top")
_PLAYERS = 200
_MAX_ROUNDS = 1_000_000
_LOAD_WITHIN = 300.0


def redis_index_class() -> tuple[type[Any] | None, str]:
    """``RedisRankIndex`` and where it came from, or ``None`` and why it cannot be used."""
    try:
        from tiktok_minis.ranking import RedisRankIndex  # type: ignore[attr-defined]
    except ImportError as exported:
        try:
            from tiktok_minis.ranking.redis import RedisRankIndex
        except ImportError as module:
            return None, f"not importable ({exported}; {module})"
        return RedisRankIndex, "tiktok_minis.ranking.redis (not exported from the package yet)"
    return RedisRankIndex, "tiktok_minis.ranking"


@dataclass(frozen=True, slots=True)
class IndexChoice:
    """One rank index to measure: its label and how to build it on an open database."""

    label: str
    build: Callable[[Database], RankIndex]
    cleanup: Callable[[], Awaitable[object]] | None = None


@dataclass(slots=True)
class ServiceResult:
    """What one index gave."""

    label: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    load_seconds: float | None = None
    rss_delta_kib: int | None = None
    error: str | None = None


def choices(dialect: str, redis_url: str | None, prefix: str) -> list[IndexChoice]:
    """The indexes to measure on this database."""
    found = [
        IndexChoice("counted in the database (no index)", lambda _db: NoRankIndex()),
        IndexChoice("in-process index", lambda db: MemoryRankIndex(index_loader(Store(db)))),
    ]
    redis_class, _ = redis_index_class()
    if dialect == "postgres" and redis_url and redis_class is not None:
        import redis.asyncio as aioredis

        from bench._leaderboard_server import redis_delete

        client = aioredis.from_url(redis_url)

        def build(db: Database) -> RankIndex:
            index: RankIndex = redis_class(client, index_loader(Store(db)), prefix=prefix)
            return index

        async def cleanup() -> None:
            await redis_delete(redis_url, f"{prefix}:*")
            await client.aclose()

        found.append(IndexChoice("Redis index", build, cleanup))
    return found


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _wait_loaded(index: RankIndex) -> float | None:
    """Ask for the board until the index answers; the seconds that took (``None``: never)."""
    started = time.perf_counter()
    probe = rank_key("desc", 0, 0, 0)
    while time.perf_counter() - started < _LOAD_WITHIN:
        if await index.rank(BOARD, PERIOD, "desc", probe) is not None:
            return time.perf_counter() - started
        await asyncio.sleep(0.05)
    return None


async def _measure_one(
    loaded: Loaded,
    choice: IndexChoice,
    *,
    samples: int,
    seconds: float,
    seed: int,
) -> ServiceResult:
    result = ServiceResult(choice.label)
    database = Database(loaded.url, pool_size=20)
    await database.open()
    index: RankIndex | None = None
    try:
        boards = BoardRegistry()
        boards.define(Board(BOARD, order="desc", operator="best", client_scores=True))
        gc.collect()
        before = _rss_kib()
        index = choice.build(database)
        await index.start()
        leaderboards = Leaderboards(boards, Store(database), Placeholder(), index=index)
        if not isinstance(index, NoRankIndex):
            result.load_seconds = await _wait_loaded(index)
            if result.load_seconds is None:
                result.error = f"the index did not load within {_LOAD_WITHIN:.0f} s"
                return result
            gc.collect()
            result.rss_delta_kib = _rss_kib() - before
        rng = random.Random(seed)
        players = [f"bench-{rng.randrange(loaded.players):08d}" for _ in range(_PLAYERS)]
        best = {}
        for player in players:
            entry = await leaderboards.entry(BOARD, player)
            best[player] = entry.score if entry is not None else 0

        async def select1() -> object:
            return await connection().execute_query("SELECT 1")

        async def submit() -> object:
            player = rng.choice(players)
            best[player] += rng.randint(1, 3)
            return await leaderboards.submit(player, BOARD, best[player])

        async def entry() -> object:
            return await leaderboards.entry(BOARD, rng.choice(players))

        async def around() -> object:
            return await leaderboards.around(BOARD, rng.choice(players), 5)

        async def top() -> object:
            return await leaderboards.top(BOARD, 10)

        operations: dict[str, Callable[[], Awaitable[object]]] = {
            "select1": select1,
            "submit": submit,
            "entry": entry,
            "around": around,
            "top": top,
        }
        for operation in operations.values():  # warm up: statements, caches, the pool
            for _ in range(3):
                await operation()
        timed: dict[str, list[float]] = {name: [] for name in operations}
        deadline = time.perf_counter() + seconds
        rounds = 0
        while (
            min(len(s) for s in timed.values()) < samples
            and time.perf_counter() < deadline
            and rounds < _MAX_ROUNDS
        ):
            rounds += 1
            order = list(operations)
            rng.shuffle(order)
            for name in order:
                started = time.perf_counter()
                await operations[name]()
                timed[name].append((time.perf_counter() - started) * 1e3)
        result.samples = timed
        return result
    except Exception as exc:  # noqa: BLE001 (reported in the table; the run goes on)
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    finally:
        if index is not None:
            await index.close()
        await database.close()


async def run(
    loaded: Loaded,
    dialect: str,
    *,
    redis_url: str | None,
    prefix: str,
    samples: int,
    seconds: float,
    seed: int,
) -> list[ServiceResult]:
    """Every index this database can have, measured one after the other."""
    results = []
    for choice in choices(dialect, redis_url, prefix):
        try:
            results.append(
                await _measure_one(loaded, choice, samples=samples, seconds=seconds, seed=seed)
            )
        finally:
            if choice.cleanup is not None:
                await choice.cleanup()
    return results
