"""The leaderboard service and its queries, on SQLite and on PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tiktok_minis.errors import ConfigurationError, ScoreRejected, UnknownBoard, UnknownPlayer
from tiktok_minis.ranking import MemoryRankIndex, NoRankIndex, RankIndex
from tiktok_minis.services.leaderboards import (
    Board,
    BoardChange,
    BoardRegistry,
    Entry,
    Leaderboards,
    Operator,
    Order,
    Reset,
    index_loader,
)
from tiktok_minis.services.profile import Placeholder
from tiktok_minis.store import Store
from tiktok_minis.store.database import Database
from tiktok_minis.store.models import PlayerRow, ScoreRow
from tiktok_minis.support.int64 import INT64_MAX, INT64_MIN

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PLACEHOLDER = Placeholder("Someone", "/default.svg")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        """The time the test set."""
        return self.now

    def tick(self, **delta: float) -> None:
        """Move on by ``delta`` (timedelta's keywords), or by a millisecond."""
        self.now += timedelta(**delta) if delta else timedelta(milliseconds=1)


@pytest.fixture
def clock() -> Clock:
    """A clock at noon UTC on Wednesday 2026-11-25."""
    return Clock()


class LoadedMemoryIndex(MemoryRankIndex):
    """The in-process index, read only once loaded: every read here tests the index itself."""

    async def rank(self, board: str, period: str, order: Order, key: int) -> int | None:
        """The index's rank, after the period loaded."""
        assert await self.ready(board, period, order)
        return await super().rank(board, period, order, key)

    async def keys(
        self, board: str, period: str, order: Order, first: int, last: int
    ) -> list[int] | None:
        """The index's keys, after the period loaded."""
        assert await self.ready(board, period, order)
        return await super().keys(board, period, order, first, last)


@pytest.fixture(params=["counted", "indexed"])
async def lb(
    request: pytest.FixtureRequest, db: Database, clock: Clock
) -> AsyncIterator[Leaderboards]:
    """A service with no board defined yet, on the test database: once counting every rank
    in the database, once with the in-process rank index."""
    store = Store(db)
    index: RankIndex = NoRankIndex()
    if request.param == "indexed":
        index = LoadedMemoryIndex(index_loader(store))
    await index.start()
    try:
        yield Leaderboards(BoardRegistry(), store, PLACEHOLDER, clock, index=index)
    finally:
        await index.close()


async def make_player(
    n: int, name: str | None = None, avatar: str | None = None
) -> tuple[str, str]:
    """A stored player: (open_id, public id)."""
    row = await PlayerRow.create(
        open_id=f"open-{n}", public_id=f"pub-{n}", display_name=name, avatar_url=avatar
    )
    return row.open_id, row.public_id


def scores(entries: list[Entry]) -> list[int]:
    """The scores of entries, in order."""
    return [entry.score for entry in entries]


def ids(entries: list[Entry]) -> list[str]:
    """The public ids of entries, in order."""
    return [entry.player.id for entry in entries]


def ranks(entries: list[Entry]) -> list[int]:
    """The ranks of entries, in order."""
    return [entry.rank for entry in entries]


# -- operators and orders -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "order", "expected"),
    [
        ("best", "desc", 20),
        ("best", "asc", 5),
        ("latest", "desc", 15),
        ("latest", "asc", 15),
        ("incr", "desc", 50),
        ("incr", "asc", 50),
    ],
)
async def test_operator_keeps_what_it_should(
    lb: Leaderboards, clock: Clock, operator: Operator, order: Order, expected: int
) -> None:
    """best keeps the best for the order, latest the last, incr the sum."""
    lb.boards.define(Board("b", order=order, operator=operator))
    open_id, _ = await make_player(1)
    returned = []
    for score in (10, 5, 20, 15):
        clock.tick()
        returned.append((await lb.submit(open_id, "b", score)).score)
    entry = await lb.entry("b", open_id)
    assert entry is not None and entry.score == expected and entry.rank == 1
    assert returned[-1] == expected, "submit returns the entry as stored"


@pytest.mark.parametrize(
    ("order", "expected"), [("desc", [30, 20, 10, -5]), ("asc", [-5, 10, 20, 30])]
)
async def test_order_decides_who_ranks_first(
    lb: Leaderboards, clock: Clock, order: Order, expected: list[int]
) -> None:
    """desc ranks the highest score first, asc the lowest; ranks count from 1."""
    lb.boards.define(Board("b", order=order))
    for n, score in enumerate((20, -5, 30, 10)):
        open_id, _ = await make_player(n)
        clock.tick()
        await lb.submit(open_id, "b", score)
    top = await lb.top("b")
    assert scores(top) == expected
    assert ranks(top) == [1, 2, 3, 4]


@pytest.mark.parametrize("order", ["desc", "asc"])
async def test_best_only_replaces_a_better_score(
    lb: Leaderboards, clock: Clock, order: Order
) -> None:
    """A worse or equal score under best leaves the entry as it was and returns it."""
    lb.boards.define(Board("b", order=order, operator="best"))
    open_id, _ = await make_player(1)
    await lb.submit(open_id, "b", 100)
    worse = 150 if order == "asc" else 50
    clock.tick()
    assert (await lb.submit(open_id, "b", worse)).score == 100
    assert (await lb.submit(open_id, "b", 100)).score == 100
    better = 50 if order == "asc" else 150
    assert (await lb.submit(open_id, "b", better)).score == better


# -- ties and reached_at --------------------------------------------------------------------


async def test_ties_rank_who_reached_the_score_first(lb: Leaderboards, clock: Clock) -> None:
    """Equal scores rank by when they were reached, whatever order the rows were created."""
    lb.boards.define(Board("b", operator="latest"))
    late, late_pub = await make_player(1)
    early, early_pub = await make_player(2)
    await lb.submit(late, "b", 1)  # created first, so it has the smaller id
    clock.tick()
    await lb.submit(early, "b", 100)
    clock.tick()
    entry = await lb.submit(late, "b", 100)
    assert entry.rank == 2
    assert ids(await lb.top("b")) == [early_pub, late_pub]
    clock.tick()
    await lb.submit(early, "b", 100)  # resubmitting the same score keeps when it was reached
    assert ids(await lb.top("b")) == [early_pub, late_pub]


async def test_ties_at_the_same_instant_rank_the_first_stored(lb: Leaderboards) -> None:
    """With equal score and reached_at, the row stored first ranks higher (smaller id)."""
    lb.boards.define(Board("b"))
    players = [await make_player(n) for n in range(4)]
    for open_id, _ in players:
        await lb.submit(open_id, "b", 7)
    assert ids(await lb.top("b")) == [public for _, public in players]
    last = await lb.entry("b", players[-1][0])
    assert last is not None and last.rank == 4


@pytest.mark.parametrize(
    ("operator", "same", "different"), [("latest", 5, 6), ("incr", 0, 1), ("best", 5, 9)]
)
async def test_reached_at_moves_only_when_the_score_changes(
    lb: Leaderboards, clock: Clock, operator: Operator, same: int, different: int
) -> None:
    """reached_at is when the current score was reached: an unchanged score keeps it."""
    lb.boards.define(Board("b", operator=operator))
    open_id, _ = await make_player(1)
    await lb.submit(open_id, "b", 5)
    first = START
    clock.tick(seconds=10)
    await lb.submit(open_id, "b", same)
    row = await ScoreRow.get(board="b", player_id=open_id)
    assert row.reached_at == first
    clock.tick(seconds=10)
    await lb.submit(open_id, "b", different)
    row = await ScoreRow.get(board="b", player_id=open_id)
    assert row.reached_at == clock.now


# -- rank, entry, around --------------------------------------------------------------------


@pytest.fixture
async def ten(lb: Leaderboards, clock: Clock) -> list[str]:
    """Board ``b`` (desc) holding players 0..9 with scores 100, 90, ... 10; their open_ids."""
    lb.boards.define(Board("b", live_size=3))
    players = []
    for n in range(10):
        open_id, _ = await make_player(n)
        clock.tick()
        await lb.submit(open_id, "b", 100 - 10 * n)
        players.append(open_id)
    return players


async def test_entry_ranks_each_player(lb: Leaderboards, ten: list[str]) -> None:
    """entry() gives each player's rank and score; None for a player without a score."""
    for n, open_id in enumerate(ten):
        entry = await lb.entry("b", open_id)
        assert entry is not None and (entry.rank, entry.score) == (n + 1, 100 - 10 * n)
    outsider, _ = await make_player(99)
    assert await lb.entry("b", outsider) is None
    assert await lb.entry("b", "never-seen") is None


async def test_top_limit_defaults_to_live_size(lb: Leaderboards, ten: list[str]) -> None:
    """top() returns live_size entries by default, any limit up to 1000 for server code."""
    assert scores(await lb.top("b")) == [100, 90, 80]
    assert ranks(await lb.top("b", 7)) == list(range(1, 8))
    assert len(await lb.top("b", 1000)) == 10
    for bad in (0, -1, 1001):
        with pytest.raises(ValueError, match="limit"):
            await lb.top("b", bad)


@pytest.mark.parametrize(
    ("player", "radius", "expected_ranks"),
    [
        (0, 2, [1, 2, 3]),  # the top: nothing above
        (9, 2, [8, 9, 10]),  # the bottom: nothing below
        (4, 2, [3, 4, 5, 6, 7]),
        (1, 3, [1, 2, 3, 4, 5]),
        (4, 50, list(range(1, 11))),  # radius beyond the board
        (6, 0, [7]),
    ],
)
async def test_around_at_the_edges(
    lb: Leaderboards, ten: list[str], player: int, radius: int, expected_ranks: list[int]
) -> None:
    """around() lists ranks rank-radius..rank+radius, clipped at both ends of the board."""
    entries = await lb.around("b", ten[player], radius)
    assert ranks(entries) == expected_ranks
    assert scores(entries) == [110 - 10 * rank for rank in expected_ranks]
    assert ids(entries) == [f"pub-{rank - 1}" for rank in expected_ranks]


async def test_around_a_player_without_score_is_empty(lb: Leaderboards, ten: list[str]) -> None:
    """around() is [] for a player with no score on the board, and refuses a bad radius."""
    outsider, _ = await make_player(99)
    assert await lb.around("b", outsider) == []
    with pytest.raises(ValueError, match="radius"):
        await lb.around("b", ten[0], -1)


@pytest.mark.parametrize("order", ["desc", "asc"])
async def test_top_entry_and_around_agree_on_a_board_full_of_ties(
    lb: Leaderboards, clock: Clock, order: Order
) -> None:
    """The one ordering: top's ranks, entry's rank and around's window always agree."""
    lb.boards.define(Board("b", order=order, operator="latest"))
    rng = random.Random(7)
    players = [(await make_player(n))[0] for n in range(40)]
    for open_id in rng.sample(players, len(players)):
        if rng.random() < 0.5:
            clock.tick()  # about half the ties share reached_at too, down to the id
        await lb.submit(open_id, "b", rng.randint(1, 6))
    board = await lb.top("b", 1000)
    assert len(board) == 40 and ranks(board) == list(range(1, 41))
    key = (lambda e: -e.score) if order == "desc" else (lambda e: e.score)
    assert sorted(board, key=key) == board
    by_id = {entry.player.id: entry for entry in board}
    for open_id in players:
        entry = await lb.entry("b", open_id)
        assert entry is not None and by_id[entry.player.id] == entry
        window = await lb.around("b", open_id, 3)
        assert window == board[max(0, entry.rank - 4) : entry.rank + 3]


async def test_top_is_one_query_joining_current_profiles(
    lb: Leaderboards, ten: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """top() reads the entries and their profiles in a single statement (no N+1)."""
    with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
        caplog.clear()
        entries = await lb.top("b", 10)
    assert len(entries) == 10
    assert len([r for r in caplog.records if r.name == "tortoise.db_client"]) == 1


# -- profiles -------------------------------------------------------------------------------


async def test_entries_show_the_current_profile(lb: Leaderboards, clock: Clock) -> None:
    """A renamed player shows the new name on the next read; no name shows the placeholder."""
    lb.boards.define(Board("b"))
    alice, alice_pub = await make_player(1, "Alice", "https://a/alice.png")
    anon, anon_pub = await make_player(2)
    await lb.submit(alice, "b", 20)
    clock.tick()
    await lb.submit(anon, "b", 10)
    first, second = await lb.top("b")
    assert (first.player.id, first.player.display_name) == (alice_pub, "Alice")
    assert first.player.avatar_url == "https://a/alice.png" and not first.player.placeholder
    assert (second.player.id, second.player.display_name) == (anon_pub, "Someone")
    assert second.player.avatar_url == "/default.svg" and second.player.placeholder

    await PlayerRow.filter(open_id=alice).update(display_name="Alicia", avatar_url=None)
    await PlayerRow.filter(open_id=anon).update(display_name="Named Now")
    first, second = await lb.top("b")
    assert first.player.display_name == "Alicia" and first.player.avatar_url == "/default.svg"
    assert second.player.display_name == "Named Now" and not second.player.placeholder
    entry = await lb.entry("b", alice)
    assert entry is not None and entry.player.display_name == "Alicia"
    assert [e.player.display_name for e in await lb.around("b", anon)] == ["Alicia", "Named Now"]


# -- periods --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reset", "at", "key"),
    [
        ("never", datetime(2026, 11, 25, tzinfo=UTC), "all"),
        ("daily", datetime(2026, 11, 25, 23, 59, 59, 999999, tzinfo=UTC), "2026-11-25"),
        ("daily", datetime(2026, 11, 26, tzinfo=UTC), "2026-11-26"),
        ("daily", datetime(2026, 11, 26, 1, 0, tzinfo=timezone(timedelta(hours=3))), "2026-11-25"),
        ("daily", datetime(2026, 11, 26, 1, 0), "2026-11-26"),  # naive is taken as UTC
        ("weekly", datetime(2026, 11, 25, tzinfo=UTC), "2026-W48"),
        ("weekly", datetime(2026, 11, 29, 23, 59, tzinfo=UTC), "2026-W48"),  # Sunday
        ("weekly", datetime(2026, 11, 30, tzinfo=UTC), "2026-W49"),  # Monday
        ("weekly", datetime(2026, 12, 31, tzinfo=UTC), "2026-W53"),
        ("weekly", datetime(2027, 1, 3, tzinfo=UTC), "2026-W53"),  # ISO year, not calendar
        ("weekly", datetime(2027, 1, 4, tzinfo=UTC), "2027-W01"),
        ("weekly", datetime(2024, 12, 30, tzinfo=UTC), "2025-W01"),
        ("monthly", datetime(2026, 11, 30, 23, 59, tzinfo=UTC), "2026-11"),
        ("monthly", datetime(2026, 12, 1, tzinfo=UTC), "2026-12"),
        ("monthly", datetime(2027, 1, 1, tzinfo=UTC), "2027-01"),
    ],
)
def test_period_keys(reset: Reset, at: datetime, key: str) -> None:
    """Periods are UTC days, ISO weeks (ISO year at year end) and months."""
    assert Board("b", reset=reset).period_key(at) == key


@pytest.mark.parametrize(
    ("reset", "start", "step", "before", "after"),
    [
        ("daily", datetime(2026, 11, 25, 23, 59, tzinfo=UTC), {"minutes": 2}, "2026-11-25", None),
        ("weekly", datetime(2026, 12, 31, 12, tzinfo=UTC), {"days": 4}, "2026-W53", "2027-W01"),
        ("monthly", datetime(2026, 12, 31, 23, tzinfo=UTC), {"hours": 2}, "2026-12", "2027-01"),
    ],
)
async def test_past_periods_stay_queryable(
    lb: Leaderboards,
    clock: Clock,
    reset: Reset,
    start: datetime,
    step: dict[str, float],
    before: str,
    after: str | None,
) -> None:
    """Crossing a boundary starts an empty period; the past one answers through period=."""
    lb.boards.define(Board("b", reset=reset, operator="incr"))
    one, _ = await make_player(1)
    two, _ = await make_player(2)
    clock.now = start
    await lb.submit(one, "b", 5)
    await lb.submit(two, "b", 3)
    clock.tick(**step)
    assert lb.period("b") != before
    assert await lb.top("b") == []
    assert await lb.entry("b", one) is None
    entry = await lb.submit(one, "b", 1)  # incr starts afresh in the new period
    assert (entry.rank, entry.score) == (1, 1)
    if after is not None:
        assert lb.period("b") == after
    assert scores(await lb.top("b")) == [1]
    assert scores(await lb.top("b", period=before)) == [5, 3]
    past = await lb.entry("b", two, period=before)
    assert past is not None and (past.rank, past.score) == (2, 3)
    assert scores(await lb.around("b", two, 1, period=before)) == [5, 3]
    assert await lb.around("b", two) == []


# -- what a submit accepts ------------------------------------------------------------------


async def test_client_scores_need_the_board_to_allow_them(lb: Leaderboards) -> None:
    """A client score on a board without client_scores is refused; server code may submit."""
    lb.boards.define(Board("b"))
    open_id, _ = await make_player(1)
    with pytest.raises(ScoreRejected):
        await lb.submit(open_id, "b", 10, from_client=True)
    assert await lb.entry("b", open_id) is None
    assert (await lb.submit(open_id, "b", 10)).score == 10


async def test_sync_and_async_validators(lb: Leaderboards) -> None:
    """A validator (plain or async) refusing a client score stops it; server scores skip it."""
    seen: list[tuple[str, int]] = []

    def capped(open_id: str, score: int) -> bool:
        seen.append((open_id, score))
        return score <= 100

    async def even(open_id: str, score: int) -> bool:
        await asyncio.sleep(0)
        return score % 2 == 0

    lb.boards.define(Board("sync", client_scores=True, validator=capped))
    lb.boards.define(Board("async", client_scores=True, validator=even))
    open_id, _ = await make_player(1)
    with pytest.raises(ScoreRejected):
        await lb.submit(open_id, "sync", 101, from_client=True)
    assert (await lb.submit(open_id, "sync", 100, from_client=True)).score == 100
    assert seen == [(open_id, 101), (open_id, 100)]
    assert (await lb.submit(open_id, "sync", 500)).score == 500
    assert len(seen) == 2, "server-submitted scores are not validated"
    with pytest.raises(ScoreRejected):
        await lb.submit(open_id, "async", 3, from_client=True)
    assert await lb.entry("async", open_id) is None
    assert (await lb.submit(open_id, "async", 4, from_client=True)).score == 4


@pytest.mark.parametrize("operator", ["best", "latest", "incr"])
async def test_int64_bounds_are_stored_exactly(lb: Leaderboards, operator: Operator) -> None:
    """The extreme 64-bit scores round-trip exactly."""
    lb.boards.define(Board("b", operator=operator))
    low, _ = await make_player(1)
    high, _ = await make_player(2)
    await lb.submit(low, "b", INT64_MIN)
    await lb.submit(high, "b", INT64_MAX)
    assert scores(await lb.top("b")) == [INT64_MAX, INT64_MIN]


@pytest.mark.parametrize(
    "score", [INT64_MAX + 1, INT64_MIN - 1, 10**40, True, False, 1.0, 2.5, "7", None]
)
async def test_non_int64_scores_are_rejected(lb: Leaderboards, score: object) -> None:
    """Out-of-range ints, bools, floats and strings are refused and nothing is stored."""
    lb.boards.define(Board("b", client_scores=True))
    open_id, _ = await make_player(1)
    for from_client in (False, True):
        with pytest.raises(ScoreRejected):
            await lb.submit(open_id, "b", score, from_client=from_client)  # type: ignore[arg-type]
    assert await ScoreRow.all().count() == 0


@pytest.mark.parametrize(
    ("start", "step", "beyond"),
    [
        (INT64_MAX - 5, 5, 1),
        (INT64_MIN + 5, -5, -1),
        (1, INT64_MAX - 1, INT64_MAX),
        (-1, INT64_MIN + 1, INT64_MIN),
    ],
)
async def test_incr_overflow_is_refused_and_changes_nothing(
    lb: Leaderboards, clock: Clock, start: int, step: int, beyond: int
) -> None:
    """An increment past the 64-bit bounds is refused and writes nothing; reaching one is fine."""
    lb.boards.define(Board("b", operator="incr"))
    open_id, _ = await make_player(1)
    await lb.submit(open_id, "b", start)
    clock.tick(seconds=1)
    bound = (await lb.submit(open_id, "b", step)).score
    assert bound in (INT64_MAX, INT64_MIN)
    before = await ScoreRow.get(board="b", player_id=open_id)
    assert before.reached_at == clock.now
    changes: list[BoardChange] = []
    lb.subscribe(changes.append)
    clock.tick(seconds=1)
    with pytest.raises(ScoreRejected, match="overflow"):
        await lb.submit(open_id, "b", beyond)
    after = await ScoreRow.get(board="b", player_id=open_id)
    assert (after.score, after.reached_at, after.updated_at) == (
        bound,
        before.reached_at,
        before.updated_at,
    )
    assert changes == [], "a refused increment announces nothing"
    assert (await lb.submit(open_id, "b", -step)).score == start, "the row is still usable"


async def test_unknown_board_and_unknown_player(lb: Leaderboards) -> None:
    """Every call names a defined board; a submit names a stored player."""
    lb.boards.define(Board("b"))
    open_id, _ = await make_player(1)
    with pytest.raises(UnknownBoard):
        await lb.submit(open_id, "nope", 1)
    with pytest.raises(UnknownBoard):
        await lb.top("nope")
    with pytest.raises(UnknownBoard):
        await lb.entry("nope", open_id)
    with pytest.raises(UnknownBoard):
        await lb.around("nope", open_id)
    with pytest.raises(UnknownPlayer):
        await lb.submit("nobody", "b", 1)
    assert await ScoreRow.all().count() == 0
    assert (await lb.submit(open_id, "b", 1)).rank == 1, "the connection is still usable"


# -- concurrency ----------------------------------------------------------------------------


async def test_concurrent_increments_of_one_player_all_count(lb: Leaderboards) -> None:
    """200 concurrent increments of one player: none raises, none is lost."""
    lb.boards.define(Board("b", operator="incr"))
    open_id, _ = await make_player(1)
    entries = await asyncio.gather(*(lb.submit(open_id, "b", n) for n in range(1, 201)))
    total = 200 * 201 // 2
    entry = await lb.entry("b", open_id)
    assert entry is not None and entry.score == total
    assert max(scores(entries)) == total
    assert len(set(scores(entries))) == 200, "each submit saw its own running total"
    assert await ScoreRow.all().count() == 1


@pytest.mark.parametrize("order", ["desc", "asc"])
async def test_concurrent_best_of_one_player_keeps_the_best(lb: Leaderboards, order: Order) -> None:
    """200 concurrent best submits in random order end on exactly the best of them."""
    lb.boards.define(Board("b", order=order))
    open_id, _ = await make_player(1)
    values = list(range(-100, 100))
    random.Random(3).shuffle(values)
    await asyncio.gather(*(lb.submit(open_id, "b", v) for v in values))
    entry = await lb.entry("b", open_id)
    assert entry is not None and entry.score == (99 if order == "desc" else -100)


async def test_concurrent_submits_of_several_players_are_exact(lb: Leaderboards) -> None:
    """Interleaved concurrent submits of five players on two boards: exact sums and maxima."""
    lb.boards.define(Board("sum", operator="incr"))
    lb.boards.define(Board("max"))
    players = [(await make_player(n))[0] for n in range(5)]
    calls = []
    for step in range(1, 61):
        for n, open_id in enumerate(players):
            calls.append(lb.submit(open_id, "sum", step * (n + 1)))
            calls.append(lb.submit(open_id, "max", (step * 7919 + n) % 1000))
    random.Random(5).shuffle(calls)
    await asyncio.gather(*calls)
    for n, open_id in enumerate(players):
        total = await lb.entry("sum", open_id)
        best = await lb.entry("max", open_id)
        assert total is not None and total.score == (n + 1) * 60 * 61 // 2
        assert best is not None
        assert best.score == max((step * 7919 + n) % 1000 for step in range(1, 61))
    assert ranks(await lb.top("sum")) == [1, 2, 3, 4, 5]
    assert await ScoreRow.all().count() == 10


# -- the change feed ------------------------------------------------------------------------


async def test_each_change_is_announced_with_its_period(lb: Leaderboards, clock: Clock) -> None:
    """A submit that changes the board announces (board, period); a non-improving best does not."""
    lb.boards.define(Board("b"))
    lb.boards.define(Board("d", reset="daily", operator="latest"))
    open_id, _ = await make_player(1)
    changes: list[BoardChange] = []
    unsubscribe = lb.subscribe(changes.append)
    await lb.submit(open_id, "b", 10)
    await lb.submit(open_id, "b", 5)  # not better: nothing written
    await lb.submit(open_id, "b", 11)
    await lb.submit(open_id, "d", 1)
    assert changes == [
        BoardChange("b", "all"),
        BoardChange("b", "all"),
        BoardChange("d", "2026-11-25"),
    ]
    twice = lb.subscribe(changes.append)
    unsubscribe()
    unsubscribe()  # harmless: it does not remove the second subscription
    await lb.submit(open_id, "b", 12)
    assert changes[3:] == [BoardChange("b", "all")]
    twice()
    await lb.submit(open_id, "b", 13)
    assert len(changes) == 4


async def test_a_raising_listener_breaks_nothing(
    lb: Leaderboards, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener that raises is logged; submit succeeds and the other listeners still hear."""
    lb.boards.define(Board("b"))
    open_id, _ = await make_player(1)

    def broken(change: BoardChange) -> None:
        raise RuntimeError("listener bug")

    heard: list[BoardChange] = []
    lb.subscribe(broken)
    lb.subscribe(heard.append)
    with caplog.at_level(logging.ERROR, logger="tiktok_minis.leaderboards"):
        entry = await lb.submit(open_id, "b", 3)
    assert entry.score == 3
    assert heard == [BoardChange("b", "all")]
    assert any("listener" in record.getMessage() for record in caplog.records)


async def test_profile_change_is_announced_where_the_player_is_shown(
    lb: Leaderboards, clock: Clock
) -> None:
    """notify_profile_changed names only the boards whose current live top holds the player."""
    lb.boards.define(Board("shown", live_size=2))
    lb.boards.define(Board("edge", live_size=2, order="asc"))
    lb.boards.define(Board("hidden", live_size=2))
    lb.boards.define(Board("absent"))
    lb.boards.define(Board("yesterday", reset="daily"))
    me, _ = await make_player(0)
    others = [(await make_player(n))[0] for n in range(1, 4)]
    await lb.submit(me, "shown", 50)
    await lb.submit(me, "edge", 2)
    await lb.submit(me, "hidden", 10)
    await lb.submit(me, "yesterday", 10)
    for n, other in enumerate(others):
        clock.tick()
        await lb.submit(other, "shown", 10 + n)
        await lb.submit(other, "edge", 1 + 2 * n)  # 1, 3, 5: me (2) is second
        await lb.submit(other, "hidden", 20 + n)
        await lb.submit(other, "absent", 1)
    clock.tick(days=1)
    changes: list[BoardChange] = []
    lb.subscribe(changes.append)
    await lb.notify_profile_changed(me)
    assert sorted(changes, key=lambda c: c.board) == [
        BoardChange("edge", "all"),
        BoardChange("shown", "all"),
    ]
    changes.clear()
    await lb.notify_profile_changed("never-seen")
    assert changes == []


# -- boards ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"name": ""},
        {"name": "Global"},
        {"name": "g" * 65},
        {"name": "../etc"},
        {"name": "a b"},
        {"name": "global\n"},
        {"name": "b", "live_size": 0},
        {"name": "b", "live_size": 101},
        {"name": "b", "live_size": True},
        {"name": "b", "order": "up"},
        {"name": "b", "operator": "max"},
        {"name": "b", "reset": "hourly"},
        {"name": "b", "client_scores": "yes"},
        {"name": "b", "validator": 3},
    ],
)
def test_malformed_boards_are_refused_with_a_sentence(options: dict[str, object]) -> None:
    """A malformed board definition raises ConfigurationError saying what is wrong."""
    with pytest.raises(ConfigurationError, match=r"\w+ \w+"):
        Board(**options)  # type: ignore[arg-type]


def test_board_names_of_every_allowed_character_are_accepted() -> None:
    """Lowercase letters, digits, '_' and '-' up to 64 characters make a board name."""
    assert Board("a").name == "a"
    assert Board("weekly_race-2026").live_size == 10
    assert Board("x" * 64, live_size=100).live_size == 100


def test_registry_defines_each_board_once() -> None:
    """Redefining a name with an equal board is harmless; with a different one, an error."""
    registry = BoardRegistry()
    board = registry.define(Board("global"))
    assert registry.define(Board("global")) is board
    with pytest.raises(ConfigurationError, match="already defined"):
        registry.define(Board("global", order="asc"))
    registry.define(Board("other", operator="incr"))
    assert registry.get("global") is board
    assert "global" in registry and "missing" not in registry
    assert len(registry) == 2
    assert [b.name for b in registry] == ["global", "other"]
    with pytest.raises(UnknownBoard):
        registry.get("missing")
