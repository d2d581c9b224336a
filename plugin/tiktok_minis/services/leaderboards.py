"""The leaderboard service: boards, submit, top, entry, around, and the change feed.

It knows neither Socket.IO nor HTTP. A board is a :class:`Board` defined once in a
:class:`BoardRegistry`; :class:`Leaderboards` writes scores (atomic upserts, see
:mod:`tiktok_minis.store.scores`), reads ranked entries with each player's *current* profile,
and tells its listeners which board and period changed so the realtime layer can push.

Periods are UTC: a ``daily`` board keeps one table per day (``2026-11-25``), ``weekly`` per ISO
week (``2026-W48``), ``monthly`` per month (``2026-11``), ``never`` one (``all``). Scores go to
the period the clock is in; past periods stay stored and are read with ``period=``.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal

from tiktok_minis.errors import ConfigurationError, ScoreRejected, UnknownBoard, UnknownPlayer
from tiktok_minis.ranking import (
    Loader,
    NoRankIndex,
    RankIndex,
    Row,
    rank_key,
    row_id_of,
    score_of,
)
from tiktok_minis.ranking.keys import micros
from tiktok_minis.services.profile import Placeholder
from tiktok_minis.store import scores as store
from tiktok_minis.store.database import Database, Dialect
from tiktok_minis.store.score_removals import Removal
from tiktok_minis.store.scores import INT64_MAX, INT64_MIN, Operator, Order
from tiktok_minis.support.concurrency import KeyedLock, TaskSet

if TYPE_CHECKING:
    from tiktok_minis.ranking.redis import Sweep

__all__ = [
    "MAX_LIMIT",
    "Board",
    "BoardChange",
    "BoardListener",
    "BoardRegistry",
    "Entry",
    "EntryPlayer",
    "Leaderboards",
    "Operator",
    "Order",
    "Reset",
    "ScoreValidator",
    "check_score",
    "index_loader",
    "index_sweep",
]

log = logging.getLogger("tiktok_minis.leaderboards")

Reset = Literal["never", "daily", "weekly", "monthly"]
#: ``(open_id, score) -> accept?``, sync or async; consulted for client-submitted scores only.
ScoreValidator = Callable[[str, int], bool | Awaitable[bool]]

#: The most entries ``top`` and ``around`` return to server code (clients get ``live_size``).
MAX_LIMIT: Final = 1000

_NAME = re.compile(r"[a-z0-9_-]{1,64}")
_ORDERS: Final = ("desc", "asc")
_OPERATORS: Final = ("best", "latest", "incr")
_RESETS: Final = ("never", "daily", "weekly", "monthly")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _key(order: Order, row_id: int, score: int, reached_at: datetime) -> int:
    return rank_key(order, score, micros(reached_at), row_id)


@dataclass(frozen=True, slots=True)
class Board:
    """A leaderboard's definition.

    ``order``: ``desc`` ranks the highest score first, ``asc`` the lowest (a race time).
    ``operator``: ``best`` keeps the player's best, ``latest`` the last, ``incr`` adds.
    ``live_size``: how many top entries ``join`` and ``update`` carry (1 to 100).
    ``reset``: ``never``, ``daily``, ``weekly`` (ISO weeks) or ``monthly``, in UTC.
    ``client_scores``: whether clients may submit through ``leaderboard:submit``.
    ``validator``: ``(open_id, score) -> bool`` (or an awaitable of it), asked about
    client-submitted scores only; the game's server code is trusted.
    """

    name: str
    order: Order = "desc"
    operator: Operator = "best"
    live_size: int = 10
    reset: Reset = "never"
    client_scores: bool = False
    validator: ScoreValidator | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigurationError(
                f"Board name {self.name!r} is invalid: use 1 to 64 characters among lowercase "
                "letters, digits, '_' and '-'."
            )
        if self.order not in _ORDERS:
            raise ConfigurationError(
                f"Board {self.name!r}: order must be 'desc' or 'asc', not {self.order!r}."
            )
        if self.operator not in _OPERATORS:
            raise ConfigurationError(
                f"Board {self.name!r}: operator must be 'best', 'latest' or 'incr', "
                f"not {self.operator!r}."
            )
        if (
            isinstance(self.live_size, bool)
            or not isinstance(self.live_size, int)
            or not 1 <= self.live_size <= 100
        ):
            raise ConfigurationError(
                f"Board {self.name!r}: live_size must be an integer from 1 to 100, "
                f"not {self.live_size!r}."
            )
        if self.reset not in _RESETS:
            raise ConfigurationError(
                f"Board {self.name!r}: reset must be 'never', 'daily', 'weekly' or 'monthly', "
                f"not {self.reset!r}."
            )
        if not isinstance(self.client_scores, bool):
            raise ConfigurationError(
                f"Board {self.name!r}: client_scores must be True or False, "
                f"not {self.client_scores!r}."
            )
        if self.validator is not None and not callable(self.validator):
            raise ConfigurationError(
                f"Board {self.name!r}: validator must be a function (open_id, score) -> bool."
            )

    def period_key(self, at: datetime) -> str:
        """The period ``at`` falls in: ``all``, ``2026-11-25``, ``2026-W48`` or ``2026-11``.

        ``at`` is converted to UTC; a naive datetime is taken to be UTC already.
        """
        if self.reset == "never":
            return "all"
        at = at.astimezone(UTC) if at.tzinfo is not None else at
        if self.reset == "daily":
            return f"{at.year:04d}-{at.month:02d}-{at.day:02d}"
        if self.reset == "weekly":
            # The ISO year, not the calendar year: 2026-12-31 is in 2026-W53, 2027-01-01 too.
            year, week, _ = at.isocalendar()
            return f"{year:04d}-W{week:02d}"
        return f"{at.year:04d}-{at.month:02d}"


class BoardRegistry:
    """The boards a game defines, by name.

    Redefinition policy: defining a name again with an equal :class:`Board` is harmless and
    returns the stored one; defining it with a different board raises
    :class:`ConfigurationError`, since two parts of a game disagreeing about a board is a bug
    that silently replacing would hide. (Boards with a validator are equal only when they hold
    the same function object.)
    """

    def __init__(self) -> None:
        self._boards: dict[str, Board] = {}

    def define(self, board: Board) -> Board:
        """Add ``board``; return the board now stored under its name."""
        if not isinstance(board, Board):
            raise ConfigurationError(f"define() takes a Board, not {type(board).__name__}.")
        existing = self._boards.get(board.name)
        if existing is None:
            self._boards[board.name] = board
            return board
        if existing == board:
            return existing
        raise ConfigurationError(
            f"Board {board.name!r} is already defined differently ({existing!r}); "
            "define each board once."
        )

    def get(self, name: str) -> Board:
        """The board named ``name``; :class:`UnknownBoard` when there is none."""
        board = self._boards.get(name)
        if board is None:
            raise UnknownBoard(f"No leaderboard is named {name!r}.")
        return board

    def __iter__(self) -> Iterator[Board]:
        """The defined boards, in the order they were defined."""
        return iter(tuple(self._boards.values()))

    def __contains__(self, name: object) -> bool:
        """Whether a board of that name is defined."""
        return name in self._boards

    def __len__(self) -> int:
        """How many boards are defined."""
        return len(self._boards)


@dataclass(frozen=True, slots=True)
class EntryPlayer:
    """A player as every client may see them on a board: ``id`` is the public id."""

    id: str
    display_name: str
    avatar_url: str
    placeholder: bool


@dataclass(frozen=True, slots=True)
class Entry:
    """One ranked line of a board (ranks start at 1)."""

    rank: int
    score: int
    player: EntryPlayer


@dataclass(frozen=True, slots=True)
class BoardChange:
    """What the change feed says: this board's period may show something new."""

    board: str
    period: str


BoardListener = Callable[[BoardChange], None]


def check_score(score: object) -> int:
    """``score`` if it is a signed 64-bit integer; :class:`ScoreRejected` otherwise.

    ``bool`` is refused although Python makes it an ``int``: ``True`` is never a score.
    """
    if isinstance(score, bool) or not isinstance(score, int):
        raise ScoreRejected(f"A score must be an integer, not {type(score).__name__}.")
    if not INT64_MIN <= score <= INT64_MAX:
        raise ScoreRejected("A score must fit in a signed 64-bit integer.")
    return score


def index_loader(database: Database) -> Loader:
    """A rank index's :data:`~tiktok_minis.ranking.Loader`: a board period's rows from
    ``database``, best first, with their keys."""

    async def load(board: str, period: str, order: Order) -> AsyncIterator[list[Row]]:
        async for batch in store.load(database.dialect, order, board, period):
            yield [
                Row(row_id, version, _key(order, row_id, score, reached))
                for row_id, version, score, reached in batch
            ]

    return load


def index_sweep(database: Database, boards: BoardRegistry) -> Sweep:
    """A shared rank index's repair: the rows written since a time, with their keys, for the
    boards the game defines (it re-applies them; the versions make that harmless)."""

    async def sweep(since: datetime) -> AsyncIterator[list[tuple[str, str, Order, Row]]]:
        rows = []
        for board, period, (row_id, version, score, reached) in await store.written_since(
            database.dialect, since
        ):
            if board in boards:
                order = boards.get(board).order
                rows.append(
                    (
                        board,
                        period,
                        order,
                        Row(row_id, version, _key(order, row_id, score, reached)),
                    )
                )
        yield rows

    return sweep


class Leaderboards:
    """Writes scores, reads ranked entries with current profiles, and announces changes.

    ``clock`` decides the current period (and when a player reached a score); tests pass one
    they control.
    """

    def __init__(
        self,
        boards: BoardRegistry,
        database: Database,
        placeholder: Placeholder,
        clock: Callable[[], datetime] = _utc_now,
        *,
        index: RankIndex | None = None,
    ) -> None:
        """``index`` holds the boards' order for O(log n) ranks (see :mod:`tiktok_minis.ranking`);
        without one, or while it loads, ranks are counted in the database."""
        self.boards = boards
        self._database = database
        self._placeholder = placeholder
        self._clock = clock
        self._index: RankIndex = index if index is not None else NoRankIndex()
        # One write of a player's board period at a time in this process, index update
        # included, so an in-process index sees the writes in the order they committed.
        self._writes: KeyedLock[tuple[str, str, str]] = KeyedLock()
        self._removals = TaskSet("score-removals")
        # A tuple, replaced on (un)subscribe: emitting iterates it without copying, and a
        # listener that unsubscribes while being called does not disturb the iteration.
        self._listeners: tuple[BoardListener, ...] = ()

    # -- the change feed ---------------------------------------------------------------------

    def subscribe(self, listener: BoardListener) -> Callable[[], None]:
        """Call ``listener`` after every change; the returned function unsubscribes it.

        Listeners run synchronously inside ``submit``: keep them cheap (schedule work, do not
        await it). One that raises is logged and does not affect ``submit`` or other listeners.
        """
        self._listeners = (*self._listeners, listener)
        subscribed = True

        def unsubscribe() -> None:
            # One-shot, so that calling it twice cannot remove another subscription of the
            # same listener.
            nonlocal subscribed
            if subscribed:
                subscribed = False
                listeners = list(self._listeners)
                listeners.remove(listener)
                self._listeners = tuple(listeners)

        return unsubscribe

    def _emit(self, change: BoardChange) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:
                log.exception(
                    "board listener failed",
                    extra={"event": "listener_failed", "board": change.board},
                )

    # -- writing -----------------------------------------------------------------------------

    async def submit(
        self, open_id: str, board: str, score: int, *, from_client: bool = False
    ) -> Entry:
        """Apply ``score`` to the player's entry on ``board`` (current period); the entry after.

        The write is one atomic upsert, done before this returns. Listeners hear of it when the
        stored entry changed (a ``best`` that does not beat the stored score changes nothing and
        announces nothing; the entry returned is then the stored one).

        Raises :class:`UnknownBoard`, :class:`UnknownPlayer` (no such ``open_id``), and
        :class:`ScoreRejected` for a score that is not a 64-bit integer, an increment that would
        overflow, or (``from_client=True``) a board without client scores or a validator that
        refuses.
        """
        definition = self.boards.get(board)
        check_score(score)
        if from_client:
            if not definition.client_scores:
                raise ScoreRejected(f"Board {board!r} does not take scores from clients.")
            validator = definition.validator
            if validator is not None:
                verdict = validator(open_id, score)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
                if not verdict:
                    raise ScoreRejected("The game refused this score.")
        now = self._clock()
        period = definition.period_key(now)
        dialect, order = self._database.dialect, definition.order
        async with self._writes.hold((board, period, open_id)):
            written = await store.write(
                dialect, order, definition.operator, board, period, open_id, score, now
            )
            if written is not None:
                key = _key(order, written.id, written.score, written.reached_at)
                await self._index.apply(board, period, order, Row(written.id, written.version, key))
        if written is None:  # a best that did not beat the stored score: nothing changed
            current = await self.entry(board, open_id, period=period)
            if current is None:  # the player was deleted meanwhile
                raise UnknownPlayer(f"No player has open_id {open_id!r}.")
            return current
        self._emit(BoardChange(board, period))
        return self._entry(
            await self._rank(dialect, order, board, period, written),
            written.score,
            written.public_id,
            written.display_name,
            written.avatar_url,
        )

    # -- reading -----------------------------------------------------------------------------

    def period(self, board: str) -> str:
        """The key of the board's current period (``all`` for boards that never reset)."""
        return self.boards.get(board).period_key(self._clock())

    async def top(
        self, board: str, limit: int | None = None, *, period: str | None = None
    ) -> list[Entry]:
        """The best entries, best first: ``limit`` of them (default: the board's ``live_size``,
        at most :data:`MAX_LIMIT`), in ``period`` (default: the current one)."""
        definition = self.boards.get(board)
        if limit is None:
            limit = definition.live_size
        elif not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be from 1 to {MAX_LIMIT}, not {limit}")
        period = period if period is not None else definition.period_key(self._clock())
        dialect, order = self._database.dialect, definition.order
        keys = await self._index.keys(board, period, order, 1, limit)
        if keys is None:
            return await store.top(dialect, order, board, period, limit, self._entry)
        return await self._entries(order, keys, first_rank=1)

    async def entry(self, board: str, open_id: str, *, period: str | None = None) -> Entry | None:
        """The player's entry in ``period`` (default: the current one), ``None`` without a score."""
        definition = self.boards.get(board)
        period = period if period is not None else definition.period_key(self._clock())
        dialect = self._database.dialect
        row = await store.row_of(dialect, board, period, open_id)
        if row is None:
            return None
        rank = await self._rank(dialect, definition.order, board, period, row)
        return self._entry(rank, row.score, row.public_id, row.display_name, row.avatar_url)

    async def around(
        self, board: str, open_id: str, radius: int = 5, *, period: str | None = None
    ) -> list[Entry]:
        """The entries ranked from the player's rank - ``radius`` to rank + ``radius``, best first.

        Near the top or bottom of the board the list is simply shorter. ``[]`` when the player
        has no score in ``period`` (default: the current one). ``radius`` is 0 to
        :data:`MAX_LIMIT`.
        """
        if not 0 <= radius <= MAX_LIMIT:
            raise ValueError(f"radius must be from 0 to {MAX_LIMIT}, not {radius}")
        definition = self.boards.get(board)
        period = period if period is not None else definition.period_key(self._clock())
        dialect, order = self._database.dialect, definition.order
        row = await store.row_of(dialect, board, period, open_id)
        if row is None:
            return []
        key = _key(order, row.id, row.score, row.reached_at)
        rank = await self._index.rank(board, period, order, key)
        keys = None
        if rank is not None:
            first = max(1, rank - radius)
            keys = await self._index.keys(board, period, order, first, rank + radius)
        if rank is None or keys is None:
            return await store.around(dialect, order, board, period, open_id, radius, self._entry)
        return await self._entries(order, keys, first_rank=first)

    def announce_all(self) -> None:
        """Announce every board's current period (after a player vanished from all of them)."""
        now = self._clock()
        for definition in self.boards:
            self._emit(BoardChange(definition.name, definition.period_key(now)))

    async def notify_profile_changed(self, open_id: str) -> None:
        """Announce every board whose current top ``live_size`` shows this player.

        Called when a player's name or avatar changed, so the boards showing them are pushed
        again. Each check counts no further than ``live_size`` rows.
        """
        now = self._clock()
        for definition in self.boards:
            period = definition.period_key(now)
            shown = await self.entry(definition.name, open_id, period=period)
            if shown is not None and shown.rank <= definition.live_size:
                self._emit(BoardChange(definition.name, period))

    async def close(self) -> None:
        """Finish nothing more: index removals still queued are dropped (the index is closed
        with them). Closing twice is harmless; the service works again after it."""
        await self._removals.close()
        self._removals = TaskSet("score-removals")

    def scores_removed(self, removals: list[Removal]) -> None:
        """A feed listener: score rows were deleted (a forgotten player's), on any process."""
        self._removals.spawn(self.remove_scores(removals))

    async def remove_scores(self, removals: list[Removal]) -> None:
        """Drop deleted score rows from the rank index and push the boards they were on."""
        by_period: dict[tuple[str, str], list[int]] = {}
        for removal in removals:
            by_period.setdefault((removal.board, removal.period), []).append(removal.row_id)
        for (board, period), row_ids in by_period.items():
            await self._index.remove(board, period, row_ids)
            if board in self.boards:
                self._emit(BoardChange(board, period))

    # -- ranks and rendering -----------------------------------------------------------------

    async def _rank(
        self, dialect: Dialect, order: Order, board: str, period: str, row: store.Written
    ) -> int:
        """The row's rank: from the index, or counted in the database while it cannot say."""
        key = _key(order, row.id, row.score, row.reached_at)
        rank = await self._index.rank(board, period, order, key)
        if rank is None:
            rank = await store.rank_of(dialect, order, board, period, row)
        return rank

    async def _entries(self, order: Order, keys: list[int], *, first_rank: int) -> list[Entry]:
        """The entries of consecutive index keys, with each player's current profile.

        A row the database no longer has (deleted a moment ago, its removal on the way) is
        left out.
        """
        shown = await store.shown(self._database.dialect, [row_id_of(key) for key in keys])
        entries = []
        for rank, key in enumerate(keys, first_rank):
            player = shown.get(row_id_of(key))
            if player is not None:
                entries.append(self._entry(rank, score_of(order, key), *player))
        return entries

    def _entry(
        self,
        rank: int,
        score: int,
        public_id: str,
        display_name: str | None,
        avatar_url: str | None,
    ) -> Entry:
        # The name and avatar come from the player's row as it is now, never from the score.
        shown = self._placeholder.show(display_name, avatar_url)
        return Entry(
            rank,
            score,
            EntryPlayer(public_id, shown.display_name, shown.avatar_url, shown.placeholder),
        )
