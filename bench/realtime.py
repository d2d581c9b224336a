"""Logins per second and push latency on the example game, over real loopback sockets.

Run: ``python -m bench realtime [--clients N] [--pushes N]``. It starts the example game in
sandbox mode on a temporary SQLite file, then measures:

- logins/s: N clients each log in once, concurrently (code exchange with the emulator over real
  HTTP, player upsert, token encryption, session signing); the baseline is the rate of a trivial
  acknowledged event (``tiktok:me``) over the same connections, i.e. the Socket.IO round trip;
- push latency: a watcher on board ``global``; the time from sending a submit to the watcher
  receiving the ``leaderboard:update`` that shows it; the baseline is one acked round trip.

Figures are printed as ratios against the baselines measured in the same run: the machines are
shared and noisy. Nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from example_server.app import create_app
from tiktok_minis import MINIS_KEY, Settings
from tiktok_minis.testing import GameClient, serve


async def _run(clients: int, pushes: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            sandbox=True,
            database_url=f"sqlite:///{Path(folder) / 'bench.sqlite3'}",
            push_interval_ms=100,
            events_per_second=10_000,
            events_burst=10_000,
            # The server's own speed is measured here, not TikTok's budget (50/s by default).
            upstream_rate_per_second=100_000,
        )
        app = create_app(settings)
        minis = app[MINIS_KEY]
        async with serve(app) as url:
            sandbox = minis.sandbox
            assert sandbox is not None
            connections = [GameClient(url) for _ in range(clients)]
            await asyncio.gather(*(c.connect() for c in connections))
            try:
                await _logins(connections, sandbox)
                await _push_latency(connections[0], url, pushes)
            finally:
                await asyncio.gather(*(c.disconnect() for c in connections))


async def _logins(connections: list[GameClient], sandbox: object) -> None:
    users = [sandbox.add_user() for _ in connections]  # type: ignore[attr-defined]
    codes = [sandbox.login_code(user.open_id) for user in users]  # type: ignore[attr-defined]

    started = time.perf_counter()
    await asyncio.gather(*(c.call("tiktok:me", {}) for c in connections))
    baseline = len(connections) / (time.perf_counter() - started)

    started = time.perf_counter()
    acks = await asyncio.gather(
        *(
            c.call("tiktok:login", {"code": code})
            for c, code in zip(connections, codes, strict=True)
        )
    )
    rate = len(connections) / (time.perf_counter() - started)
    failed = sum(1 for ack in acks if not ack["ok"])
    print(f"clients: {len(connections)}  failed logins: {failed}")
    print(f"baseline (acked no-op event):  {baseline:10.1f} /s")
    print(f"logins:                        {rate:10.1f} /s   ({rate / baseline:.3f} x baseline)")


async def _push_latency(player: GameClient, url: str, pushes: int) -> None:
    watcher = GameClient(url)
    await watcher.connect()
    try:
        await watcher.call("leaderboard:join", {"board": "global"})
        round_trips, latencies = [], []
        for n in range(1, pushes + 1):
            started = time.perf_counter()
            await player.call("tiktok:me", {})
            round_trips.append(time.perf_counter() - started)

            score = 10_000_000 + n
            seen = asyncio.ensure_future(
                watcher.wait_for(
                    "leaderboard:update", lambda u, s=score: u["entries"][0]["score"] == s
                )
            )
            started = time.perf_counter()
            await player.call("leaderboard:submit", {"board": "global", "score": score})
            await seen
            latencies.append(time.perf_counter() - started)
            # Let the pusher's interval lapse so each sample is a first push, not a coalesced one.
            await asyncio.sleep(0.12)
        rtt = statistics.median(round_trips)
        p50 = statistics.median(latencies)
        p95 = sorted(latencies)[max(0, int(len(latencies) * 0.95) - 1)]
        print(f"round trip (acked no-op), median: {rtt * 1000:8.2f} ms")
        for label, value in (("median", p50), ("p95", p95)):
            print(
                f"submit -> watcher push, {label:6s}:  {value * 1000:8.2f} ms"
                f"  ({value / rtt:.1f} x round trip)"
            )
    finally:
        await watcher.disconnect()


def main(argv: list[str]) -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench realtime", description=__doc__)
    parser.add_argument("--clients", type=int, default=200, help="concurrent logins (200)")
    parser.add_argument("--pushes", type=int, default=30, help="push latency samples (30)")
    args = parser.parse_args(argv)
    asyncio.run(_run(args.clients, args.pushes))
