"""What no client library would send: reserved names, binary packets, huge frames and numbers,
garbage and floods, spoken by hand as Engine.IO 4 / Socket.IO 5 over a real websocket."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import aiohttp
import engineio
import pytest
import socketio
from engineio.async_drivers import aiohttp as engineio_aiohttp
from game import Game, run_game

from tiktok_minis import JsonFormatter, Settings
from tiktok_minis.realtime._guard import (
    DEFAULT_MAX_FRAME_BYTES,
    REFUSAL_REASONS,
    LogRateLimit,
    harden,
    refused_packets,
)

WAIT = 5.0
BINARY_REASON = "binary packets are not part of the protocol"


class RawClient:
    """Engine.IO 4 and Socket.IO 5 by hand over an aiohttp websocket."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        #: The Socket.IO sid of namespace "/", from the server's "40" answer.
        self.sid = ""
        self.acks: dict[int, Any] = {}
        self._ids = itertools.count(1)
        loop = asyncio.get_running_loop()
        self._connected: asyncio.Future[str] = loop.create_future()
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        #: (close code, reason) once the server closed the websocket.
        self.closed: asyncio.Future[tuple[int | None, str]] = loop.create_future()
        self._pongs: set[asyncio.Task[None]] = set()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, *, compress: int = 0) -> RawClient:
        """A websocket past the open packet, connected to namespace "/"."""
        http = aiohttp.ClientSession()
        endpoint = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        ws = await http.ws_connect(endpoint, compress=compress, max_msg_size=0)
        opened = await asyncio.wait_for(ws.receive_str(), WAIT)
        assert opened.startswith("0{"), opened
        client = cls(http, ws)
        await ws.send_str("40")
        client.sid = await asyncio.wait_for(client._connected, WAIT)
        return client

    async def rejoin(self) -> str:
        """Leave namespace "/" and join it again on the same socket; the new sid."""
        self._connected = asyncio.get_running_loop().create_future()
        await self.ws.send_str("41")
        await self.ws.send_str("40")
        self.sid = await asyncio.wait_for(self._connected, WAIT)
        return self.sid

    async def close(self) -> None:
        """Close the websocket and the HTTP session."""
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.http.close()

    def next_id(self) -> int:
        """A fresh ack id."""
        return next(self._ids)

    async def send(self, frame: str | bytes) -> None:
        """Send one websocket frame as it is."""
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        else:
            await self.ws.send_str(frame)

    async def call(self, event: str, data: Any = None, *, raw: str | None = None) -> Any:
        """Emit ``event`` with an ack id and return the ack; ``raw`` is payload JSON as is."""
        ack_id = self.next_id()
        args = [json.dumps(event)]
        if raw is not None:
            args.append(raw)
        elif data is not None:
            args.append(json.dumps(data))
        waiter = self._waiters[ack_id] = asyncio.get_running_loop().create_future()
        await self.ws.send_str(f"42{ack_id}[{','.join(args)}]")
        return await asyncio.wait_for(waiter, WAIT)

    async def wait_closed(self) -> tuple[int | None, str]:
        """The close code and reason the server closed with."""
        return await asyncio.wait_for(asyncio.shield(self.closed), WAIT)

    async def _read(self) -> None:
        code: int | None = None
        reason = ""
        while True:
            message = await self.ws.receive()
            if message.type is aiohttp.WSMsgType.TEXT:
                self._on_text(message.data)
            elif message.type is aiohttp.WSMsgType.CLOSE:
                code, reason = message.data, message.extra or ""
            else:  # CLOSING, CLOSED, ERROR
                break
        if not self.closed.done():
            self.closed.set_result((code if code is not None else self.ws.close_code, reason))

    def _on_text(self, text: str) -> None:
        if text == "2":  # engine.io ping
            task = asyncio.create_task(self.ws.send_str("3"))
            self._pongs.add(task)
            task.add_done_callback(self._pongs.discard)
        elif text.startswith("40{") and not self._connected.done():
            self._connected.set_result(json.loads(text[2:])["sid"])
        elif text.startswith("43"):
            body = text[2:]
            digits = len(body) - len(body.lstrip("0123456789"))
            ack_id, args = int(body[:digits]), json.loads(body[digits:])
            self.acks[ack_id] = args[0] if args else None
            waiter = self._waiters.pop(ack_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(self.acks[ack_id])


async def raw_client(game: Game, *, compress: int = 0) -> RawClient:
    """A raw client of ``game``, closed when the game stops."""
    client = await RawClient.open(game.url, compress=compress)
    game.stack.push_async_callback(client.close)
    return client


async def raw_logged_in(game: Game) -> tuple[RawClient, str]:
    """A raw client logged in as a new sandbox user, and that user's open_id."""
    user = game.sandbox.add_user()
    client = await raw_client(game)
    ack = await client.call("tiktok:login", {"code": game.sandbox.login_code(user.open_id)})
    assert ack["ok"], ack
    return client, user.open_id


@contextlib.contextmanager
def refusals() -> Iterator[dict[str, int]]:
    """The refusals counted inside the block, by reason (only the reasons that moved)."""
    moved: dict[str, int] = {}
    before = refused_packets()
    try:
        yield moved
    finally:
        after = refused_packets()
        moved.update({r: after[r] - before[r] for r in REFUSAL_REASONS if after[r] != before[r]})


def settings_with(game_settings: Settings, **changes: Any) -> Settings:
    """``game_settings`` with ``changes``."""
    return Settings(**{**game_settings.model_dump(), **changes})


# -- reserved event names --------------------------------------------------------------------


async def test_reserved_connect_event_resets_neither_login_nor_rate_limit(
    game_settings: Settings,
) -> None:
    """42["connect",{}] on a live connection runs no connect handler: login and bucket stay."""
    settings = settings_with(game_settings, events_per_second=0.001, events_burst=3)
    async with run_game(settings) as game:
        client, open_id = await raw_logged_in(game)
        for _ in range(2):
            assert (await client.call("tiktok:me"))["ok"]
        assert (await client.call("tiktok:me"))["error"]["code"] == "rate_limited"
        with refusals() as moved:
            await client.send('42["connect",{}]')
            await client.send(f'42{client.next_id()}["connect",{{"session":"x"}}]')
            after = await client.call("tiktok:me")
        assert after["ok"] is False and after["error"]["code"] == "rate_limited"
        assert game.minis.open_id_of(client.sid) == open_id
        assert moved == {"reserved_event": 2}


async def test_leaving_and_joining_again_does_not_refill_the_budgets(
    game_settings: Settings,
) -> None:
    """41 then 40 gives a new sid on the same socket, not a new event or failed-login budget."""
    settings = settings_with(
        game_settings, events_per_second=0.001, events_burst=3, failed_logins_burst=1
    )
    async with run_game(settings) as game:
        client = await raw_client(game)
        assert (await client.call("tiktok:login", {"code": "junk"}))["error"]["code"] == (
            "login_failed"
        )
        assert (await client.call("tiktok:me"))["ok"]
        first = client.sid
        assert await client.rejoin() != first
        again = await client.call("tiktok:login", {"code": "junk"})
        assert again["error"]["code"] == "rate_limited"
        assert (await client.call("tiktok:me"))["error"]["code"] == "rate_limited"


async def test_reserved_disconnect_event_keeps_the_connection_logged_in(game: Game) -> None:
    """42["disconnect"] runs no disconnect handler: the connection works and is logged in."""
    client, open_id = await raw_logged_in(game)
    with refusals() as moved:
        await client.send('42["disconnect"]')
        await client.send(f'42{client.next_id()}["disconnect","transport close"]')
        me = await client.call("tiktok:me")
    assert me["ok"] is True and me["player"]["open_id"] == open_id
    assert game.minis.open_id_of(client.sid) == open_id
    assert moved == {"reserved_event": 2}


@pytest.mark.parametrize(
    "name", ["connect_error", "disconnecting", "__disconnect_final", "newListener", "*"]
)
async def test_other_reserved_names_are_ignored_without_ack(game: Game, name: str) -> None:
    """Other names Socket.IO treats specially are ignored: no ack, the connection stays."""
    client = await raw_client(game)
    ack_id = client.next_id()
    with refusals() as moved:
        await client.send(f"42{ack_id}[{json.dumps(name)},{{}}]")
        assert (await client.call("tiktok:me"))["ok"]
    assert ack_id not in client.acks
    assert moved == {"reserved_event": 1}


# -- binary packets --------------------------------------------------------------------------

PLACEHOLDER = '{"_placeholder":true,"num":0}'


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"\x01\x02binary", id="binary-frame"),
        pytest.param("bAQID", id="base64-binary-message"),
        pytest.param(f'451-["tiktok:me",{PLACEHOLDER}]', id="binary-event"),
        pytest.param(f'451-1["tiktok:me",{PLACEHOLDER}]', id="binary-event-with-ack"),
        pytest.param(f"461-1[{PLACEHOLDER}]", id="binary-ack"),
        pytest.param('45/nope,["x"]', id="binary-event-other-namespace"),
    ],
)
async def test_binary_packets_close_the_connection(game: Game, frame: str | bytes) -> None:
    """Any binary packet closes the websocket with 1003, and its state goes at once."""
    client, _ = await raw_logged_in(game)
    with refusals() as moved:
        await client.send(frame)
        code, reason = await client.wait_closed()
    assert (code, reason) == (aiohttp.WSCloseCode.UNSUPPORTED_DATA, BINARY_REASON)
    assert moved == {"binary": 1}
    assert game.minis.open_id_of(client.sid) is None
    assert game.minis.connection_count == 0


async def test_attachment_flood_is_closed_and_keeps_no_memory(game: Game) -> None:
    """A packet announcing 9,999,999,999 attachments, then 19 MB of frames: closed, none kept."""
    client = await raw_client(game)
    chunk = b"\x00" * 65_000  # each frame under the 64 KiB limit
    sent = 0
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        await client.send(f'459999999999-["tiktok:me",{PLACEHOLDER}]')
        for _ in range(300):
            if client.ws.closed:
                break
            try:
                await client.send(chunk)
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                break
            sent += 1
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(client.closed), WAIT)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    print(f"attachment flood: {sent} frames of 65,000 bytes sent, {grown} bytes grown")
    assert grown < 4_000_000, f"{grown} bytes kept after {sent} attachment frames"
    assert (await client.wait_closed())[0] == aiohttp.WSCloseCode.UNSUPPORTED_DATA


async def test_placeholder_with_bad_index_does_not_wedge_the_server(game: Game) -> None:
    """A placeholder pointing past its attachments closes that socket; others are served."""
    bystander = await game.client()
    client = await raw_client(game)
    await client.send('451-["tiktok:me",{"_placeholder":true,"num":7}]')
    await client.send(b"attachment")
    assert (await client.wait_closed())[0] == aiohttp.WSCloseCode.UNSUPPORTED_DATA
    assert (await bystander.call("tiktok:me"))["ok"]


async def test_binary_packet_over_long_polling_ends_the_session(game: Game) -> None:
    """Over long-polling a binary packet ends the engine.io session: the next poll is 400."""
    endpoint = f"{game.url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as http:
        async with http.get(endpoint) as response:
            opened = await response.text()
        sid = json.loads(opened[1:])["sid"]
        polling = f"{endpoint}&sid={sid}"
        async with http.post(polling, data="40") as response:
            assert response.status == 200
        async with http.get(polling) as response:
            assert (await response.text()).startswith("40{")
        with refusals() as moved:
            async with http.post(polling, data=f'451-["tiktok:me",{PLACEHOLDER}]') as response:
                assert response.status == 200
            async with http.get(polling) as response:
                assert response.status == 400
                assert "disconnected" in await response.text()
    assert moved == {"binary": 1}
    assert game.minis.connection_count == 0


# -- frames over the limit -------------------------------------------------------------------


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "deflate"])
async def test_frame_over_the_limit_closes_with_1009(game: Game, compress: int) -> None:
    """A frame past 64 KiB (measured inflated) closes the websocket with 1009, no reason."""
    client = await raw_client(game, compress=compress)
    size = 70_000 if not compress else 5_000_000  # the compressed one is a few KiB on the wire
    with refusals() as moved:
        await client.send('42["tiktok:login",{"code":"' + "x" * size + '"}]')
        assert await client.wait_closed() == (aiohttp.WSCloseCode.MESSAGE_TOO_BIG, "")
    assert moved == {"oversized": 1}


def test_harden_lowers_only_engineios_default_limit() -> None:
    """engine.io's default 1,000,000 becomes 64 KiB; a limit the game chose stays."""
    default = socketio.AsyncServer(async_mode="aiohttp")
    harden(default)
    assert default.eio.max_http_buffer_size == DEFAULT_MAX_FRAME_BYTES
    chosen = socketio.AsyncServer(async_mode="aiohttp", max_http_buffer_size=10_000)
    harden(chosen)
    assert chosen.eio.max_http_buffer_size == 10_000


# -- malformed packets -----------------------------------------------------------------------

MALFORMED: list[tuple[str, str, str]] = [
    ("bad-json", '42["tiktok:me",{"a":', "malformed"),
    ("bad-json-with-ack", '42900["tiktok:me",{]', "malformed"),
    ("unknown-socketio-type", '47["tiktok:me"]', "malformed"),
    ("connect-error-from-client", '44{"message":"x"}', "malformed"),
    ("huge-ack-id", "42" + "9" * 150 + '["tiktok:me"]', "malformed"),
    ("event-without-name", "42[]", "malformed"),
    ("event-name-not-a-string", '42900[["tiktok:me"],{}]', "malformed"),
    ("event-name-a-number", "42900[7,{}]", "malformed"),
    ("event-not-a-list", '42900{"event":"tiktok:me"}', "malformed"),
    ("event-null", "42null", "malformed"),
    ("nested-too-deep", "42" + "[" * 50_000, "malformed"),
    ("garbage", "hello there", "malformed"),
    ("empty-frame", "", "malformed"),
    ("unknown-engineio-type", "9abc", "malformed"),
    ("engineio-message-without-socketio-type", '4{"a":1}', "malformed"),
    ("engineio-pong-with-deep-json", "3" + "[" * 50_000, "malformed"),
    ("wrong-namespace", '42/nope,900["tiktok:me"]', "unknown_namespace"),
]


@pytest.mark.parametrize(
    ("frame", "reason"), [(f, r) for _, f, r in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
async def test_malformed_packet_is_dropped_and_the_connection_stays(
    game: Game, frame: str, reason: str
) -> None:
    """A packet that is no Socket.IO event is counted and dropped; the socket keeps answering."""
    client = await raw_client(game)
    with refusals() as moved:
        await client.send(frame)
        assert (await client.call("tiktok:me"))["ok"]
    assert moved == {reason: 1}
    assert 900 not in client.acks
    assert not client.closed.done()


@pytest.mark.parametrize(
    ("event", "raw"),
    [
        ("leaderboard:submit", '{"board":"global","score":' + "1" + "0" * 120 + "}"),
        ("leaderboard:submit", '{"board":"global","score":-' + "9" * 5_000 + "}"),
        ("leaderboard:around", '{"board":"global","radius":' + "5" * 101 + "}"),
        ("tiktok:login", '{"code":' + "7" * 300 + "}"),
    ],
    ids=["score-10e120", "score-5000-digits", "radius-101-digits", "login-code-number"],
)
async def test_integer_of_more_than_100_digits_is_acked_invalid_payload(
    game: Game, event: str, raw: str
) -> None:
    """A JSON integer of any length reaches the handler and is answered invalid_payload."""
    client, _ = await raw_logged_in(game)
    ack = await client.call(event, raw=raw)
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload", ack
    assert len(ack["error"]["message"]) < 200


# -- floods and logs -------------------------------------------------------------------------


class _LogBytes(logging.Handler):
    """Counts what the game's JSON log handler would write."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.written = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.written += len(self.format(record)) + 1


@contextlib.contextmanager
def root_log_bytes() -> Iterator[_LogBytes]:
    """A root handler counting log bytes, with the example server's levels."""
    root, access = logging.getLogger(), logging.getLogger("aiohttp.access")
    handler, levels = _LogBytes(), (root.level, access.level)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    access.setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        access.setLevel(levels[1])


def _padded(template: str, size: int = 60) -> str:
    return template.replace("#", "x" * (size - len(template) + 1))


FLOOD_KINDS = [
    _padded('42["tiktok:me",{"pad":"#'),  # bad JSON
    _padded('47["tiktok:me",{"pad":"#"}]'),  # unknown packet type
    _padded('42[7,{"pad":"#"}]'),  # an event without a name
    _padded("#"),  # garbage
]


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def test_flood_of_malformed_packets_leaves_others_answered_and_logs_bounded(
    game_settings: Settings,
) -> None:
    """10,000 malformed packets on one socket: another client stays answered, logs stay small."""
    settings = settings_with(game_settings, events_per_second=100_000.0, events_burst=100_000)
    async with run_game(settings) as game:
        prober = await game.client()
        flooder = await raw_client(game)
        assert all(len(kind) == 60 for kind in FLOOD_KINDS)
        flooded = asyncio.Event()
        latencies: list[float] = []

        async def probe() -> None:
            while not flooded.is_set():
                started = time.perf_counter()
                ack = await prober.call("leaderboard:join", {"board": "global"})
                latencies.append(time.perf_counter() - started)
                assert ack["ok"], ack

        async def flood() -> None:
            for index in range(10_000):
                await flooder.send(FLOOD_KINDS[index % len(FLOOD_KINDS)])
            # Frames of one socket are read in order: this ack follows the whole flood.
            assert (await flooder.call("tiktok:me"))["ok"]
            flooded.set()

        with root_log_bytes() as logs, refusals() as moved:
            started = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(probe(), flood()), 30)
            seconds = time.perf_counter() - started
    p99 = _p99(latencies)
    # The figures, for the record (pytest -s or -rP shows them).
    print(
        f"flood: 10,000 malformed packets in {seconds:.2f} s; prober {len(latencies)} round "
        f"trips, p99 {p99 * 1000:.1f} ms; {logs.written} bytes of log"
    )
    assert moved == {"malformed": 10_000}
    assert len(latencies) >= 20, latencies
    assert p99 < 0.5, f"p99 {p99 * 1000:.0f} ms over {len(latencies)} round trips"
    assert logs.written < 20_000, f"{logs.written} bytes of log for 10,000 bad packets"


async def test_binary_flood_of_connections_keeps_others_answered(game: Game) -> None:
    """200 sockets each sending a binary packet are all closed; a bystander stays answered."""
    bystander = await game.client()
    with root_log_bytes() as logs, refusals() as moved:
        clients = await asyncio.gather(*(raw_client(game) for _ in range(200)))
        await asyncio.gather(*(c.send(f'451-["x",{PLACEHOLDER}]') for c in clients))
        closed = await asyncio.gather(*(c.wait_closed() for c in clients))
        assert (await bystander.call("tiktok:me"))["ok"]
    assert {code for code, _ in closed} == {aiohttp.WSCloseCode.UNSUPPORTED_DATA}
    assert moved == {"binary": 200}
    assert logs.written < 20_000


async def test_metrics_show_refused_packets(game: Game, http: aiohttp.ClientSession) -> None:
    """/metrics carries ttminis_refused_packets_total by reason, moved by a refusal."""

    async def scrape() -> dict[str, float]:
        async with http.get(f"{game.url}/metrics") as response:
            text = await response.text()
        prefix = 'ttminis_refused_packets_total{reason="'
        return {
            line[len(prefix) :].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(prefix)
        }

    before = await scrape()
    assert set(before) == set(REFUSAL_REASONS)
    client = await raw_client(game)
    await client.send(b"\x00")
    await client.wait_closed()
    after = await scrape()
    assert after["binary"] == before["binary"] + 1


# -- the server the game hands over ----------------------------------------------------------


async def test_client_upgrading_from_long_polling_is_served(game: Game) -> None:
    """The guard lets the polling-to-websocket upgrade (2probe, 3probe, 5) through."""
    client = socketio.AsyncClient(reconnection=False)
    connecting = client.connect(game.url, transports=["polling", "websocket"], wait_timeout=WAIT)
    # The upgrade happens inside connect(), and its probe has no timeout of its own.
    await asyncio.wait_for(connecting, WAIT)
    try:
        assert client.transport() == "websocket"
        assert (await client.call("tiktok:me", timeout=WAIT))["ok"]
    finally:
        await client.disconnect()


def test_msgpack_server_is_refused() -> None:
    """A server whose packets are msgpack (all binary) cannot carry the protocol: harden says so."""
    msgpack_like = type("MsgPackPacket", (socketio.packet.Packet,), {})
    msgpack_like.__module__ = "socketio.msgpack_packet"
    sio = socketio.AsyncServer(async_mode="aiohttp", serializer=msgpack_like)
    with pytest.raises(TypeError, match="JSON text"):
        harden(sio)


def test_library_logs_go_to_the_plugin_loggers_once_at_warning() -> None:
    """python-socketio and engine.io log through tiktok_minis.* at WARNING, rate-limited."""
    sio = socketio.AsyncServer(async_mode="aiohttp")
    harden(sio)
    assert sio.logger.name == "tiktok_minis.socketio"
    assert sio.eio.logger.name == "tiktok_minis.engineio"
    for logger in (sio.logger, sio.eio.logger):
        assert logger.getEffectiveLevel() == logging.WARNING
        assert logger.handlers == []  # the root's handlers write it, once
        assert sum(isinstance(f, LogRateLimit) for f in logger.filters) == 1
    own = logging.getLogger("game.socketio")
    game_logged = socketio.AsyncServer(async_mode="aiohttp", logger=own)
    harden(game_logged)
    assert game_logged.logger is own


def test_harden_is_idempotent_and_changes_no_shared_class() -> None:
    """Hardening twice changes nothing more; other servers and shared classes stay as they were."""
    shared_json = socketio.packet.Packet.json
    shared_websocket = engineio_aiohttp._async["websocket"]
    sio = socketio.AsyncServer(async_mode="aiohttp")
    other = socketio.AsyncServer(async_mode="aiohttp")
    harden(sio)
    packet_class, drivers, handler = sio.packet_class, sio.eio._async, sio.eio.handlers["message"]
    harden(sio)
    assert sio.packet_class is packet_class and sio.eio._async is drivers
    assert sio.eio.handlers["message"] == handler
    assert sum(isinstance(f, LogRateLimit) for f in sio.logger.filters) == 1
    assert packet_class is not socketio.packet.Packet
    assert socketio.packet.Packet.json is shared_json is engineio.json
    assert engineio_aiohttp._async["websocket"] is shared_websocket
    assert other.packet_class is socketio.packet.Packet
    assert other.eio._async["websocket"] is shared_websocket
    big = "1" * 150
    with pytest.raises(ValueError, match="too large"):
        other.packet_class(encoded_packet=f'2["x",{big}]')
    assert sio.packet_class(encoded_packet=f'2["x",{big}]').data == ["x", float(big)]


def test_rate_limit_lets_a_shape_through_a_few_times_per_window() -> None:
    """Five records of one call site per minute pass; the next one after carries the count."""
    now = [0.0]
    limit = LogRateLimit(burst=5, window=60.0, clock=lambda: now[0])

    def record(line: int, arg: str = "x") -> logging.LogRecord:
        return logging.LogRecord("t", logging.WARNING, "f.py", line, "bad %s", (arg,), None)

    passed = [limit.filter(record(1)) for _ in range(100)]
    assert passed.count(True) == 5 and passed[:5] == [True] * 5
    assert limit.filter(record(2))  # another call site has its own budget
    now[0] = 61.0
    later = record(1, "y" * 10_000)
    assert limit.filter(later)
    assert later.suppressed == 95  # type: ignore[attr-defined]
    assert len(later.getMessage()) < 300
    assert limit.suppressed_total == 95
