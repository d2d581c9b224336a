"""Leaderboard submits, top-10, rank and around per second, on SQLite and PostgreSQL.

Run: ``python -m bench leaderboard [--sizes 10000,100000] [--seconds 1.0] [--no-postgres]``.

For each database (a temporary SQLite file; PostgreSQL when it answers at
``TTMINIS_BENCH_POSTGRES_URL``, default ``postgres://postgres@127.0.0.1:5432/test``, in a schema
of its own that is dropped afterwards) it loads one board per size with that many players, then
measures for a while each, through the service (:class:`tiktok_minis.leaderboards.Leaderboards`):

- submit: ``latest`` scores of random players (one upsert, then the rank of the row written),
  one at a time and 50 at once;
- top 10: the live view of the board, joined to the current profiles;
- entry: a random player's rank (it counts the rows ahead: the cost grows with the rank);
- around: a random player's neighbourhood, radius 5.

Figures are printed as rates and as ratios against a baseline measured in the same run on the
same connection (a trivial ``SELECT 1`` round trip, one at a time or 50 at once to match): the
machines are shared and noisy. Nothing is asserted about time. A default run takes about 40 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tiktok_minis.leaderboards import Board, BoardRegistry, Leaderboards
from tiktok_minis.profile import Placeholder
from tiktok_minis.store.database import Database, Dialect, connection
from tiktok_minis.store.scores import db_timestamp

POSTGRES_URL = os.environ.get(
    "TTMINIS_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"
)
SCHEMA = "ttminis_bench"
CONCURRENCY = 50
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

Operation = Callable[[], Awaitable[object]]


async def _rate(operation: Operation, seconds: float, concurrency: int = 1) -> float:
    """Operations per second: ``concurrency`` tasks repeating ``operation`` for ``seconds``."""
    for _ in range(5):  # warm up: prepared statements, caches, the pool
        await operation()
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await operation()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


def _placeholders(dialect: Dialect, count: int) -> str:
    marks = [f"${n}" if dialect == "postgres" else "?" for n in range(1, count + 1)]
    return "(" + ", ".join(marks) + ")"


async def _load_players(dialect: Dialect, count: int) -> None:
    """``count`` players ``bench-<n>``, every other one with a name (the rest show the
    placeholder)."""
    now = db_timestamp(dialect, EPOCH)
    rows = [
        [f"bench-{n}", f"pub-{n}", "unknown", f"Player {n}" if n % 2 else None, "", 0, now, now]
        for n in range(count)
    ]
    await connection().execute_many(
        # Only placeholders are formatted in; the values are bound parameters.
        "INSERT INTO ttminis_player (open_id, public_id, consent, display_name, scopes,"  # noqa: S608
        f" session_epoch, created_at, updated_at) VALUES {_placeholders(dialect, 8)}",
        rows,
    )


async def _load_board(dialect: Dialect, board: str, players: int, rng: random.Random) -> None:
    """One score per player; scores drawn from a range narrow enough to make ties."""
    rows = []
    for n in range(players):
        reached = db_timestamp(dialect, EPOCH + timedelta(milliseconds=rng.randrange(10**9)))
        rows.append([board, "all", f"bench-{n}", rng.randrange(players // 2), reached, reached])
    await connection().execute_many(
        # Only placeholders are formatted in; the values are bound parameters.
        "INSERT INTO ttminis_score (board, period, player_id, score, reached_at, updated_at)"  # noqa: S608
        f" VALUES {_placeholders(dialect, 6)}",
        rows,
    )
    if dialect == "postgres":
        # Settle the table as autovacuum would on a live server (visibility map, statistics).
        await connection().execute_script("VACUUM ANALYZE ttminis_score")
        await connection().execute_script("VACUUM ANALYZE ttminis_player")
    else:
        await connection().execute_script("ANALYZE")


def _line(label: str, rate: float, baseline: float) -> str:
    return (
        f"    {label:<24} {rate:10,.0f} /s   {rate / baseline:6.3f} x baseline"
        f"   (= {baseline / rate:6.1f} round trips)"
    )


async def _bench(title: str, url: str, sizes: list[int], seconds: float) -> None:
    database = Database(url, pool_size=CONCURRENCY)
    await database.open()
    try:
        dialect = database.dialect
        boards = BoardRegistry()
        leaderboards = Leaderboards(boards, database, Placeholder())
        rng = random.Random(1)

        async def select_one() -> object:
            return await connection().execute_query("SELECT 1")

        base = await _rate(select_one, seconds)
        base_concurrent = await _rate(select_one, seconds, CONCURRENCY)
        print(f"\n{title}")
        print(f"  baseline SELECT 1: {base:,.0f} /s one at a time, ", end="")
        print(f"{base_concurrent:,.0f} /s {CONCURRENCY} at once")

        await _load_players(dialect, max(sizes))
        for size in sizes:
            board = boards.define(Board(f"bench-{size}", operator="latest")).name
            started = time.perf_counter()
            await _load_board(dialect, board, size, rng)
            loaded = time.perf_counter() - started
            print(f"  board of {size:,} players (loaded in {loaded:.1f} s):")

            def player(size: int = size) -> str:
                return f"bench-{rng.randrange(size)}"

            async def submit(board: str = board, size: int = size) -> object:
                return await leaderboards.submit(player(size), board, rng.randrange(size // 2))

            async def top(board: str = board) -> object:
                return await leaderboards.top(board, 10)

            async def entry(board: str = board, size: int = size) -> object:
                return await leaderboards.entry(board, player(size))

            async def around(board: str = board, size: int = size) -> object:
                return await leaderboards.around(board, player(size), 5)

            print(_line("submit", await _rate(submit, seconds), base))
            concurrent = await _rate(submit, seconds, CONCURRENCY)
            print(_line(f"submit, {CONCURRENCY} at once", concurrent, base_concurrent))
            print(_line("top 10", await _rate(top, seconds), base))
            print(_line("entry (rank)", await _rate(entry, seconds), base))
            print(_line("around (radius 5)", await _rate(around, seconds), base))
    finally:
        await database.close()


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 1):
            return True
    except OSError:
        return False


async def _postgres_schema(url: str, *, create: bool) -> None:
    """Create (afresh) or drop the benchmark's own schema, leaving every other table alone."""
    # Only the PostgreSQL run needs asyncpg, which ships no type hints.
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        if create:
            await conn.execute(f"CREATE SCHEMA {SCHEMA}")
    finally:
        await conn.close()


async def _run(sizes: list[int], seconds: float, postgres: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
        await _bench("SQLite (temporary file)", url, sizes, seconds)
    if not postgres:
        return
    if not _reachable(POSTGRES_URL):
        print(f"\nPostgreSQL: not reachable at {POSTGRES_URL}; skipped")
        return
    await _postgres_schema(POSTGRES_URL, create=True)
    parts = urlsplit(POSTGRES_URL)
    query = f"{parts.query}&schema={SCHEMA}" if parts.query else f"schema={SCHEMA}"
    try:
        await _bench(
            f"PostgreSQL ({parts.hostname}:{parts.port or 5432}, schema {SCHEMA})",
            urlunsplit(parts._replace(query=query)),
            sizes,
            seconds,
        )
    finally:
        await _postgres_schema(POSTGRES_URL, create=False)


def main(argv: list[str]) -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench leaderboard", description=__doc__)
    parser.add_argument(
        "--sizes", default="10000,100000", help="board sizes, comma-separated (10000,100000)"
    )
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="how long each figure is measured (1.0)"
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    if any(size < 2 for size in sizes):
        parser.error("each size must be at least 2")
    asyncio.run(_run(sizes, args.seconds, not args.no_postgres))
