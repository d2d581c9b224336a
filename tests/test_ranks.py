"""The rank index: its keys, the in-process index, and the service's answers against the
database's own counted ranks (the oracle) through random sequences of writes and forgets."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from game import FAST_UPSTREAM, forget_from_the_shell, run_game
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiktok_minis import Settings
from tiktok_minis.errors import ScoreRejected
from tiktok_minis.ranking import MemoryRankIndex, Row, rank_key, row_id_of, score_of
from tiktok_minis.ranking.keys import key_bytes, micros
from tiktok_minis.services.leaderboards import (
    Board,
    BoardRegistry,
    Entry,
    Leaderboards,
    index_loader,
)
from tiktok_minis.services.profile import Placeholder
from tiktok_minis.store import Store
from tiktok_minis.store.database import Database
from tiktok_minis.store.scores import BoardPeriod
from tiktok_minis.support.int64 import INT64_MAX, INT64_MIN

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PLACEHOLDER = Placeholder("Someone", "/default.svg")
EXTREME_SCORES = st.one_of(
    st.sampled_from([INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX - 1, INT64_MAX]),
    st.integers(min_value=-3, max_value=3),  # small ranges make ties
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
)


@given(
    rows=st.lists(
        st.tuples(
            EXTREME_SCORES,
            st.integers(min_value=0, max_value=2**62),
            st.integers(min_value=1, max_value=2**63 - 1),
        ),
        min_size=2,
        max_size=30,
        unique_by=lambda row: row[2],
    ),
    order=st.sampled_from(["desc", "asc"]),
)
def test_keys_sort_as_the_board_ranks(rows: list[tuple[int, int, int]], order: Any) -> None:
    """Keys, as integers and as bytes, sort exactly as Ranking orders the rows."""
    better_first = sorted(
        rows, key=lambda row: (-row[0] if order == "desc" else row[0], row[1], row[2])
    )
    keys = [rank_key(order, score, reached, row_id) for score, reached, row_id in rows]
    assert [(score_of(order, k), row_id_of(k)) for k in sorted(keys)] == [
        (score, row_id) for score, _, row_id in better_first
    ]
    assert sorted(keys, key=key_bytes) == sorted(keys)


def test_micros_are_exact() -> None:
    """A timestamp's microseconds survive the key, far from the float's reach."""
    at = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)
    assert micros(at) == 9223372036854775
    assert micros(at + timedelta(microseconds=1)) == micros(at) + 1
    assert micros(datetime(2026, 1, 1)) == micros(datetime(2026, 1, 1, tzinfo=UTC))


class HeldLoader:
    """A loader that hands out its rows only once the test releases it."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def __call__(self, board: str, period: str, order: Any) -> AsyncIterator[list[Row]]:
        self.started.set()
        await self.release.wait()
        yield list(self.rows)


async def test_writes_during_a_load_are_replayed_in_order() -> None:
    """While a period loads, reads say None and writes wait; after it, the latest state holds."""
    keys = {n: rank_key("desc", 100 - n, 0, n) for n in range(1, 6)}
    loader = HeldLoader([Row(n, 0, keys[n]) for n in range(1, 6)])
    index = MemoryRankIndex(loader)
    await index.start()
    try:
        assert await index.keys("b", "all", "desc", 1, 10) is None
        await asyncio.wait_for(loader.started.wait(), 5)
        moved = rank_key("desc", 1000, 0, 3)  # row 3 takes the lead
        await index.apply("b", "all", "desc", Row(3, 1, moved))
        await index.remove("b", "all", [5])
        await index.apply("b", "all", "desc", Row(6, 0, rank_key("desc", 0, 0, 6)))
        assert await index.rank("b", "all", "desc", moved) is None
        loader.release.set()
        assert await index.ready("b", "all", "desc")
        held = await index.keys("b", "all", "desc", 1, 10)
        assert held is not None
        assert [row_id_of(key) for key in held] == [3, 1, 2, 4, 6]
        assert await index.rank("b", "all", "desc", moved) == 1
        # A late write of a removed row does not bring it back.
        await index.apply("b", "all", "desc", Row(5, 9, rank_key("desc", 10**6, 0, 5)))
        assert index.size("b", "all") == 5
    finally:
        await index.close()


async def test_idle_periods_are_evicted_and_reload() -> None:
    """A period unused for idle_seconds leaves memory; the next use loads it again."""
    now = [0.0]
    loader = HeldLoader([Row(1, 0, rank_key("asc", 5, 0, 1))])
    loader.release.set()
    index = MemoryRankIndex(loader, idle_seconds=60, clock=lambda: now[0])
    await index.start()
    try:
        assert await index.ready("b", "2026-11-25", "asc")
        assert await index.ready("b", "2026-11-26", "asc")
        now[0] = 30.0
        assert await index.rank("b", "2026-11-26", "asc", rank_key("asc", 6, 0, 9)) == 2
        now[0] = 61.0
        assert index.evict_idle() == 1
        assert index.size("b", "2026-11-25") is None
        assert index.size("b", "2026-11-26") == 1
        assert await index.ready("b", "2026-11-25", "asc")
        assert index.size("b", "2026-11-25") == 1
    finally:
        await index.close()


# -- the service against the oracle -----------------------------------------------------------


@dataclass(frozen=True)
class Submit:
    """A score for player ``player`` on board ``board``."""

    player: int
    board: int
    score: int


@dataclass(frozen=True)
class Forget:
    """Player ``player`` forgotten: their scores deleted."""

    player: int


@dataclass(frozen=True)
class NextDay:
    """The clock moves to the next day: daily boards open a new period."""


BOARDS = [
    Board("best_desc", order="desc", operator="best"),
    Board("latest_asc", order="asc", operator="latest"),
    Board("incr_desc", order="desc", operator="incr", reset="daily"),
    Board("best_asc", order="asc", operator="best", reset="daily"),
]
OPERATIONS = st.lists(
    st.one_of(
        st.builds(
            Submit,
            st.integers(min_value=0, max_value=7),
            st.integers(min_value=0, max_value=len(BOARDS) - 1),
            EXTREME_SCORES,
        ),
        st.builds(Forget, st.integers(min_value=0, max_value=7)),
        st.just(NextDay()),
    ),
    min_size=1,
    max_size=40,
)


def _shown(entries: list[Entry]) -> list[tuple[int, int, str]]:
    return [(entry.rank, entry.score, entry.player.id) for entry in entries]


async def _check_against_oracle(
    service: Leaderboards, index: MemoryRankIndex, store: Store, players: list[str]
) -> None:
    """Every rank, top and around the service gives equals the database's counted answer."""
    for board in BOARDS:
        period = service.period(board.name)
        assert await index.ready(board.name, period, board.order)
        render = service.entry_of
        where = BoardPeriod(board.name, period, board.order)
        top = await service.top(board.name, 20)
        assert _shown(top) == _shown(await store.scores.top(where, 20, render))
        for open_id in players:
            mine = await service.entry(board.name, open_id)
            counted = await store.scores.entry(where, open_id, render)
            assert (mine and _shown([mine])) == (counted and _shown([counted]))
            assert _shown(await service.around(board.name, open_id, 2)) == _shown(
                await store.scores.around(where, open_id, 2, render)
            )


async def _run_case(operations: list[Any], folder: Path) -> None:
    database = Database(f"sqlite:///{folder}/ranks.sqlite3")
    await database.open()
    store = Store(database)
    now = [START]
    index = MemoryRankIndex(index_loader(store))
    await index.start()
    try:
        registry = BoardRegistry()
        for board in BOARDS:
            registry.define(board)
        service = Leaderboards(registry, store, PLACEHOLDER, lambda: now[0], index=index)
        players = []
        for n in range(8):
            row, _ = await store.players.ensure_player(f"open-{n}")
            players.append(row.open_id)
        removals_seen = 0
        for operation in operations:
            if isinstance(operation, Submit):
                board = BOARDS[operation.board]
                with contextlib.suppress(ScoreRejected):  # an increment past 64 bits
                    await service.submit(players[operation.player], board.name, operation.score)
            elif isinstance(operation, Forget):
                await store.players.forget(
                    players[operation.player], anonymise_scores=False, now=now[0]
                )
                removals = await store.score_removals.removed_since(removals_seen)
                if removals:
                    removals_seen = removals[-1].id
                    await service.remove_scores(removals)
                await store.players.ensure_player(players[operation.player])
            else:
                now[0] += timedelta(days=1)
            await _check_against_oracle(service, index, store, players)
    finally:
        await index.close()
        await database.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS)
def test_the_index_answers_as_the_database_counts(operations: list[Any]) -> None:
    """Random submits (every operator and order, ties, 64-bit extremes), forgets and new days:
    after each step the index's ranks, top and around equal the database's counted ones."""
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_run_case(operations, Path(folder)))


async def test_a_forget_from_the_shell_leaves_a_live_servers_index(sqlite_url: str) -> None:
    """``python -m tiktok_minis forget`` in another process: the running server's in-process
    index drops the player's rows, and watchers see the board without them."""
    settings = Settings(
        sandbox=True, database_url=sqlite_url, session_poll_seconds=0.05, **FAST_UPSTREAM
    )
    async with run_game(settings) as game:
        assert await game.minis.rank_index.ready("global", "all", "desc")
        players = [await game.logged_in() for _ in range(3)]
        for n, (client, _, _) in enumerate(players):
            ack = await client.call("leaderboard:submit", {"board": "global", "score": 10 * n})
            assert ack["ok"]
        leader_id = players[2][2]["player"]["id"]
        watcher = await game.client()
        joined = await watcher.call("leaderboard:join", {"board": "global"})
        assert joined["entries"][0]["player"]["id"] == leader_id

        await forget_from_the_shell(sqlite_url, players[2][1].open_id)

        def without_leader(data: Any) -> bool:
            return leader_id not in {entry["player"]["id"] for entry in data["entries"]}

        pushed = [data for name, data in watcher.received if name == "leaderboard:update"]
        update = next(
            (data for data in pushed if without_leader(data)), None
        ) or await watcher.wait_for("leaderboard:update", without_leader, within=5)
        assert [entry["rank"] for entry in update["entries"]] == [1, 2]
        assert game.minis.rank_index.size("global", "all") == 2
        around = await players[1][0].call("leaderboard:around", {"board": "global"})
        assert [entry["rank"] for entry in around["entries"]] == [1, 2]
