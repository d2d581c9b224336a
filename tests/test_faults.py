"""Faults under traffic: PostgreSQL restarted, Redis stopped, the game process killed mid-burst.

Every test runs the example server as a process of its own, as an operator does, against
throwaway services on free loopback ports (``faults_services``), and breaks them on purpose.
The figures each test measured are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import asyncio
import errno
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from faults_services import (
    GameProcess,
    PostgresCluster,
    RedisServer,
    Timed,
    login_code,
    metric_value,
    timed_call,
    wait_until,
)
from tortoise.exceptions import IntegrityError, OperationalError

from tiktok_minis.store.crypto import InvalidToken, TokenCipher
from tiktok_minis.store.database import is_outage
from tiktok_minis.testing import GameClient

#: A client gives up on an ack after this long; no answer may come near it.
ACK_TIMEOUT = 8.0
#: The slowest answer allowed while a service is down: "promptly", not "eventually".
OUTAGE_ACK_LIMIT = 3.0
#: How long the game may take to find its database again once it is back.
RECOVERY_LIMIT = 10.0
#: Every traffic loop stops after this many rounds, whatever happens.
MAX_ROUNDS = 2000

GAME_ENV = {
    "TTMINIS_EVENTS_PER_SECOND": "1000",
    "TTMINIS_EVENTS_BURST": "1000",
    "TTMINIS_PUSH_INTERVAL_MS": "50",
    "TTMINIS_REFRESHER_ENABLED": "false",
    "TTMINIS_UPSTREAM_BUDGET_SECONDS": "3",
    "TTMINIS_UPSTREAM_ATTEMPT_TIMEOUT_SECONDS": "1",
    "TTMINIS_DATABASE_POOL_SIZE": "10",
}

StartGame = Callable[..., Awaitable[GameProcess]]


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this module's own, deleted at the end."""
    created = PostgresCluster.create()
    try:
        yield created
    finally:
        created.drop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client for the sandbox's control routes."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


@pytest.fixture
async def start_game(tmp_path: Path) -> AsyncIterator[StartGame]:
    """Start example-server processes with extra settings; every one is stopped at the end."""
    started: list[GameProcess] = []

    async def start(**settings: str) -> GameProcess:
        game = GameProcess({**GAME_ENV, **settings}, tmp_path / f"game-{len(started)}.log")
        started.append(game)
        await game.start()
        return game

    try:
        yield start
    finally:
        lingering = []
        for game in started:
            try:
                await game.stop()
            except AssertionError:
                lingering.append(game.url)
        assert not lingering, f"still running 10 s after SIGTERM (then killed): {lingering}"


@pytest.fixture
async def clients() -> AsyncIterator[list[GameClient]]:
    """Clients a test opens outside ``async with``; all disconnected before the games stop."""
    opened: list[GameClient] = []
    try:
        yield opened
    finally:
        for client in opened:
            await client.disconnect()


@dataclass
class Traffic:
    """Players logging in and submitting in a loop against one game, every answer recorded."""

    url: str
    http: aiohttp.ClientSession
    log: list[Timed] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, players: int) -> None:
        for n in range(players):
            self.tasks.append(asyncio.create_task(self._play(f"traffic-{n}")))

    async def _play(self, device: str) -> None:
        async with GameClient(self.url, timeout=ACK_TIMEOUT) as client:
            for score in range(1, MAX_ROUNDS + 1):
                if self.stop.is_set():
                    return
                code = await login_code(self.http, self.url, device)
                await timed_call(client, "tiktok:login", {"code": code}, self.log)
                await timed_call(
                    client, "leaderboard:submit", {"board": "global", "score": score}, self.log
                )
                # Pacing, not waiting for anything: a few hundred events a second in all.
                await asyncio.sleep(0.01)

    async def finish(self) -> None:
        """Stop the players; a player that failed (not an event: the loop) fails the test."""
        self.stop.set()
        await asyncio.gather(*self.tasks)

    async def abandon(self) -> None:
        """Stop the players whatever happened (the test is failing already)."""
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def answered_since(self, moment: float) -> list[Timed]:
        return [entry for entry in self.log if entry.sent >= moment]

    def between(self, start: float, end: float) -> list[Timed]:
        return [
            entry for entry in self.log if entry.sent >= start and entry.sent + entry.seconds <= end
        ]


def _outcomes(entries: list[Timed]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.outcome] = counts.get(entry.outcome, 0) + 1
    return counts


# -- 1. PostgreSQL restarted under traffic ---------------------------------------------------


@pytest.mark.parametrize("fault", ["restart", "stop_then_start"])
async def test_postgres_restart_under_traffic_answers_promptly_and_recovers(
    cluster: PostgresCluster, start_game: StartGame, http: aiohttp.ClientSession, fault: str
) -> None:
    """A PostgreSQL restart gets prompt storage_unavailable acks, then the process serves again."""
    game = await start_game(TTMINIS_DATABASE_URL=cluster.create_database("faults_restart"))
    traffic = Traffic(game.url, http)
    traffic.start(players=4)
    try:
        await _fault_under_traffic(cluster, game, traffic, fault)
    finally:
        await traffic.abandon()


async def _fault_under_traffic(
    cluster: PostgresCluster, game: GameProcess, traffic: Traffic, fault: str
) -> None:
    loop = asyncio.get_running_loop()
    await wait_until(
        lambda: _outcomes(traffic.log).get("ok", 0) >= 40, 20, "traffic before the fault"
    )

    fault_began = loop.time()
    if fault == "restart":
        await cluster.restart()
        down_from = down_until = loop.time()
    else:
        await cluster.stop()
        down_from = loop.time()
        health_during = await game.health()
        await wait_until(
            lambda: len(traffic.answered_since(down_from)) >= 40, 15, "events during the outage"
        )
        down_until = loop.time()
        await cluster.start()
        assert health_during == 503
    back = loop.time()

    def recovered() -> bool:
        since = traffic.answered_since(back)
        return any(e.event == "leaderboard:submit" and e.outcome == "ok" for e in since)

    recovery = await wait_until(recovered, RECOVERY_LIMIT, "a submit to succeed again")
    health_recovery = recovery + await wait_until(game.healthy, RECOVERY_LIMIT, "/healthz 200")
    recovered_at = loop.time()
    await wait_until(
        lambda: len(traffic.answered_since(recovered_at)) >= 60, 20, "traffic after recovery"
    )
    await traffic.finish()

    outage = [e for e in traffic.log if fault_began <= e.sent <= back]
    during = traffic.between(down_from, down_until)
    after = traffic.answered_since(recovered_at)
    print(
        f"\n[postgres {fault}] outage events {_outcomes(outage)}; fully inside the outage "
        f"{_outcomes(during)}; max ack latency {max(e.seconds for e in outage):.3f} s; "
        f"first ok submit {recovery:.2f} s after PostgreSQL was back, /healthz 200 after "
        f"{health_recovery:.2f} s; "
        f"after recovery {_outcomes(after)}"
    )
    assert outage, "the fault must meet traffic"
    assert set(_outcomes(traffic.log)) <= {"ok", "storage_unavailable"}, _outcomes(traffic.log)
    assert max(e.seconds for e in outage) < OUTAGE_ACK_LIMIT
    assert all(e.outcome == "storage_unavailable" for e in during)
    assert set(_outcomes(after)) == {"ok"}, "recovered for good, not just once"
    metrics = await game.metrics()
    assert metric_value(metrics, "ttminis_events_total", outcome="storage_unavailable") == len(
        [e for e in traffic.log if e.outcome == "storage_unavailable"]
    )
    assert metric_value(metrics, "ttminis_events_total", outcome="internal_error") == 0


def _wrapped(cause: BaseException, wrapper: type[Exception] = OperationalError) -> Exception:
    """``cause`` as tortoise raises it: wrapped, the driver's error as the ``__cause__``."""
    try:
        try:
            raise cause
        except BaseException as exc:
            raise wrapper(exc) from exc
    except Exception as outer:  # noqa: BLE001 (the exception is the value wanted)
        return outer
    raise AssertionError("unreachable")


def _sqlite_error(tmp_path: Path, *, locked: bool) -> sqlite3.Error:
    """A real sqlite3 error: the database locked by another writer, or a missing table."""
    holder = sqlite3.connect(tmp_path / "locked.sqlite3", isolation_level=None)
    other = sqlite3.connect(tmp_path / "locked.sqlite3", timeout=0)
    try:
        holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
        if locked:
            holder.execute("BEGIN EXCLUSIVE")
        other.execute("INSERT INTO t VALUES (1)" if locked else "SELECT * FROM missing")
    except sqlite3.Error as exc:
        return exc
    finally:
        other.close()
        holder.close()
    raise AssertionError("the statement should have failed")


def test_is_outage_tells_a_database_that_is_away_from_a_bug(tmp_path: Path) -> None:
    """The errors a restarting database raises are outages; query bugs and constraints are not."""
    errors = asyncpg.exceptions
    outages: list[BaseException] = [
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        errors.CannotConnectNowError("the database system is starting up"),
        errors.AdminShutdownError("terminating connection due to administrator command"),
        errors.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        errors.TooManyConnectionsError("sorry, too many clients already"),
        errors._base.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        ),
        _wrapped(errors.AdminShutdownError("terminating connection")),
        _wrapped(_sqlite_error(tmp_path, locked=True)),
    ]
    bugs: list[BaseException] = [
        errors.UndefinedTableError('relation "missing" does not exist'),
        errors.PostgresSyntaxError("syntax error at or near"),
        _wrapped(errors.UniqueViolationError("duplicate key"), IntegrityError),
        _wrapped(_sqlite_error(tmp_path, locked=False)),
        KeyError("open_id"),
        OSError(errno.ENOENT, "No such file or directory"),
        ValueError("bad"),
    ]
    assert [e for e in outages if not is_outage(e)] == []
    assert [e for e in bugs if is_outage(e)] == []


# -- 2. Redis stopped and started again, two processes ----------------------------------------


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A Redis server of this test's own."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Seat:
    """A logged-in client and its public player id."""

    client: GameClient
    player_id: str


async def _seat(
    http: aiohttp.ClientSession, game: GameProcess, device: str, clients: list[GameClient]
) -> Seat:
    client = GameClient(game.url, timeout=ACK_TIMEOUT)
    clients.append(client)
    await client.connect()
    ack = await client.call("tiktok:login", {"code": await login_code(http, game.url, device)})
    assert ack["ok"], ack
    return Seat(client, ack["player"]["id"])


def _shows(player: Seat, score: int) -> Callable[[Any], bool]:
    """Whether a board update shows ``player`` with ``score``."""

    def shows(update: Any) -> bool:
        return any(
            entry["player"]["id"] == player.player_id and entry["score"] == score
            for entry in update["entries"]
        )

    return shows


async def _push_seconds(
    player: Seat, watcher: GameClient, score: int, within: float
) -> float | None:
    """Submit ``score`` as ``player``; the seconds until ``watcher`` sees it, ``None`` if not."""
    loop = asyncio.get_running_loop()
    seen = asyncio.create_task(
        watcher.wait_for("leaderboard:update", _shows(player, score), within)
    )
    await asyncio.sleep(0)  # the waiter is registered before the submit goes out
    sent = loop.time()
    ack = await player.client.call("leaderboard:submit", {"board": "global", "score": score})
    assert ack["ok"], ack
    try:
        await seen
    except TimeoutError:
        return None
    return loop.time() - sent


async def _listen_failures(game: GameProcess) -> float:
    return metric_value(await game.metrics(), "ttminis_redis_failures_total", operation="listen")


async def test_redis_outage_keeps_each_process_serving_and_cross_process_pushes_resume(
    cluster: PostgresCluster,
    start_game: StartGame,
    http: aiohttp.ClientSession,
    redis_server: RedisServer,
    clients: list[GameClient],
) -> None:
    """Redis down: each process serves its players; once back, A's pushes reach B within 2 s."""
    settings = {
        "TTMINIS_DATABASE_URL": cluster.create_database("faults_redis"),
        "TTMINIS_REDIS_URL": redis_server.url,
        "TTMINIS_REDIS_CHANNEL": f"faults-{secrets.token_hex(4)}",
    }
    game_a = await start_game(**settings)
    game_b = await start_game(**settings)
    loop = asyncio.get_running_loop()
    player = await _seat(http, game_a, "player-on-a", clients)
    remote = await _seat(http, game_b, "watcher-on-b", clients)
    local = await _seat(http, game_a, "watcher-on-a", clients)
    for seat in (remote, local):
        assert (await seat.client.call("leaderboard:join", {"board": "global"}))["ok"]
    scores = iter(range(1, 100_000))

    async def until_pushed_across(within: float) -> float:
        started = loop.time()
        while loop.time() - started < within:
            if await _push_seconds(player, remote.client, next(scores), 0.5) is not None:
                return loop.time() - started
        raise AssertionError(f"no push from A reached B within {within} s")

    await until_pushed_across(10)  # B's listener subscribes when its first client connects
    assert await _push_seconds(player, remote.client, next(scores), 2) is not None

    # Redis goes away. Each process goes on serving its own players, round after round, until
    # B's listener has failed three times (a backoff that doubles would be at 4 s by then).
    redis_server.stop()
    down = loop.time()
    during: list[Timed] = []
    for round_ in range(400):
        for game in (game_a, game_b):
            async with GameClient(game.url, timeout=ACK_TIMEOUT) as client:
                code = await login_code(http, game.url, f"outage-{round_ % 20}")
                await timed_call(client, "tiktok:login", {"code": code}, during)
                payload = {"board": "global", "score": next(scores)}
                await timed_call(client, "leaderboard:submit", payload, during)
                await timed_call(client, "leaderboard:join", {"board": "global"}, during)
        if await _listen_failures(game_b) >= 3 or loop.time() - down > 30:
            break
    missed = 1_000_000  # the player's best, reached while B cannot hear of it
    local_push = await _push_seconds(player, local.client, missed, 5)
    during_metrics = [await game.metrics() for game in (game_a, game_b)]
    outage = loop.time() - down

    caught_up = asyncio.create_task(
        remote.client.wait_for("leaderboard:update", _shows(player, missed), within=10)
    )
    await asyncio.sleep(0)  # the waiter is registered before Redis is back
    back = loop.time()  # from the start command: the figures include Redis' own start-up
    await redis_server.restart()
    await caught_up
    caught_up_after = loop.time() - back
    scores = iter(range(missed + 1, missed + 100_000))
    resumed_after = await until_pushed_across(15) + caught_up_after
    after = [await _push_seconds(player, remote.client, next(scores), 2) for _ in range(3)]
    after_metrics = [await game.metrics() for game in (game_a, game_b)]
    failures = "ttminis_redis_failures_total"

    print(
        f"\n[redis down {outage:.1f} s] {len(during)} events during the outage: "
        f"{_outcomes(during)}, max ack latency {max(e.seconds for e in during):.3f} s; "
        f"local push on A {local_push and round(local_push, 3)} s; B caught up "
        f"{caught_up_after:.2f} s and a new "
        f"score crossed {resumed_after:.2f} s after Redis was back; then "
        f"{[round(s, 3) if s is not None else None for s in after]} s; metrics on A, B: "
        + "; ".join(
            f"listen failures {metric_value(m, failures, operation='listen')}, publish "
            f"failures {metric_value(m, failures, operation='publish')}, link "
            f"{metric_value(m, 'ttminis_redis_link_up')}"
            for m in during_metrics
        )
    )
    assert set(_outcomes(during)) == {"ok"}, _outcomes(during)
    assert max(e.seconds for e in during) < OUTAGE_ACK_LIMIT
    assert local_push is not None, "a process's own watchers still get its pushes"
    for text in during_metrics:
        assert metric_value(text, "ttminis_redis_link_up") == 0
        assert metric_value(text, "ttminis_redis_failures_total", operation="listen") >= 1
    assert metric_value(during_metrics[0], "ttminis_redis_failures_total", operation="publish")
    assert caught_up_after < 2.5, "B's watchers get the board A changed while Redis was away"
    assert resumed_after < 2.5
    assert all(seconds is not None and seconds < 2 for seconds in after), after
    assert all(metric_value(text, "ttminis_redis_link_up") == 1 for text in after_metrics)


# -- 3. The game process killed mid-burst ----------------------------------------------------

#: Acknowledged writes to collect before the kill (more are in flight when it lands).
ACKED_BEFORE_KILL = 150
KILL_SECRET_KEY = "faults-kill-test-secret-key-0123456789abcdef"


@dataclass
class Acked:
    """What the server acknowledged before it died: (open_id, score) pairs, logins' open_ids."""

    scores: list[tuple[str, int]] = field(default_factory=list)
    logins: set[str] = field(default_factory=set)
    sent: int = 0


async def _submit_burst(client: GameClient, open_id: str, acked: Acked) -> None:
    """Rising scores, four submits in flight at a time; every ok ack is recorded."""
    for round_ in range(MAX_ROUNDS):
        batch = [round_ * 4 + n + 1 for n in range(4)]
        acked.sent += len(batch)
        acks = await asyncio.gather(
            *(client.call("leaderboard:submit", {"board": "global", "score": v}) for v in batch)
        )
        for value, ack in zip(batch, acks, strict=True):
            assert ack["ok"], ack
            acked.scores.append((open_id, value))


async def _login_burst(
    client: GameClient, http: aiohttp.ClientSession, url: str, name: str, acked: Acked
) -> None:
    """New players logging in one after another on one connection; every ok ack recorded."""
    for n in range(MAX_ROUNDS):
        code = await login_code(http, url, f"{name}-{n}")
        acked.sent += 1
        ack = await client.call("tiktok:login", {"code": code})
        assert ack["ok"], ack
        acked.logins.add(ack["player"]["open_id"])


def _encrypted(stored: Any) -> bool:
    """Whether a stored token is a ciphertext under the game's key (never the token itself)."""
    if not isinstance(stored, str) or not stored:
        return False
    try:
        return TokenCipher([KILL_SECRET_KEY]).decrypt(stored) not in ("", stored)
    except InvalidToken:
        return False


async def _stored_rows(url: str) -> tuple[dict[str, int], dict[str, tuple[Any, Any]]]:
    """The board's scores by open_id and every player's stored tokens, read past the game."""
    scores_sql = "SELECT player_id, score FROM ttminis_score WHERE board = 'global'"
    players_sql = "SELECT open_id, access_token, refresh_token FROM ttminis_player"
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite://"))
        try:
            scores = dict(connection.execute(scores_sql).fetchall())
            players = {row[0]: (row[1], row[2]) for row in connection.execute(players_sql)}
        finally:
            connection.close()
        return scores, players
    pg = await asyncpg.connect(url)
    try:
        scores = {row[0]: row[1] for row in await pg.fetch(scores_sql)}
        players = {row[0]: (row[1], row[2]) for row in await pg.fetch(players_sql)}
    finally:
        await pg.close()
    return scores, players


@pytest.mark.parametrize("burst", ["submits", "logins"])
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_sigkill_mid_burst_loses_no_acknowledged_write(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    start_game: StartGame,
    http: aiohttp.ClientSession,
    clients: list[GameClient],
    database: str,
    burst: str,
) -> None:
    """After SIGKILL mid-burst, every acknowledged score and login (encrypted tokens) is stored."""
    if database == "sqlite":
        url = f"sqlite:///{tmp_path}/kill.sqlite3"
    else:
        cluster: PostgresCluster = request.getfixturevalue("cluster")
        url = cluster.create_database("faults_kill")
    settings = {"TTMINIS_DATABASE_URL": url, "TTMINIS_SECRET_KEY": KILL_SECRET_KEY}
    game = await start_game(**settings)
    acked = Acked()
    tasks: list[asyncio.Task[None]] = []
    for n in range(8):
        client = GameClient(game.url, timeout=ACK_TIMEOUT)
        clients.append(client)
        await client.connect()
        if burst == "submits":
            code = await login_code(http, game.url, f"scorer-{n}")
            ack = await client.call("tiktok:login", {"code": code})
            assert ack["ok"], ack
            tasks.append(
                asyncio.create_task(_submit_burst(client, ack["player"]["open_id"], acked))
            )
        else:
            tasks.append(asyncio.create_task(_login_burst(client, http, game.url, f"p{n}", acked)))

    def enough() -> bool:
        for task in tasks:
            if task.done():
                task.result()  # a refused write fails the test here, with its ack
        return len(acked.scores) + len(acked.logins) >= ACKED_BEFORE_KILL

    try:
        await wait_until(enough, 30, f"{ACKED_BEFORE_KILL} acknowledged writes")
        game.kill()
    finally:
        # Acks in flight when the process died never come; stop waiting for them.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    acked_count = len(acked.scores) if burst == "submits" else len(acked.logins)
    in_flight = acked.sent - acked_count

    await start_game(**settings)  # the same database, after the crash
    scores, players = await _stored_rows(url)
    if burst == "submits":
        kept = [(oid, value) for oid, value in acked.scores if scores.get(oid, -1) >= value]
        lost = sorted(set(acked.scores) - set(kept))
        print(
            f"\n[kill mid-burst of submits, {database}] {acked_count} submits acknowledged "
            f"({in_flight} in flight at the kill), {len(kept)}/{acked_count} found stored "
            f"(the stored score at least the acknowledged one)"
        )
        assert not lost, {oid: (value, scores.get(oid)) for oid, value in lost}
    else:
        with_tokens = [
            oid for oid in acked.logins if oid in players and all(map(_encrypted, players[oid]))
        ]
        print(
            f"\n[kill mid-burst of logins, {database}] {acked_count} logins acknowledged "
            f"({in_flight} in flight at the kill); "
            f"{len(with_tokens)}/{acked_count} players stored with encrypted tokens "
            f"({len(players)} player rows in all)"
        )
        assert len(with_tokens) == acked_count
