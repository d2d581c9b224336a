"""Redis memory per row and load time of the shared rank index, for a million-row board.

Run: ``python -m bench rank_redis_memory [--rows 1000000] [--batch 10000] [--url redis://...]``.

Without ``--url`` it starts a redis-server of its own on a free loopback port (no persistence),
so the shared Redis other work uses never holds the test board; with ``--url`` it uses that
server under a prefix of its own and deletes its keys afterwards.

It loads one board period of ``--rows`` rows through :class:`RedisRankIndex` (random scores
over the signed 64-bit range, a few distinct times, so ties occur), from a loader that makes
rows in memory, and reports:

- the load: from the first read (which answers ``None`` and starts it) to the first read that
  answers, minus the time the loader itself spent making rows;
- ``MEMORY USAGE`` (exact, ``SAMPLES 0``) of the sorted set and of the hash, per row, and the
  growth of the server's ``used_memory``;
- for scale, rank reads and single-row writes per second, one at a time, after the load.

Figures depend on the machine (shared and noisy here); nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis

from bench._ports import free_port
from tiktok_minis.ranking.base import Row
from tiktok_minis.ranking.keys import INT64_MAX, INT64_MIN, Order, rank_key
from tiktok_minis.ranking.redis import RedisRankIndex

BOARD = "bench"
PERIOD = "all"


@contextmanager
def _own_redis() -> Iterator[str]:
    """A redis-server of this run's own, without persistence; its URL."""
    program = shutil.which("redis-server")
    if program is None:
        raise SystemExit("redis-server is not on PATH: pass --url")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(  # noqa: S603 - a fixed program and arguments
            [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("redis-server did not start") from None
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.kill()
            process.wait(10)


class _Loader:
    """Makes ``rows`` rows in batches, timing its own work."""

    def __init__(self, rows: int, batch: int) -> None:
        self.rows = rows
        self.batch = batch
        self.seconds = 0.0

    async def __call__(self, board: str, period: str, order: Order) -> AsyncIterator[list[Row]]:
        rng = random.Random(1)
        for start in range(1, self.rows + 1, self.batch):
            began = time.perf_counter()
            batch = [
                Row(
                    row_id,
                    rng.randrange(50),
                    rank_key(
                        order,
                        rng.randint(INT64_MIN, INT64_MAX),
                        1_767_225_600_000_000 + rng.randrange(1000),
                        row_id,
                    ),
                )
                for row_id in range(start, min(start + self.batch, self.rows + 1))
            ]
            self.seconds += time.perf_counter() - began
            yield batch


async def _rate(call: Callable[[], Awaitable[None]], seconds: float) -> float:
    done = 0
    ends = time.perf_counter() + seconds
    while time.perf_counter() < ends:
        await call()
        done += 1
    return done / seconds


async def _run(url: str, rows: int, batch: int) -> None:
    client = aioredis.Redis.from_url(url)
    prefix = f"ttminis-bench:{uuid.uuid4().hex}:rank"
    loader = _Loader(rows, batch)
    index = RedisRankIndex(client, loader, prefix=prefix)
    await index.start()
    try:
        before = (await client.info("memory"))["used_memory"]
        started = time.perf_counter()
        assert await index.rank(BOARD, PERIOD, "desc", 0) is None
        # Poll as a caller would: a read answers once the load set the marker.
        while True:
            if await index.rank(BOARD, PERIOD, "desc", 0) is not None:
                break
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - started
        after = (await client.info("memory"))["used_memory"]
        base = f"{prefix}:{{{BOARD}:{PERIOD}}}"
        zset = await client.memory_usage(f"{base}:z", samples=0) or 0
        hash_ = await client.memory_usage(f"{base}:rows", samples=0) or 0
        held = await client.zcard(f"{base}:z")
        print(f"rows loaded        {held:,} (asked {rows:,}, batches of {batch:,})")
        print(f"load, wall         {wall:.2f} s ({rows / wall:,.0f} rows/s)")
        print(f"  of which loader  {loader.seconds:.2f} s making rows in Python")
        print(f"  Redis side       {wall - loader.seconds:.2f} s")
        print(f"sorted set         {zset / 2**20:.1f} MiB, {zset / held:.1f} B/row")
        print(f"hash               {hash_ / 2**20:.1f} MiB, {hash_ / held:.1f} B/row")
        print(f"both               {(zset + hash_) / held:.1f} B/row")
        grown = after - before
        print(f"used_memory growth {grown / 2**20:.1f} MiB, {grown / held:.1f} B/row")

        rng = random.Random(2)

        async def one_rank() -> None:
            key = rank_key("desc", rng.randint(INT64_MIN, INT64_MAX), 0, 1)
            await index.rank(BOARD, PERIOD, "desc", key)

        versions = iter(range(100, 10**9))

        async def one_write() -> None:
            row_id = rng.randrange(1, rows + 1)
            key = rank_key("desc", rng.randint(INT64_MIN, INT64_MAX), 0, row_id)
            await index.apply(BOARD, PERIOD, "desc", Row(row_id, next(versions), key))

        print(f"rank reads         {await _rate(one_rank, 2.0):,.0f}/s, one at a time")
        print(f"writes             {await _rate(one_write, 2.0):,.0f}/s, one at a time")
    finally:
        await index.close()
        found = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if found:
            await client.unlink(*found)
        await client.aclose()


def main(argv: list[str]) -> None:
    """Parse ``argv`` and run the measurement."""
    parser = argparse.ArgumentParser(prog="python -m bench rank_redis_memory")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--url", help="a Redis to use instead of a server of this run's own")
    args = parser.parse_args(argv)
    if args.url:
        asyncio.run(_run(args.url, args.rows, args.batch))
        return
    with _own_redis() as url:
        asyncio.run(_run(url, args.rows, args.batch))
