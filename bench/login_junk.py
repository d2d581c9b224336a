"""A real player's login latency on a quiet server, and while 50 sockets send junk login codes.

Run: ``python -m bench login_junk [--sockets 50] [--logins 100] [--seconds 8]``.

The example server runs in its own process (sandbox mode, default settings: the failed-login
limits included, with loopback as a trusted proxy so that each client can name its address
in ``X-Forwarded-For``: every junk socket comes from an address of its own, the worst case for
the upstream budget); the clients run here. First a real player logs in ``--logins`` times, one at
a time, on a quiet server; then the same while ``--sockets`` sockets each send junk codes as
fast as their event limit lets them (20 a second): after their first few failures they get
``rate_limited`` without a call to TikTok. Printed: the real player's p50/p99 both times, their
ratio, and how the junk was answered. Nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from bench._ports import free_port
from tiktok_minis.testing import GameClient

_PERIOD = 1 / 20  # the default event limit of a connection


async def _ready(url: str, http: aiohttp.ClientSession) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            async with http.get(url + "/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the example server did not start")


async def _real_logins(url: str, http: aiohttp.ClientSession, count: int) -> list[float]:
    """``count`` logins of new players, one at a time on one connection; seconds each."""
    latencies = []
    async with GameClient(url, headers={"X-Forwarded-For": "203.0.113.1"}) as client:
        for n in range(count):
            async with http.post(url + "/ttminis/sandbox/login", json={"device": f"d{n}"}) as r:
                code = (await r.json())["code"]
            started = time.perf_counter()
            ack = await client.call("tiktok:login", {"code": code})
            latencies.append(time.perf_counter() - started)
            if not ack["ok"]:
                raise RuntimeError(f"a real login failed: {ack}")
            await asyncio.sleep(_PERIOD)  # within the connection's own event limit
    return latencies


async def _junk(url: str, until: float, answers: Counter[str], n: int) -> None:
    address = f"198.51.{100 + n // 250}.{n % 250 + 1}"
    async with GameClient(url, headers={"X-Forwarded-For": address}) as client:
        sent = 0
        while time.monotonic() < until:
            ack = await client.call("tiktok:login", {"code": f"junk-{n}-{sent}"})
            answers["ok" if ack["ok"] else ack["error"]["code"]] += 1
            sent += 1
            await asyncio.sleep(_PERIOD)


def _summary(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


async def _run(sockets: int, logins: int, seconds: float) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        environment = {
            **os.environ,
            "TTMINIS_DATABASE_URL": f"sqlite:///{Path(folder) / 'junk.sqlite3'}",
            # The clients say where they come from, as a reverse proxy would tell the server:
            # the junk sockets from addresses of their own, the real player from another.
            "TTMINIS_TRUSTED_PROXIES": "127.0.0.1",
        }
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "example_server",
            "--sandbox",
            "--port",
            str(port),
            env=environment,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with aiohttp.ClientSession() as http:
                await _ready(url, http)
                await _real_logins(url, http, 10)  # warm up
                quiet = await _real_logins(url, http, logins)
                answers: Counter[str] = Counter()
                until = time.monotonic() + seconds
                flood = [
                    asyncio.ensure_future(_junk(url, until, answers, n)) for n in range(sockets)
                ]
                await asyncio.sleep(1.0)  # the junk sockets past their first failures
                loaded = await _real_logins(url, http, logins)
                await asyncio.gather(*flood)
        finally:
            server.terminate()
            await asyncio.wait_for(server.wait(), 10)
    quiet_p50, quiet_p99 = _summary(quiet)
    loaded_p50, loaded_p99 = _summary(loaded)
    print(f"command: python -m bench login_junk --sockets {sockets} --logins {logins}")
    print(f"real player, quiet server:       p50 {quiet_p50:6.2f} ms  p99 {quiet_p99:6.2f} ms")
    print(
        f"real player, {sockets} junk sockets:    p50 {loaded_p50:6.2f} ms  "
        f"p99 {loaded_p99:6.2f} ms"
    )
    print(
        f"ratio under junk / quiet:        p50 {loaded_p50 / quiet_p50:5.2f}x  "
        f"p99 {loaded_p99 / quiet_p99:5.2f}x  (target: within 2x)"
    )
    print(f"junk answered: {dict(answers)}")


def main(argv: list[str]) -> int:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(prog="python -m bench login_junk", description=__doc__)
    parser.add_argument("--sockets", type=int, default=50)
    parser.add_argument("--logins", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args(argv)
    asyncio.run(_run(args.sockets, args.logins, args.seconds))
    return 0
