"""Pinned defects: a fresh grant undone by a stale fetch, the clock tokens count from, and SSRF.

Each test here failed before its fix. The TikTok side is the sandbox emulator over real loopback
HTTP; the avatar tests use small image servers of their own on loopback ports.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import socket
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from game import FAST_UPSTREAM, Game, run_game
from ports import free_port
from yarl import URL

from tiktok_minis import Board, NotAuthorized, Settings, TikTokMinis
from tiktok_minis.sandbox import ManualClock
from tiktok_minis.services.avatars import Avatars
from tiktok_minis.store import Store
from tiktok_minis.store.database import Database
from tiktok_minis.store.models import AvatarRow, Consent
from tiktok_minis.support.concurrency import SingleFlight
from tiktok_minis.testing import serve

DAY = 86400.0
LOGGER = "tiktok_minis.avatars"
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


# -- 1. a fresh grant is never undone by a fetch that began with the older token ----------------


@pytest.fixture
async def patient_game(sqlite_url: str) -> AsyncIterator[Game]:
    """The sandbox game with an attempt timeout longer than the tests hold a request.

    With the fast one the client would give up on a held request and retry past the hold.
    """
    upstream = {
        **FAST_UPSTREAM,
        "upstream_attempt_timeout_seconds": 4.0,
        "upstream_budget_seconds": 8.0,
    }
    settings = Settings(sandbox=True, database_url=sqlite_url, **upstream)
    async with run_game(settings) as game:
        yield game


async def test_authorize_with_a_fresh_code_is_not_undone_by_a_fetch_with_the_old_token(
    patient_game: Game,
) -> None:
    """A fetch already under way with the silent-login token neither answers nor reverts a grant."""
    sandbox, players = patient_game.sandbox, patient_game.minis.players
    user = sandbox.add_user(display_name="Fresh Grant")
    await players.login(sandbox.login_code(user.open_id))
    # The silent-login token lacks user.info.basic: its fetch is answered scope_not_authorized,
    # and that answer is held at "TikTok" until the test lets it go.
    held = sandbox.inject("user_info", hold=True, process_first=True)
    stale = asyncio.ensure_future(players.refresh_profile(user.open_id))
    try:
        await sandbox.wait_for_calls("user_info", 1)
        code = sandbox.authorize_code(user.open_id)
        granted = await asyncio.wait_for(players.authorize(user.open_id, True, code), 5)
        assert (granted.display_name, granted.placeholder) == ("Fresh Grant", False)
        assert granted.consent is Consent.GRANTED
    finally:
        held.release()
    # The old token's scope_not_authorized arrives last: it must not revert the new grant, and
    # whoever waited on the stale fetch gets the profile the new grant reads.
    assert (await asyncio.wait_for(stale, 5)).display_name == "Fresh Grant"
    after = await players.get(user.open_id)
    assert after is not None and after.display_name == "Fresh Grant"
    assert after.consent is Consent.GRANTED and not after.placeholder


async def test_a_held_fetch_without_a_newer_grant_still_reports_the_missing_scope(
    patient_game: Game,
) -> None:
    """Without a newer grant, the held fetch's scope_not_authorized reaches all who joined it."""
    sandbox, players = patient_game.sandbox, patient_game.minis.players
    user = sandbox.add_user()
    await players.login(sandbox.login_code(user.open_id))
    held = sandbox.inject("user_info", hold=True, process_first=True)
    fetch = asyncio.ensure_future(players.refresh_profile(user.open_id))
    await sandbox.wait_for_calls("user_info", 1)
    joined = asyncio.ensure_future(players.refresh_profile(user.open_id))
    held.release()
    for outcome in await asyncio.wait_for(asyncio.gather(fetch, joined, return_exceptions=True), 5):
        assert isinstance(outcome, NotAuthorized) and outcome.player is not None
    assert sandbox.calls["user_info"] == 1, "concurrent fetches of one token still share one call"


async def test_single_flight_fresh_run_never_joins_an_older_flight() -> None:
    """run(fresh=True) starts its own call, later callers join it, and it alone is current."""
    flights: SingleFlight[str, str] = SingleFlight()
    started = {name: asyncio.Event() for name in ("old", "fresh")}
    gates = {name: asyncio.Event() for name in ("old", "fresh")}
    current: dict[str, bool] = {}

    async def call(name: str) -> str:  # a KeyError for any call but these two
        started[name].set()
        await gates[name].wait()
        current[name] = flights.is_current("k")
        return name

    old = asyncio.ensure_future(flights.run("k", lambda: call("old")))
    await asyncio.wait_for(started["old"].wait(), 5)
    fresh = asyncio.ensure_future(flights.run("k", lambda: call("fresh"), fresh=True))
    await asyncio.wait_for(started["fresh"].wait(), 5)
    joined = asyncio.ensure_future(flights.run("k", lambda: call("joined")))
    gates["old"].set()
    assert await asyncio.wait_for(old, 5) == "old"
    assert len(flights) == 1, "the superseded flight's end must not drop the current one"
    gates["fresh"].set()
    assert await asyncio.wait_for(fresh, 5) == "fresh"
    assert await asyncio.wait_for(joined, 5) == "fresh"
    assert current == {"old": False, "fresh": True}
    assert len(flights) == 0 and not flights.is_current("k")


# -- 2. tokens expire on the injected clock ------------------------------------------------------


async def test_stored_token_expiry_counts_from_the_injected_clock(sqlite_url: str) -> None:
    """With the clock 30 days ahead, a login stores clock + expires_in and needs no refresh."""
    clock = ManualClock(start=float(int(time.time())))
    clock.advance(30 * DAY)
    settings = Settings(
        sandbox=True, database_url=sqlite_url, refresher_enabled=False, **FAST_UPSTREAM
    )
    async with run_game(settings, clock=clock) as game:
        user = game.sandbox.add_user()
        await game.minis.players.login(game.sandbox.login_code(user.open_id))
        row = await game.minis.store.players.by_open_id(user.open_id)
        assert row is not None
        now = datetime.fromtimestamp(clock(), UTC)
        assert row.access_expires_at == now + timedelta(seconds=game.sandbox.access_ttl)
        assert row.refresh_expires_at == now + timedelta(seconds=game.sandbox.refresh_ttl)
        exchanges = game.sandbox.calls["token"]
        await game.minis.players.access_token(user.open_id)
        assert game.sandbox.calls["token"] == exchanges, "a token fresh on the clock is kept"


# -- 3. avatars are never fetched from internal addresses ---------------------------------------


@dataclass
class ImageServer:
    """A loopback image server that counts the requests it serves."""

    url: str
    hits: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def image_app(server: ImageServer) -> web.Application:
    """``/ok.png`` answers a PNG; ``/to?where=...`` redirects there."""

    async def ok_png(request: web.Request) -> web.Response:
        server.hits.append(request.path)
        return web.Response(body=PNG, content_type="image/png")

    async def to(request: web.Request) -> web.Response:
        server.hits.append(request.path)
        return web.Response(status=302, headers={"Location": request.query["where"]})

    app = web.Application()
    app.router.add_get("/ok.png", ok_png)
    app.router.add_get("/to", to)
    return app


async def _image_server() -> AsyncIterator[ImageServer]:
    server = ImageServer(url="")
    async with serve(image_app(server)) as url:
        server.url = url
        yield server


@pytest.fixture
async def inside() -> AsyncIterator[ImageServer]:
    """An image server on 127.0.0.1 that no allow-list names: what SSRF would reach."""
    async for server in _image_server():
        yield server


@pytest.fixture
async def allowed() -> AsyncIterator[ImageServer]:
    """Another loopback image server, the one the tests put on the allow-list."""
    async for server in _image_server():
        yield server


def _avatars(
    database: Database, *allowed_origins: str, resolver: AbstractResolver | None = None
) -> Avatars:
    return Avatars(
        Store(database),
        max_bytes=4096,
        timeout_seconds=2.0,
        default_avatar_url="/default.svg",
        allowed_origins=allowed_origins,
        resolver=resolver,
    )


@pytest.fixture
async def avatars(sqlite_db: Database, allowed: ImageServer) -> AsyncIterator[Avatars]:
    """The service, started, allowing only the ``allowed`` server."""
    service = _avatars(sqlite_db, allowed.url)
    await service.start()
    try:
        yield service
    finally:
        await service.close()


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The warnings the service logged for avatars refused by address."""
    return [
        record
        for record in caplog.records
        if record.name == LOGGER
        and getattr(record, "event", None) == "avatar_not_kept"
        and getattr(record, "reason", None) == "forbidden_address"
    ]


async def test_loopback_image_server_outside_the_allow_list_is_refused(
    avatars: Avatars, inside: ImageServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An image on 127.0.0.1 gives the default avatar, is never requested, and the log says why."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert await avatars.keep(inside.url + "/ok.png?x-signature=s3cr3t") is None
    assert inside.hits == []
    assert await AvatarRow.all().count() == 0
    [record] = refusals(caplog)
    assert getattr(record, "address", None) == "127.0.0.1"
    assert getattr(record, "link", None) == inside.url + "/ok.png"
    assert "s3cr3t" not in caplog.text


async def test_allowed_origin_is_fetched(avatars: Avatars, allowed: ImageServer) -> None:
    """The allow-listed loopback origin is fetched and kept."""
    kept = await avatars.keep(allowed.url + "/ok.png")
    assert kept == avatars.url_for(hashlib.sha256(PNG).hexdigest())
    assert allowed.hits == ["/ok.png"]


async def test_redirect_from_an_allowed_origin_to_loopback_elsewhere_is_refused(
    avatars: Avatars,
    allowed: ImageServer,
    inside: ImageServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every hop is checked: an allowed server cannot redirect the fetch to another inside one."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for target in (f"{inside.url}/ok.png", f"http://localhost:{inside.port}/ok.png"):
        assert await avatars.keep(f"{allowed.url}/to?where={target}") is None
    assert inside.hits == []
    assert len(refusals(caplog)) == 2
    assert await AvatarRow.all().count() == 0


async def test_allowed_host_and_port_under_another_scheme_is_refused(
    avatars: Avatars, allowed: ImageServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The allow-list names origins exactly: the same host and port over https is not one."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert await avatars.keep(allowed.url.replace("http://", "https://") + "/ok.png") is None
    assert len(refusals(caplog)) == 1
    assert allowed.hits == []


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",  # the OS reads it as 127.0.0.1
        "2130706433",  # so too, as a 32-bit number
        "0.0.0.0",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space
        "224.0.0.1",  # multicast
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "[::1]",
        "[::]",
        "[fe80::1]",
        "[fc00::1]",
        "[ff02::1]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped
        "[::ffff:10.0.0.1]",
        "[::ffff:7f00:1]",  # IPv4-mapped, hex spelling
        "[2002:7f00:1::]",  # 6to4 around 127.0.0.1
        "[64:ff9b::a00:1]",  # NAT64 around 10.0.0.1
    ],
)
async def test_internal_address_literals_are_refused_before_connecting(
    avatars: Avatars, caplog: pytest.LogCaptureFixture, host: str
) -> None:
    """Loopback, private, link-local, multicast, reserved, unspecified: refused, IPv4 and IPv6."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert await avatars.keep(f"http://{host}:{free_port()}/a.png") is None
    [record] = refusals(caplog)
    assert getattr(record, "status", None) is None, "refused without any request"


class FakeDns(AbstractResolver):
    """Answers names from a table, as a hostile DNS server could; counts the lookups."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        pass


async def test_names_are_judged_by_the_addresses_they_resolve_to(
    sqlite_db: Database, inside: ImageServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A name resolving (even partly) inside is refused: the check is on the connected address."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    dns = FakeDns({"cdn.test": ["127.0.0.1"], "mixed.test": ["93.184.216.34", "127.0.0.1"]})
    service = _avatars(sqlite_db, resolver=dns)
    await service.start()
    try:
        for name in ("cdn.test", "mixed.test"):
            assert await service.keep(f"http://{name}:{inside.port}/ok.png") is None, name
    finally:
        await service.close()
    assert dns.lookups == ["cdn.test", "mixed.test"]
    assert inside.hits == []
    addresses = [getattr(record, "address", None) for record in refusals(caplog)]
    assert addresses == ["127.0.0.1", "127.0.0.1"]


async def test_an_allowed_name_may_resolve_inside(sqlite_db: Database, inside: ImageServer) -> None:
    """An origin on the allow-list by name is fetched although its address is internal."""
    dns = FakeDns({"emulator.test": ["127.0.0.1"]})
    service = _avatars(sqlite_db, f"http://emulator.test:{inside.port}", resolver=dns)
    await service.start()
    try:
        assert await service.keep(f"http://emulator.test:{inside.port}/ok.png") is not None
        assert await service.keep(f"http://emulator.test:{free_port()}/ok.png") is None
    finally:
        await service.close()
    assert inside.hits == ["/ok.png"]


@pytest.mark.parametrize(
    "origin", ["ftp://127.0.0.1:21", "http://127.0.0.1:8080/path", "127.0.0.1:8080", "http://"]
)
def test_allow_list_takes_origins_only(origin: str) -> None:
    """An allow-list entry that is not scheme://host[:port] is refused at construction."""
    with pytest.raises(ValueError, match="allowed_origins"):
        _avatars(Database("sqlite://:memory:"), origin)


async def test_sandbox_allows_exactly_its_own_emulator_origin(game: Game) -> None:
    """In sandbox mode the emulator's avatars are kept, and its origin is the only one allowed."""
    emulator = game.sandbox.served_avatar_base_url
    assert emulator is not None and emulator.startswith("http://127.0.0.1:")
    assert game.minis.avatars.allowed_origins == frozenset({str(URL(emulator).origin())})
    players = game.minis.players
    user = game.sandbox.add_user(display_name="Sandbox Avatar")
    await players.login(game.sandbox.login_code(user.open_id))
    granted = await players.authorize(user.open_id, True, game.sandbox.authorize_code(user.open_id))
    assert granted.avatar_url.startswith("/ttminis/avatars/"), granted


def test_outside_sandbox_nothing_internal_is_allowed() -> None:
    """Without sandbox mode the avatar allow-list is empty."""
    minis = TikTokMinis(
        Settings(client_key="key", client_secret="secret", secret_key="k" * 32, sandbox=False)
    )
    assert minis.avatars.allowed_origins == frozenset()


# -- the lifecycle: what close() closes whatever the order of start, attach and close ---------


@pytest.mark.redis
async def test_close_without_start_still_closes_the_redis_client(
    sqlite_url: str, redis_url: str
) -> None:
    """A readiness check before start opens a Redis connection; close() must close it."""
    minis = TikTokMinis(
        Settings(sandbox=True, database_url=sqlite_url, redis_url=redis_url, **FAST_UPSTREAM)
    )
    ok, detail = await minis.health.ready()
    assert not ok and detail["redis"] is True  # not started, but Redis answered
    await minis.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del minis
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_attach_after_an_explicit_start_is_closed_too(sqlite_url: str) -> None:
    """start(), then attach(), a score pushed, close(): no push task of the plugin outlives it."""
    minis = TikTokMinis(
        Settings(sandbox=True, database_url=sqlite_url, refresher_enabled=False, **FAST_UPSTREAM)
    )
    minis.boards.define(Board("global", client_scores=True))
    await minis.start()
    sio = minis.create_server()
    app = web.Application()
    sio.attach(app)
    minis.attach(sio, app)
    assert minis.sandbox is not None
    user = minis.sandbox.add_user()
    player = await minis.players.login(minis.sandbox.login_code(user.open_id))
    await minis.leaderboards.submit(player.open_id, "global", 10)
    await minis.close()
    mine = [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and not task.done()
        and "tiktok_minis" in (task.get_coro().cr_code.co_filename if task.get_coro() else "")
    ]
    assert mine == []
