"""The client process of ``bench.login``: Socket.IO clients logging in, timed from outside.

Two modes, each printing one JSON object on its last line of stdout:

- ``python -m bench._login_client logins --url URL --codes URL --clients N --logins M ...``:
  fetches fresh login codes from the emulator's bench route, connects ``N`` clients
  (``socketio.AsyncClient``, websocket transport) plus the connections of the sequential phase,
  then runs three phases:

  1. warm-up: each client logs in ``--warmup`` times (not counted);
  2. sequential: ``--sequential`` logins one at a time, taking the connections of that phase in
     turn (each stays within its per-connection event budget);
  3. storm: every client at once, each doing ``M`` logins one after another with fresh codes.

  Every ack's latency is measured; the storm's wall time runs from its start to its last ack,
  and the CPU seconds of the watched processes (``--watch name=pid``) and of this one are read
  around it.
- ``python -m bench._login_client emulator --api URL --codes URL --requests N ...``: the
  emulator's own capacity: ``N`` code exchanges POSTed straight to its token endpoint over
  ``--concurrency`` connections.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from tiktok_minis.settings import SANDBOX_CLIENT_KEY, SANDBOX_CLIENT_SECRET

_CONNECT_AT_ONCE = 20  # handshakes in flight while connecting the clients
_ACK_TIMEOUT = 30.0  # seconds an ack may take before it counts as "timeout"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds the process ``pid`` has used, all threads (0 if unreadable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_named(name: str) -> dict[int, float]:
    """CPU seconds of every process whose command name is ``name``, by pid."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text.partition("(")[2].rpartition(")")[0] == name:
            fields = text.rpartition(")")[2].split()
            found[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf(
                "SC_CLK_TCK"
            )
    return found


def machine_busy_seconds() -> float:
    """CPU seconds every process of the machine has used, all cores (``/proc/stat``)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def summary(latencies: list[float]) -> dict[str, float]:
    """Count, mean, p50, p99 and max of ``latencies`` (seconds), nearest-rank percentiles."""
    if not latencies:
        return {"count": 0, "mean": math.nan, "p50": math.nan, "p99": math.nan, "max": math.nan}
    ordered = sorted(latencies)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {
        "count": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "p50": rank(0.50),
        "p99": rank(0.99),
        "max": ordered[-1],
    }


class _Tally:
    """Latencies of the successful acks and a count of every failure by its code."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures: collections.Counter[str] = collections.Counter()
        #: The first message seen for each failure code.
        self.messages: dict[str, str] = {}

    async def login(self, client: socketio.AsyncClient, code: str) -> None:
        """One ``tiktok:login`` with ``code`` on ``client``, timed and tallied."""
        started = time.perf_counter()
        try:
            ack = await client.call("tiktok:login", {"code": code}, timeout=_ACK_TIMEOUT)
        except socketio.exceptions.TimeoutError:
            self.failures["timeout"] += 1
            return
        except socketio.exceptions.SocketIOError as exc:
            self.failures[type(exc).__name__] += 1
            return
        elapsed = time.perf_counter() - started
        if isinstance(ack, dict) and ack.get("ok") is True:
            self.latencies.append(elapsed)
        else:
            error = ack.get("error") if isinstance(ack, dict) else None
            code_name = str(error.get("code") if isinstance(error, dict) else "bad_ack")
            self.failures[code_name] += 1
            if code_name not in self.messages:
                self.messages[code_name] = str(error.get("message") if error else ack)[:200]

    def result(self) -> dict[str, Any]:
        """The latency summary, the failures by code and a message of each."""
        return {
            **summary(self.latencies),
            "failures": dict(self.failures),
            "messages": self.messages,
        }


async def _fetch_codes(http: aiohttp.ClientSession, codes_url: str, count: int) -> list[str]:
    """``count`` fresh login codes from the emulator's bench route."""
    async with http.post(codes_url, json={"count": count}) as response:
        response.raise_for_status()
        codes: list[str] = (await response.json())["codes"]
    if len(codes) != count:
        raise RuntimeError(f"asked the emulator for {count} codes, got {len(codes)}")
    return codes


def loopback_address(n: int) -> str:
    """The ``n``-th client's own loopback source address: 127.0.1.1, 127.0.1.2, ...

    All of 127.0.0.0/8 is loopback on Linux. One address per player, as in a real storm: the
    server also limits logins per client address (in flight ones count), and players do not
    all share one.
    """
    if not 0 <= n < 254 * 254:
        raise ValueError("at most 64,516 clients")
    return f"127.0.{1 + n // 254}.{1 + n % 254}"


class _Clients:
    """Socket.IO clients, each over an aiohttp session bound to its own source address."""

    def __init__(self) -> None:
        self.clients: list[socketio.AsyncClient] = []
        self._sessions: list[aiohttp.ClientSession] = []
        self._made = 0

    async def connect(self, url: str, count: int) -> list[socketio.AsyncClient]:
        """``count`` more clients, connected over websocket."""
        gate = asyncio.Semaphore(_CONNECT_AT_ONCE)

        async def one(n: int) -> socketio.AsyncClient:
            connector = aiohttp.TCPConnector(local_addr=(loopback_address(n), 0))
            session = aiohttp.ClientSession(connector=connector)
            self._sessions.append(session)
            client = socketio.AsyncClient(reconnection=False, http_session=session)
            self.clients.append(client)
            async with gate:
                await client.connect(url, transports=["websocket"], wait_timeout=10)
            return client

        first, self._made = self._made, self._made + count
        return list(await asyncio.gather(*(one(first + n) for n in range(count))))

    async def close(self) -> None:
        """Disconnect every client and close the sessions."""
        await asyncio.gather(*(c.disconnect() for c in self.clients), return_exceptions=True)
        await asyncio.gather(*(s.close() for s in self._sessions), return_exceptions=True)


def _watched(watch: dict[str, int], names: list[str]) -> dict[str, Any]:
    """CPU seconds so far: of each watched pid, this process, the machine, processes by name."""
    cpu: dict[str, Any] = {name: cpu_seconds(pid) for name, pid in watch.items()}
    cpu["client"] = time.process_time()
    cpu["machine"] = machine_busy_seconds()
    for name in names:
        cpu[name] = cpu_seconds_named(name)
    return cpu


def _used(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """CPU seconds used between two ``_watched`` readings; by-pid readings summed."""
    used = {}
    for name, value in after.items():
        if isinstance(value, dict):
            old = before.get(name, {})
            used[name] = sum(v - old.get(pid, 0.0) for pid, v in value.items())
        else:
            used[name] = value - before[name]
    return used


async def run_logins(args: argparse.Namespace) -> dict[str, Any]:
    """The three phases against the game server at ``args.url``; the figures as a dict."""
    storm_count = args.clients * args.logins
    warm_count = args.clients * args.warmup
    async with aiohttp.ClientSession() as http:
        codes = await _fetch_codes(http, args.codes, warm_count + args.sequential + storm_count)
    sequential_connections = max(1, math.ceil(args.sequential / args.per_connection))
    connections = _Clients()
    try:
        clients = await connections.connect(args.url, args.clients)
        singles = await connections.connect(args.url, sequential_connections)
        warm = _Tally()
        position = 0
        for _ in range(args.warmup):
            batch = codes[position : position + args.clients]
            position += args.clients
            await asyncio.gather(*(warm.login(c, k) for c, k in zip(clients, batch, strict=True)))

        sequential = _Tally()
        for n in range(args.sequential):
            await sequential.login(singles[n % len(singles)], codes[position])
            position += 1

        storm = _Tally()
        plan = [
            codes[position + i * args.logins : position + (i + 1) * args.logins]
            for i in range(args.clients)
        ]

        async def one_client(client: socketio.AsyncClient, own: list[str]) -> None:
            for code in own:
                await storm.login(client, code)

        before = _watched(args.watch, args.watch_name)
        started = time.perf_counter()
        await asyncio.gather(*(one_client(c, own) for c, own in zip(clients, plan, strict=True)))
        wall = time.perf_counter() - started
        after = _watched(args.watch, args.watch_name)
    finally:
        await connections.close()
    return {
        "warmup": warm.result(),
        "sequential": {**sequential.result(), "connections": sequential_connections},
        "storm": {
            **storm.result(),
            "wall": wall,
            "cpu": _used(before, after),
        },
    }


async def run_emulator(args: argparse.Namespace) -> dict[str, Any]:
    """Code exchanges straight at the emulator's token endpoint; its throughput and CPU."""
    url = args.api.rstrip("/") + "/v2/oauth/token/"
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        codes = await _fetch_codes(http, args.codes, args.requests)
        failures: collections.Counter[str] = collections.Counter()
        latencies: list[float] = []
        queue = iter(codes)

        async def worker() -> None:
            for code in queue:
                form = {
                    "client_key": SANDBOX_CLIENT_KEY,
                    "client_secret": SANDBOX_CLIENT_SECRET,
                    "code": code,
                    "grant_type": "authorization_code",
                }
                started = time.perf_counter()
                try:
                    async with http.post(url, data=form) as response:
                        body = await response.json()
                except (aiohttp.ClientError, ValueError) as exc:
                    failures[type(exc).__name__] += 1
                    continue
                if isinstance(body, dict) and "open_id" in body:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures[str(body.get("error") if isinstance(body, dict) else "bad")] += 1

        before = _watched(args.watch, args.watch_name)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        wall = time.perf_counter() - started
        after = _watched(args.watch, args.watch_name)
    return {
        **summary(latencies),
        "failures": dict(failures),
        "wall": wall,
        "cpu": _used(before, after),
    }


def _watch_list(values: list[str]) -> dict[str, int]:
    """``["server=123", ...]`` as ``{"server": 123, ...}``."""
    watch = {}
    for value in values:
        name, _, pid = value.partition("=")
        watch[name] = int(pid)
    return watch


def main(argv: list[str]) -> None:
    """Parse the mode and its arguments, run it, print the JSON result."""
    parser = argparse.ArgumentParser(prog="python -m bench._login_client", description=__doc__)
    modes = parser.add_subparsers(dest="mode", required=True)
    logins = modes.add_parser("logins", help="Socket.IO clients logging in to a game server")
    logins.add_argument("--url", required=True, help="the game server's base URL")
    logins.add_argument("--clients", type=int, required=True, help="clients in the storm")
    logins.add_argument("--logins", type=int, required=True, help="logins per storm client")
    logins.add_argument("--warmup", type=int, default=1, help="uncounted logins per client")
    logins.add_argument("--sequential", type=int, default=200, help="one-at-a-time logins")
    logins.add_argument(
        "--per-connection", type=int, default=20, help="sequential logins per connection"
    )
    emulator = modes.add_parser("emulator", help="code exchanges straight at the emulator")
    emulator.add_argument("--api", required=True, help="the emulator's Open API base URL")
    emulator.add_argument("--requests", type=int, default=3000, help="code exchanges")
    emulator.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    for mode in (logins, emulator):
        mode.add_argument("--codes", required=True, help="the emulator's POST /codes URL")
        mode.add_argument("--watch", action="append", default=[], help="name=pid, repeatable")
        mode.add_argument(
            "--watch-name",
            action="append",
            default=[],
            help="every process of this command name, summed (postgres), repeatable",
        )
    args = parser.parse_args(argv)
    args.watch = _watch_list(args.watch)
    run = run_logins if args.mode == "logins" else run_emulator
    result = asyncio.run(run(args))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
