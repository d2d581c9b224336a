"""Every query on scores: the only place that reads or writes ``ScoreRow``.

The statements are raw SQL because the rules need what the ORM cannot say in one statement:
an atomic ``INSERT ... ON CONFLICT ... DO UPDATE ... RETURNING`` whose update depends on the
board's operator and order (so concurrent submits of one player never race), and ranks counted
with the tie-breaks. Each statement is written once, with PostgreSQL's ``$n`` placeholders, and
rendered for SQLite (``?n``, the same numbered parameters) by :func:`_for_dialect`.

Ranking order is defined once, in :class:`Ranking`; ``top``, ``entry``, ``around``, ``rank_of``
and ``load`` all build on it (and ``tiktok_minis.ranking.keys`` encodes the same order). Rows
carry no names: each query joins the current ``ttminis_player`` row, and the caller decides how
to show it through a ``render`` callback (``render(rank, score, public_id, display_name,
avatar_url)``), so no intermediate object is built per row.

Costs, all on indexes: ``top``, ``row_of``, ``shown`` and the upsert read a handful of index
entries whatever the board's size; a counted rank (``entry``, ``around``, ``rank_of``) counts
the rows ahead, so it grows with the rank. The leaderboard service counts only while its rank
index cannot answer (see :mod:`tiktok_minis.ranking`); the counts are also the tests' oracle.
"""

# The statements are f-strings assembled once from fixed fragments of this module (never from
# input); every value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final, Literal, NamedTuple, TypeVar

from tortoise.exceptions import IntegrityError

from tiktok_minis.errors import ScoreRejected, UnknownPlayer
from tiktok_minis.store.database import Dialect, connection

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "RANKINGS",
    "Indexed",
    "Operator",
    "Order",
    "Position",
    "Ranking",
    "Render",
    "Shown",
    "Written",
    "around",
    "db_timestamp",
    "entry",
    "load",
    "rank_of",
    "reached_at",
    "row_of",
    "shown",
    "top",
    "write",
    "written_since",
]

Order = Literal["desc", "asc"]
Operator = Literal["best", "latest", "incr"]

#: The bounds of a score: a signed 64-bit integer (PostgreSQL ``BIGINT``, SQLite ``INTEGER``).
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

T = TypeVar("T")
#: Builds what the caller wants from one ranked row: (rank, score, public_id, name, avatar).
Render = Callable[[int, int, str, str | None, str | None], T]


@dataclass(frozen=True, slots=True)
class Ranking:
    """How a board's order ranks its rows: the one definition every query uses.

    A row is ahead of another when its score is better; on equal scores, when it reached that
    score earlier (``reached_at``); on both equal, when its id is smaller (it was stored first).
    Ids are unique, so this is a total order and a rank is 1 + the number of rows ahead.
    """

    better: str  # the SQL comparison meaning "a better score": ">" for desc boards
    worse: str
    direction: str  # how ORDER BY lists the best score first
    reverse_direction: str

    def order_by(self, t: str) -> str:
        """ORDER BY terms listing the rows of alias ``t`` best first."""
        return f"{t}.score {self.direction}, {t}.reached_at ASC, {t}.id ASC"

    def reverse_order_by(self, t: str) -> str:
        """ORDER BY terms listing the rows of alias ``t`` worst first."""
        return f"{t}.score {self.reverse_direction}, {t}.reached_at DESC, {t}.id DESC"

    def ahead(self, t: str, at: Position) -> str:
        """SQL: row ``t`` ranks strictly ahead of the position ``at``.

        The leading ``score >=`` (or ``<=``) is implied by the rest; it is there so that the
        (board, period, score, reached_at) index bounds the scan to the rows that can be ahead.
        """
        return (
            f"{t}.score {self.better}= {at.score} AND ({t}.score {self.better} {at.score}"
            f" OR {t}.reached_at < {at.reached_at}"
            f" OR ({t}.reached_at = {at.reached_at} AND {t}.id < {at.id}))"
        )

    def behind(self, t: str, at: Position) -> str:
        """SQL: row ``t`` ranks strictly behind the position ``at`` (the mirror of ``ahead``)."""
        return (
            f"{t}.score {self.worse}= {at.score} AND ({t}.score {self.worse} {at.score}"
            f" OR {t}.reached_at > {at.reached_at}"
            f" OR ({t}.reached_at = {at.reached_at} AND {t}.id > {at.id}))"
        )

    def count_ahead(self, at: Position) -> str:
        """SQL: how many rows of board ``$1``, period ``$2`` rank ahead of the position ``at``.

        The rows of :meth:`ahead`, counted in two parts that each are one index range: those
        with a better score (the many: the count needs nothing but the index), and those with
        the same score reached no later (the few), whose tie-break is then checked row by row.
        """
        return (
            "((SELECT COUNT(*) FROM ttminis_score c WHERE c.board = $1 AND c.period = $2"
            f" AND c.score {self.better} {at.score})"
            " + (SELECT COUNT(*) FROM ttminis_score c WHERE c.board = $1 AND c.period = $2"
            f" AND c.score = {at.score} AND c.reached_at <= {at.reached_at}"
            f" AND (c.reached_at < {at.reached_at} OR c.id < {at.id})))"
        )


class Position(NamedTuple):
    """A place in the ranking as SQL expressions: a score, when it was reached, a row id."""

    score: str
    reached_at: str
    id: str


#: The rankings by board order.
RANKINGS: Final[dict[Order, Ranking]] = {
    "desc": Ranking(better=">", worse="<", direction="DESC", reverse_direction="ASC"),
    "asc": Ranking(better="<", worse=">", direction="ASC", reverse_direction="DESC"),
}

# The player's own row, read once by a statement's `me` CTE. Scalar subqueries rather than a
# join: both databases evaluate them once, and PostgreSQL can then use the value to bound an
# index scan (joined to a CTE, it walks the index from one end and filters instead).
_ME_CTE = """me AS (
            SELECT id, score, reached_at, player_id FROM ttminis_score
            WHERE board = $1 AND period = $2 AND player_id = $3)"""
_ME = Position("(SELECT score FROM me)", "(SELECT reached_at FROM me)", "(SELECT id FROM me)")
# A row just written, passed as parameters $3, $4, $5; the last row a load read, as $4 to $6.
_WRITTEN = Position("$3", "$4", "$5")
_LAST = Position("$4", "$5", "$6")

_PLACEHOLDER = re.compile(r"\$(\d+)")


def _for_dialect(dialect: Dialect, sql: str) -> str:
    """The statement with the dialect's placeholders: ``$n`` for PostgreSQL, ``?n`` for SQLite.

    Both take numbered parameters, so a statement may use one parameter several times.
    """
    return sql if dialect == "postgres" else _PLACEHOLDER.sub(r"?\1", sql)


def _update_rule(operator: Operator, ranking: Ranking) -> tuple[str, str]:
    """The operator as (the new score, the condition under which the stored row changes)."""
    if operator == "best":
        return "excluded.score", f"WHERE excluded.score {ranking.better} s.score"
    if operator == "latest":
        return "excluded.score", ""
    # incr. The guard compares against a bound minus the increment, which cannot overflow
    # whatever the sign; CASE makes sure only the branch that is safe for that sign runs
    # (PostgreSQL raises on bigint overflow, SQLite silently turns it into a float).
    return "s.score + excluded.score", (
        "WHERE CASE WHEN excluded.score >= 0"
        f" THEN s.score <= {INT64_MAX} - excluded.score"
        f" ELSE s.score >= ({-INT64_MAX} - 1) - excluded.score END"
    )


_ROW_OF = """
    SELECT s.id, s.score, s.reached_at, s.version, p.public_id, p.display_name, p.avatar_url
    FROM ttminis_score s JOIN ttminis_player p ON p.open_id = s.player_id
    WHERE s.board = $1 AND s.period = $2 AND s.player_id = $3"""
_SHOWN_COLUMNS = """
    SELECT s.id, p.public_id, p.display_name, p.avatar_url
    FROM ttminis_score s JOIN ttminis_player p ON p.open_id = s.player_id"""
_SHOWN_POSTGRES = _SHOWN_COLUMNS + " WHERE s.id = ANY($1::bigint[])"
# One statement for any number of ids: SQLite reads the list as a JSON array.
_SHOWN_SQLITE = _SHOWN_COLUMNS + " WHERE s.id IN (SELECT value FROM json_each(?1))"
_WRITTEN_SINCE = """
    SELECT board, period, id, version, score, reached_at FROM ttminis_score
    WHERE updated_at >= $1"""


@dataclass(frozen=True, slots=True)
class _Statements:
    """Every statement for one dialect and one order, rendered once and cached."""

    upsert: dict[Operator, str]
    rank_of: str
    load_first: str
    load_next: str
    entry: str
    top: str
    around: str


def _upsert(operator: Operator, ranking: Ranking) -> str:
    # $1 board, $2 period, $3 open_id, $4 score, $5 now.
    new_score, condition = _update_rule(operator, ranking)
    return f"""
        INSERT INTO ttminis_score AS s (board, period, player_id, score, reached_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $5)
        ON CONFLICT (board, period, player_id) DO UPDATE SET
            score = {new_score},
            reached_at = CASE WHEN {new_score} = s.score
                THEN s.reached_at ELSE excluded.reached_at END,
            updated_at = excluded.updated_at,
            version = s.version + 1
        {condition}
        RETURNING id, score, reached_at, version,
            (SELECT public_id FROM ttminis_player WHERE open_id = $3) AS public_id,
            (SELECT display_name FROM ttminis_player WHERE open_id = $3) AS display_name,
            (SELECT avatar_url FROM ttminis_player WHERE open_id = $3) AS avatar_url"""


@cache
def _statements(dialect: Dialect, order: Order) -> _Statements:
    r = RANKINGS[order]
    sql = _Statements(
        upsert={
            "best": _upsert("best", r),
            "latest": _upsert("latest", r),
            "incr": _upsert("incr", r),
        },
        # $1 board, $2 period, $3 open_id, $4 score, $5 reached_at, $6 id: a row just written.
        # $1 board, $2 period, $3 score, $4 reached_at, $5 id: a row just written.
        rank_of=f"SELECT {r.count_ahead(_WRITTEN)} + 1",
        # $1 board, $2 period, $3 batch; then $4 score, $5 reached_at, $6 id: the last row read.
        load_first=f"""
            SELECT t.id, t.version, t.score, t.reached_at FROM ttminis_score t
            WHERE t.board = $1 AND t.period = $2
            ORDER BY {r.order_by("t")} LIMIT $3""",
        load_next=f"""
            SELECT t.id, t.version, t.score, t.reached_at FROM ttminis_score t
            WHERE t.board = $1 AND t.period = $2 AND {r.behind("t", _LAST)}
            ORDER BY {r.order_by("t")} LIMIT $3""",
        # $1 board, $2 period, $3 open_id.
        entry=f"""
            WITH {_ME_CTE}
            SELECT {r.count_ahead(_ME)} + 1,
                me.score, p.public_id, p.display_name, p.avatar_url
            FROM me JOIN ttminis_player p ON p.open_id = me.player_id""",
        # $1 board, $2 period, $3 limit. The inner query takes the top rows off the index
        # before joining, so the join touches exactly `limit` players.
        top=f"""
            SELECT s.score, p.public_id, p.display_name, p.avatar_url
            FROM (SELECT t.id, t.score, t.reached_at, t.player_id FROM ttminis_score t
                  WHERE t.board = $1 AND t.period = $2
                  ORDER BY {r.order_by("t")} LIMIT $3) s
            JOIN ttminis_player p ON p.open_id = s.player_id
            ORDER BY {r.order_by("s")}""",
        # $1 board, $2 period, $3 open_id, $4 radius. One statement, so the ranks and the rows
        # come from one snapshot: the rows just ahead (walked back from the player), the
        # player, the rows just behind; the first row's rank is the player's minus those ahead.
        around=f"""
            WITH {_ME_CTE},
            ahead AS (
                SELECT r.id, r.score, r.reached_at, r.player_id FROM ttminis_score r
                WHERE r.board = $1 AND r.period = $2 AND {r.ahead("r", _ME)}
                ORDER BY {r.reverse_order_by("r")} LIMIT $4),
            behind AS (
                SELECT r.id, r.score, r.reached_at, r.player_id FROM ttminis_score r
                WHERE r.board = $1 AND r.period = $2 AND {r.behind("r", _ME)}
                ORDER BY {r.order_by("r")} LIMIT $4),
            shown AS (
                SELECT id, score, reached_at, player_id FROM ahead
                UNION ALL SELECT id, score, reached_at, player_id FROM me
                UNION ALL SELECT id, score, reached_at, player_id FROM behind)
            SELECT {r.count_ahead(_ME)} - (SELECT COUNT(*) FROM ahead) + 1,
                s.score, p.public_id, p.display_name, p.avatar_url
            FROM shown s JOIN ttminis_player p ON p.open_id = s.player_id
            ORDER BY {r.order_by("s")}""",
    )
    return _Statements(
        upsert={op: _for_dialect(dialect, text) for op, text in sql.upsert.items()},
        rank_of=_for_dialect(dialect, sql.rank_of),
        load_first=_for_dialect(dialect, sql.load_first),
        load_next=_for_dialect(dialect, sql.load_next),
        entry=_for_dialect(dialect, sql.entry),
        top=_for_dialect(dialect, sql.top),
        around=_for_dialect(dialect, sql.around),
    )


def db_timestamp(dialect: Dialect, at: datetime) -> datetime | str:
    """``at`` as a ``reached_at`` parameter for the dialect (bulk loaders use it too).

    SQLite keeps timestamps as text and compares them as text: a fixed width (always the
    microseconds, always UTC) keeps that comparison chronological. Tortoise reads it back.
    A naive ``at`` is taken to be UTC.
    """
    at = at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if dialect == "postgres":
        return at
    return at.isoformat(" ", timespec="microseconds")


async def _rows(sql: str, values: list[Any]) -> Sequence[Any]:
    # Rows come back as sqlite3.Row or asyncpg.Record: both are indexed by position.
    return (await connection().execute_query(sql, values))[1]


class Written(NamedTuple):
    """A score row as an upsert left it, with its player's current profile."""

    id: int
    score: int
    reached_at: datetime
    version: int
    public_id: str
    display_name: str | None
    avatar_url: str | None


def reached_at(value: datetime | str) -> datetime:
    """A ``reached_at`` as the driver returns it (SQLite: the fixed-width text) as a datetime."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


async def write(
    dialect: Dialect,
    order: Order,
    operator: Operator,
    board: str,
    period: str,
    open_id: str,
    score: int,
    at: datetime,
) -> Written | None:
    """Apply one score in one atomic upsert; the row as written, ``None`` when nothing changed.

    ``best`` replaces only a better score, ``latest`` always replaces, ``incr`` adds. The
    stored ``reached_at`` becomes ``at`` only when the score changes, and every write moves the
    row's ``version`` on. When ``best`` keeps the stored score nothing is written.

    Raises :class:`UnknownPlayer` when no player has that ``open_id``, and
    :class:`ScoreRejected` when an increment would overflow 64 bits (nothing is written).
    """
    statements = _statements(dialect, order)
    try:
        # execute_query_dict: tortoise's PostgreSQL execute_query discards the rows of any
        # statement that starts with INSERT, RETURNING included.
        rows = await connection().execute_query_dict(
            statements.upsert[operator],
            [board, period, open_id, score, db_timestamp(dialect, at)],
        )
    except IntegrityError as exc:
        # The only constraint the upsert can break is the foreign key to the player.
        raise UnknownPlayer(f"No player has open_id {open_id!r}.") from exc
    if not rows:
        if operator == "incr":
            raise ScoreRejected(
                f"Adding {score} to the player's score on board {board!r} would overflow 64 bits."
            )
        return None
    row = rows[0]
    if row["public_id"] is None:  # the player was deleted while the row was written
        raise UnknownPlayer(f"No player has open_id {open_id!r}.")
    return Written(
        row["id"],
        row["score"],
        reached_at(row["reached_at"]),
        row["version"],
        row["public_id"],
        row["display_name"],
        row["avatar_url"],
    )


async def rank_of(dialect: Dialect, order: Order, board: str, period: str, row: Written) -> int:
    """The rank of a row just written, counted in the database (when no index can say)."""
    ranked = await _rows(
        _statements(dialect, order).rank_of,
        [board, period, row.score, db_timestamp(dialect, row.reached_at), row.id],
    )
    return int(ranked[0][0])


async def row_of(dialect: Dialect, board: str, period: str, open_id: str) -> Written | None:
    """The player's row in a board's period with their current profile, ``None`` without one."""
    rows = await _rows(_for_dialect(dialect, _ROW_OF), [board, period, open_id])
    if not rows:
        return None
    row = rows[0]
    return Written(row[0], row[1], reached_at(row[2]), row[3], row[4], row[5], row[6])


#: What a row shows on a board: (public_id, display_name, avatar_url).
Shown = tuple[str, str | None, str | None]


async def shown(dialect: Dialect, row_ids: Sequence[int]) -> dict[int, Shown]:
    """Each row's player as they are now, by row id; deleted rows are missing."""
    if not row_ids:
        return {}
    if dialect == "postgres":
        rows = await _rows(_SHOWN_POSTGRES, [list(row_ids)])
    else:
        rows = await _rows(_SHOWN_SQLITE, [json.dumps(list(row_ids))])
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


#: A row as a rank index loads it: (id, version, score, reached_at).
Indexed = tuple[int, int, int, datetime]


async def load(
    dialect: Dialect, order: Order, board: str, period: str, batch: int = 20_000
) -> AsyncIterator[list[Indexed]]:
    """Every row of a board's period, best first, ``batch`` rows a query.

    Each query starts behind the last row of the one before (keyset pagination on the
    board's index), so a million rows cost a hundred short range scans, not one long read.
    """
    statements = _statements(dialect, order)
    rows = await _rows(statements.load_first, [board, period, batch])
    while rows:
        loaded = [(row[0], row[1], row[2], reached_at(row[3])) for row in rows]
        yield loaded
        if len(rows) < batch:
            return
        last_id, _, last_score, last_reached = rows[-1]
        rows = await _rows(
            statements.load_next, [board, period, batch, last_score, last_reached, last_id]
        )


async def written_since(dialect: Dialect, since: datetime) -> list[tuple[str, str, Indexed]]:
    """The rows written at or after ``since``: (board, period, row), for an index's repair."""
    rows = await _rows(_for_dialect(dialect, _WRITTEN_SINCE), [db_timestamp(dialect, since)])
    return [(row[0], row[1], (row[2], row[3], row[4], reached_at(row[5]))) for row in rows]


async def top(
    dialect: Dialect, order: Order, board: str, period: str, limit: int, render: Render[T]
) -> list[T]:
    """The best ``limit`` entries of a board's period, best first, with current profiles."""
    rows = await _rows(_statements(dialect, order).top, [board, period, limit])
    return [render(rank, row[0], row[1], row[2], row[3]) for rank, row in enumerate(rows, 1)]


async def entry(
    dialect: Dialect, order: Order, board: str, period: str, open_id: str, render: Render[T]
) -> T | None:
    """The player's entry in a board's period, or ``None`` when it holds no score of theirs."""
    rows = await _rows(_statements(dialect, order).entry, [board, period, open_id])
    if not rows:
        return None
    rank, score, public_id, display_name, avatar_url = rows[0]
    return render(rank, score, public_id, display_name, avatar_url)


async def around(
    dialect: Dialect,
    order: Order,
    board: str,
    period: str,
    open_id: str,
    radius: int,
    render: Render[T],
) -> list[T]:
    """The entries ranked within ``radius`` of the player, best first; ``[]`` without a score."""
    rows = await _rows(_statements(dialect, order).around, [board, period, open_id, radius])
    if not rows:
        return []
    first = rows[0][0]
    return [
        render(first + offset, row[1], row[2], row[3], row[4]) for offset, row in enumerate(rows)
    ]
