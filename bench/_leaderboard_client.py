"""The players' side of ``bench.leaderboard``: real Socket.IO clients in a process of their own.

:class:`ClientProcess` starts one process (``multiprocessing``, spawned: its own interpreter and
its own GIL, so the clients' work never runs on the server's core) and sends it commands:

- ``probe``: while the server loads its rank index, new players log in one after another (a
  code from the sandbox emulator over HTTP, ``tiktok:login``), then submit, join and ask for
  around, each on a fresh connection, until the parent sets ``stop``; every call is timed and
  stamped with the wall clock, so the parent can tell which were served before the index was in;
- ``measure``: K players log in and each submits one score drawn uniformly from the loaded
  range (so their ranks spread over the whole board), then, one call in flight at a time, each
  connection in turn runs every operation once, in a shuffled order, round after round:
  the acked no-op, ``leaderboard:submit`` (a better score: it writes), the player's rank (a
  submit that does not beat the stored best: the service answers with the stored entry and its
  rank), ``leaderboard:around`` and ``leaderboard:join``; until every operation has its samples
  or the time budget is spent.

The no-op is ``leaderboard:leave`` on the same logged-in connection: it goes through the guard
(rate limit, payload parsing, the board's lookup) and answers without touching the database or
the index. ``tiktok:me`` on a spectator connection (not logged in, so no database read either)
is measured beside it for comparison. A connection that joined receives the board's pushes
until its next no-op (the leave); with ``watchers`` false every join is followed at once by an
untimed leave, so that no pushes are sent at all (a diagnostic: what the pushes cost the calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import statistics
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

import aiohttp

from tiktok_minis.testing import GameClient

__all__ = ["OPERATIONS", "ClientProcess", "serve_commands"]

BOARD = "global"
#: The operations ``measure`` times, in the order the report lists them.
OPERATIONS = ("noop", "spectator", "submit", "rank", "around", "join")
_MAX_ROUNDS = 1_000_000
_MAX_PROBES = 5_000
_CALL_TIMEOUT = 60.0


class CallFailed(RuntimeError):
    """An ack that said ``ok: false`` where the benchmark needs success."""


async def _login_code(http: aiohttp.ClientSession, url: str, device: str) -> str:
    async with http.post(f"{url}/ttminis/sandbox/login", json={"device": device}) as response:
        if response.status != 200:
            raise CallFailed(f"sandbox login: HTTP {response.status} {await response.text()}")
        code: str = (await response.json())["code"]
        return code


async def _ok(client: GameClient, event: str, data: Any) -> dict[str, Any]:
    ack: dict[str, Any] = await client.call(event, data)
    if not ack.get("ok"):
        raise CallFailed(f"{event}: {ack.get('error')}")
    return ack


# -- probe: served while the index loads ----------------------------------------------------


async def _probe(command: dict[str, Any], stop: Event) -> dict[str, Any]:
    url, tag, bound = command["url"], command["tag"], command["score_bound"]
    rng = random.Random(command.get("seed", 0))
    deadline = time.perf_counter() + command["max_seconds"]
    calls: list[tuple[float, str, float, bool]] = []  # (wall clock, op, ms, ok)
    errors: list[str] = []
    iterations = 0
    timeout = aiohttp.ClientTimeout(total=_CALL_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while not stop.is_set() and time.perf_counter() < deadline and iterations < _MAX_PROBES:
            client = GameClient(url, timeout=_CALL_TIMEOUT)
            try:
                started = time.perf_counter()
                code = await _login_code(http, url, f"{tag}-probe-{iterations}")
                calls.append((time.time(), "code", (time.perf_counter() - started) * 1e3, True))
                await client.connect()
                for op, event, data in (
                    ("login", "tiktok:login", {"code": code}),
                    (
                        "submit",
                        "leaderboard:submit",
                        {"board": BOARD, "score": rng.randrange(bound)},
                    ),
                    ("join", "leaderboard:join", {"board": BOARD}),
                    ("around", "leaderboard:around", {"board": BOARD, "radius": 5}),
                ):
                    started = time.perf_counter()
                    ack = await client.call(event, data)
                    elapsed = (time.perf_counter() - started) * 1e3
                    calls.append((time.time(), op, elapsed, bool(ack.get("ok"))))
                    if not ack.get("ok") and len(errors) < 10:
                        errors.append(f"{event}: {ack.get('error')}")
            except Exception as exc:  # noqa: BLE001 (reported, and the probe goes on)
                if len(errors) < 10:
                    errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                await client.disconnect()
            iterations += 1
    return {"calls": calls, "errors": errors, "iterations": iterations}


# -- measure: latency per operation ---------------------------------------------------------


async def _measure(command: dict[str, Any]) -> dict[str, Any]:
    url, tag, bound = command["url"], command["tag"], command["score_bound"]
    count, wanted, radius = command["players"], command["samples"], command["radius"]
    rng = random.Random(command.get("seed", 0))
    watchers = command.get("watchers", True)
    clients = [GameClient(url, timeout=_CALL_TIMEOUT) for _ in range(count)]
    spectator = GameClient(url, timeout=_CALL_TIMEOUT)
    best: list[int] = []
    first_ranks: list[int] = []
    last_ranks = [0] * count
    timeout = aiohttp.ClientTimeout(total=_CALL_TIMEOUT)
    started_setup = time.perf_counter()
    try:
        await asyncio.gather(spectator.connect(), *(c.connect() for c in clients))
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for n, client in enumerate(clients):
                code = await _login_code(http, url, f"{tag}-player-{n}")
                await _ok(client, "tiktok:login", {"code": code})
                # At least 1, so that the rank operation's 0 never beats it.
                score = 1 + rng.randrange(bound)
                ack = await _ok(client, "leaderboard:submit", {"board": BOARD, "score": score})
                best.append(int(ack["me"]["score"]))
                first_ranks.append(int(ack["me"]["rank"]))
        setup_seconds = time.perf_counter() - started_setup

        def call(n: int, op: str) -> Any:
            client = clients[n]
            if op == "noop":
                return client.call("leaderboard:leave", {"board": BOARD})
            if op == "spectator":
                return spectator.call("tiktok:me", {})
            if op == "submit":
                best[n] += rng.randint(1, 3)
                return client.call("leaderboard:submit", {"board": BOARD, "score": best[n]})
            if op == "rank":
                return client.call("leaderboard:submit", {"board": BOARD, "score": 0})
            if op == "around":
                return client.call("leaderboard:around", {"board": BOARD, "radius": radius})
            return client.call("leaderboard:join", {"board": BOARD})

        samples: dict[str, list[float]] = {op: [] for op in OPERATIONS}
        failures = dict.fromkeys(OPERATIONS, 0)
        errors: list[str] = []
        # A warm-up round: prepared statements, caches, the pool's connections.
        for n in range(count):
            for op in OPERATIONS:
                await call(n, op)
        started = time.perf_counter()
        deadline = started + command["seconds"]
        rounds = 0
        while (
            min(len(s) for s in samples.values()) < wanted
            and time.perf_counter() < deadline
            and rounds < _MAX_ROUNDS
        ):
            rounds += 1
            for n in range(count):
                order = list(OPERATIONS)
                rng.shuffle(order)
                for op in order:
                    sent = time.perf_counter()
                    ack = await call(n, op)
                    samples[op].append((time.perf_counter() - sent) * 1e3)
                    if not ack.get("ok"):
                        failures[op] += 1
                        if len(errors) < 10:
                            errors.append(f"{op}: {ack.get('error')}")
                    elif op == "join" and ack.get("me"):
                        last_ranks[n] = int(ack["me"]["rank"])
                    if op == "join" and not watchers:
                        # Untimed: nobody stays subscribed, so no board pushes are sent.
                        await clients[n].call("leaderboard:leave", {"board": BOARD})
                if time.perf_counter() >= deadline:
                    break
        return {
            "samples": samples,
            "failures": failures,
            "errors": errors,
            "rounds": rounds,
            "seconds": time.perf_counter() - started,
            "setup_seconds": setup_seconds,
            "first_ranks": first_ranks,
            "last_ranks": [rank for rank in last_ranks if rank],
        }
    finally:
        await asyncio.gather(
            spectator.disconnect(), *(c.disconnect() for c in clients), return_exceptions=True
        )


# -- the process ----------------------------------------------------------------------------


def serve_commands(conn: Connection, stop: Event) -> None:
    """The client process's main: run each command received, send back its result; return on
    ``quit`` or when the parent is gone (the pipe closes)."""
    while True:
        try:
            command = conn.recv()
        except (EOFError, OSError):
            return
        kind = command.get("kind")
        if kind == "quit":
            return
        try:
            if kind == "ping":
                result: dict[str, Any] = {"ok": True}
            elif kind == "probe":
                result = asyncio.run(_probe(command, stop))
            elif kind == "measure":
                result = asyncio.run(_measure(command))
            else:
                result = {"error": f"unknown command {kind!r}"}
        except Exception as exc:  # noqa: BLE001 (sent back to the parent, which reports it)
            result = {"error": f"{type(exc).__name__}: {exc}"}
        conn.send(result)


class ClientProcess:
    """The parent's handle on the client process."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.stop = context.Event()
        self._process = context.Process(
            target=serve_commands, args=(child, self.stop), name="bench-clients", daemon=True
        )

    @property
    def pid(self) -> int | None:
        """The client process's id, once started."""
        return self._process.pid

    async def start(self) -> None:
        """Start it and wait until it has imported everything (a ``ping``)."""
        self._process.start()
        await self.run({"kind": "ping"}, within=60)

    async def run(self, command: dict[str, Any], within: float) -> dict[str, Any]:
        """Send one command and wait (at most ``within`` s) for its result."""
        self.stop.clear()
        self._conn.send(command)

        def receive() -> dict[str, Any]:
            if not self._conn.poll(within):
                raise TimeoutError(f"the client process did not answer within {within} s")
            answer: dict[str, Any] = self._conn.recv()
            return answer

        return await asyncio.to_thread(receive)

    def close(self) -> None:
        """Ask it to quit; end it if it does not."""
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send({"kind": "quit"})
            self._process.join(5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)


def median(values: list[int]) -> int:
    """The median of ranks (0 for none)."""
    return int(statistics.median(values)) if values else 0
