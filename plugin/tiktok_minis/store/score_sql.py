"""The score statements: the SQL :mod:`tiktok_minis.store.scores` runs, built once per dialect.

The statements are raw SQL because the rules need what the ORM cannot say in one statement:
an atomic ``INSERT ... ON CONFLICT ... DO UPDATE ... RETURNING`` whose update depends on the
board's operator and order (so concurrent submits of one player never race), and ranks counted
with the tie-breaks. Each statement is written once, with PostgreSQL's ``$n`` placeholders, and
rendered for SQLite by :func:`~tiktok_minis.store.database.for_dialect`.

Ranking order is defined once, in :class:`Ranking`; ``top``, ``entry``, ``around``, ``rank_of``
and ``load`` all build on it (and ``tiktok_minis.ranking.keys`` encodes the same order). Rows
carry no names: each statement joins the current ``ttminis_player`` row.
"""

# The statements are f-strings assembled once from fixed fragments of this module (never from
# input); every value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Final, Literal, NamedTuple

from tiktok_minis.store.database import Dialect, for_dialect
from tiktok_minis.support.int64 import INT64_MAX

__all__ = [
    "RANKINGS",
    "ROW_OF",
    "SHOWN_POSTGRES",
    "SHOWN_SQLITE",
    "WRITTEN_SINCE",
    "Operator",
    "Order",
    "Position",
    "Ranking",
    "Statements",
    "statements",
]

Order = Literal["desc", "asc"]
Operator = Literal["best", "latest", "incr"]

#: The bounds of a score: a signed 64-bit integer (PostgreSQL ``BIGINT``, SQLite ``INTEGER``).
_OPERATORS: Final[tuple[Operator, ...]] = ("best", "latest", "incr")


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

#: $1 board, $2 period, $3 open_id: the player's row with their current profile.
ROW_OF = """
    SELECT s.id, s.score, s.reached_at, s.version, p.public_id, p.display_name, p.avatar_url
    FROM ttminis_score s JOIN ttminis_player p ON p.open_id = s.player_id
    WHERE s.board = $1 AND s.period = $2 AND s.player_id = $3"""
_SHOWN_COLUMNS = """
    SELECT s.id, p.public_id, p.display_name, p.avatar_url
    FROM ttminis_score s JOIN ttminis_player p ON p.open_id = s.player_id"""
#: $1 the row ids, as an array: each row's player as they are now.
SHOWN_POSTGRES = _SHOWN_COLUMNS + " WHERE s.id = ANY($1::bigint[])"
#: The same on SQLite: one statement for any number of ids, read as a JSON array.
SHOWN_SQLITE = _SHOWN_COLUMNS + " WHERE s.id IN (SELECT value FROM json_each(?1))"
#: $1 a time: the rows written at or after it.
WRITTEN_SINCE = """
    SELECT board, period, id, version, score, reached_at FROM ttminis_score
    WHERE updated_at >= $1"""


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


def _load(r: Ranking, after: Position | None) -> str:
    # $1 board, $2 period, $3 batch; then $4 score, $5 reached_at, $6 id: the last row read.
    behind = f" AND {r.behind('t', after)}" if after is not None else ""
    return f"""
            SELECT t.id, t.version, t.score, t.reached_at FROM ttminis_score t
            WHERE t.board = $1 AND t.period = $2{behind}
            ORDER BY {r.order_by("t")} LIMIT $3"""


def _entry(r: Ranking) -> str:
    # $1 board, $2 period, $3 open_id.
    return f"""
            WITH {_ME_CTE}
            SELECT {r.count_ahead(_ME)} + 1,
                me.score, p.public_id, p.display_name, p.avatar_url
            FROM me JOIN ttminis_player p ON p.open_id = me.player_id"""


def _top(r: Ranking) -> str:
    # $1 board, $2 period, $3 limit. The inner query takes the top rows off the index
    # before joining, so the join touches exactly `limit` players.
    return f"""
            SELECT s.score, p.public_id, p.display_name, p.avatar_url
            FROM (SELECT t.id, t.score, t.reached_at, t.player_id FROM ttminis_score t
                  WHERE t.board = $1 AND t.period = $2
                  ORDER BY {r.order_by("t")} LIMIT $3) s
            JOIN ttminis_player p ON p.open_id = s.player_id
            ORDER BY {r.order_by("s")}"""


def _around(r: Ranking) -> str:
    # $1 board, $2 period, $3 open_id, $4 radius. One statement, so the ranks and the rows
    # come from one snapshot: the rows just ahead (walked back from the player), the
    # player, the rows just behind; the first row's rank is the player's minus those ahead.
    return f"""
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
            ORDER BY {r.order_by("s")}"""


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement for one dialect and one order, rendered once and cached."""

    upsert: dict[Operator, str]
    rank_of: str
    load_first: str
    load_next: str
    entry: str
    top: str
    around: str


@cache
def statements(dialect: Dialect, order: Order) -> Statements:
    """The statements for boards of ``order``, in ``dialect``'s placeholders."""
    r = RANKINGS[order]
    return Statements(
        upsert={op: for_dialect(dialect, _upsert(op, r)) for op in _OPERATORS},
        # $1 board, $2 period, $3 score, $4 reached_at, $5 id: a row just written.
        rank_of=for_dialect(dialect, f"SELECT {r.count_ahead(_WRITTEN)} + 1"),
        load_first=for_dialect(dialect, _load(r, None)),
        load_next=for_dialect(dialect, _load(r, _LAST)),
        entry=for_dialect(dialect, _entry(r)),
        top=for_dialect(dialect, _top(r)),
        around=for_dialect(dialect, _around(r)),
    )
