"""Abusive clients against the example game: what a flood costs the others, in latency and logs.

Run: ``python -m bench abuse [--packets N] [--unguarded]``. It starts the example game in sandbox
mode, then for each kind of abuse one raw websocket (Engine.IO 4 / Socket.IO 5 written by hand)
sends N packets while another client measures its own acked round trips (``leaderboard:join``):

- malformed: 60-byte packets that are no Socket.IO event (bad JSON, unknown type, no event
  name), which engine.io logs a traceback for;
- garbage: 60-byte frames that are no Engine.IO packet, which end engine.io's websocket handler
  with an exception;
- reserved: ``42["connect",{}]``, which without the guard re-runs the connect handler;
- big-int: ``leaderboard:submit`` with a 121-digit score, each with an ack id: how many answered;
- attachments: one packet announcing 9,999,999,999 attachments, then 64 KB binary frames: how
  much memory the server keeps (tracemalloc) and whether it closes the socket.

Log bytes are what the game's JSON handler at INFO (the example server's setup) writes, plus what
the libraries' own plain-text handlers write to stderr. ``--unguarded`` runs the same without the
socket guard, to see what it prevents. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import logging
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

import tiktok_minis.minis
from example_server.app import create_app
from tiktok_minis import MINIS_KEY, JsonFormatter, Settings
from tiktok_minis.testing import GameClient, serve


class _Counting(io.TextIOBase):
    """A text stream that only counts what is written to it."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, text: str) -> int:
        self.written += len(text.encode())
        return len(text)


class _LogBytes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.written = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.written += len(self.format(record)) + 1


@contextlib.contextmanager
def _log_bytes() -> Iterator[list[int]]:
    """Yields a one-item list that ends up holding every byte of log written in the block."""
    root = logging.getLogger()
    handler = _LogBytes()
    stderr = _Counting()
    swapped = []
    for name in ("socketio.server", "engineio.server", "socketio", "engineio"):
        for library_handler in logging.getLogger(name).handlers:
            if isinstance(library_handler, logging.StreamHandler):
                swapped.append((library_handler, library_handler.setStream(stderr)))
    root.addHandler(handler)
    total = [0]
    try:
        yield total
    finally:
        root.removeHandler(handler)
        for library_handler, stream in swapped:
            library_handler.setStream(stream)
        total[0] = handler.written + stderr.written


class _Raw:
    """A websocket speaking Engine.IO / Socket.IO by hand; answers pings, collects acks."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http, self.ws = http, ws
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.closed = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str) -> _Raw:
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(
            url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        )
        await ws.receive_str()  # the open packet
        await ws.send_str("40")
        await ws.receive_str()  # the namespace's answer
        return cls(http, ws)

    def expect(self, ack_id: int) -> asyncio.Future[Any]:
        self.acks[ack_id] = future = asyncio.get_running_loop().create_future()
        return future

    async def _read(self) -> None:
        async for message in self.ws:
            text = message.data if message.type is aiohttp.WSMsgType.TEXT else ""
            if text == "2":
                await self.ws.send_str("3")
            elif text.startswith("43"):
                body = text[2:]
                digits = len(body) - len(body.lstrip("0123456789"))
                future = self.acks.pop(int(body[:digits]), None)
                if future is not None and not future.done():
                    future.set_result(json.loads(body[digits:])[0])
        if not self.closed.done():
            self.closed.set_result(self.ws.close_code)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.http.close()


def _padded(template: str) -> str:
    return template.replace("#", "x" * (60 - len(template) + 1))


# engine.io survives these, logging a traceback for each.
MALFORMED = [
    _padded('42["tiktok:me",{"pad":"#'),
    _padded('47["tiktok:me",{"pad":"#"}]'),
    _padded('42[7,{"pad":"#"}]'),
]


async def _measure(url: str, prober: GameClient, kind: str, packets: int) -> dict[str, Any]:
    raw = await _Raw.open(url)
    latencies: list[float] = []
    refused: list[Any] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            started = time.perf_counter()
            ack = await prober.call("leaderboard:join", {"board": "global"})
            latencies.append(time.perf_counter() - started)
            if not ack.get("ok"):
                refused.append(ack)

    async def abuse() -> dict[str, Any]:
        found: dict[str, Any] = {}
        try:
            if kind == "malformed":
                for index in range(packets):
                    await raw.ws.send_str(MALFORMED[index % len(MALFORMED)])
            elif kind == "garbage":
                for _ in range(packets):
                    await raw.ws.send_str(_padded("#"))
            elif kind == "reserved":
                for _ in range(packets):
                    await raw.ws.send_str('42["connect",{}]')
            elif kind == "big-int":
                score = "1" + "0" * 120
                waits = []
                for ack_id in range(1, packets + 1):
                    waits.append(raw.expect(ack_id))
                    board = '{"board":"global","score":' + score + "}"
                    await raw.ws.send_str(f'42{ack_id}["leaderboard:submit",{board}]')
                answered = await asyncio.wait(waits, timeout=10)
                found["acked"] = len(answered[0])
            elif kind == "attachments":
                gc.collect()
                tracemalloc.start()
                baseline = tracemalloc.get_traced_memory()[0]
                await raw.ws.send_str('459999999999-["x",{"_placeholder":true,"num":0}]')
                chunk = b"\x00" * 65_000
                sent = 0
                for _ in range(packets):
                    if raw.ws.closed:
                        break
                    await raw.ws.send_bytes(chunk)
                    sent += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(raw.closed), 5)
                gc.collect()
                found["frames_sent"] = sent
                found["kept_bytes"] = tracemalloc.get_traced_memory()[0] - baseline
                tracemalloc.stop()
            if kind != "attachments":
                # Frames of one socket are handled in order: this ack follows the whole flood.
                sync = raw.expect(10**9)
                await raw.ws.send_str(f'42{10**9}["tiktok:me"]')
                await asyncio.wait_for(sync, 60)
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            found["error"] = type(exc).__name__
        found["closed_with"] = raw.closed.result() if raw.closed.done() else None
        return found

    started = time.perf_counter()
    prober_task = asyncio.create_task(probe())
    try:
        found = await abuse()
    finally:
        done.set()
        await prober_task
        await raw.close()
    ordered = sorted(latencies)
    return {
        "kind": kind,
        "seconds": round(time.perf_counter() - started, 2),
        "prober_round_trips": len(latencies),
        "prober_p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
        "prober_p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 1) if ordered else None,
        "prober_max_ms": round(ordered[-1] * 1000, 1) if ordered else None,
        "prober_refused": len(refused),
        **found,
    }


async def _run(packets: int, unguarded: bool) -> None:
    if unguarded:
        tiktok_minis.minis.harden = lambda sio: None  # type: ignore[assignment]
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            sandbox=True,
            database_url=f"sqlite:///{Path(folder) / 'bench.sqlite3'}",
            events_per_second=100_000,
            events_burst=100_000,
        )
        app = create_app(settings)
        async with serve(app) as url:
            assert app[MINIS_KEY].sandbox is not None
            async with GameClient(url, timeout=120) as prober:
                sizes = {"malformed": packets, "garbage": packets, "reserved": packets}
                sizes["big-int"] = 1_000
                sizes["attachments"] = 300
                for kind, count in sizes.items():
                    with _log_bytes() as logged:
                        figures = await _measure(url, prober, kind, count)
                    figures["packets"] = count
                    figures["log_bytes"] = logged[0]
                    print(json.dumps(figures))


def main(argv: list[str]) -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(prog="python -m bench abuse", description=__doc__)
    parser.add_argument("--packets", type=int, default=10_000, help="packets per flood")
    parser.add_argument("--unguarded", action="store_true", help="run without the socket guard")
    args = parser.parse_args(argv)
    print(f"socket guard: {'off' if args.unguarded else 'on'}")
    asyncio.run(_run(args.packets, args.unguarded))
