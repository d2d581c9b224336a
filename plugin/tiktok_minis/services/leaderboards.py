"""The leaderboard service: submit, top, entry, around, and the change feed.

It knows neither Socket.IO nor HTTP. A board is a :class:`~tiktok_minis.services.boards.Board`
defined once in a :class:`~tiktok_minis.services.boards.BoardRegistry`; :class:`Leaderboards`
writes scores (atomic upserts, see :mod:`tiktok_minis.store.scores`), reads ranked entries with
each player's *current* profile, and tells its listeners which board and period changed so the
realtime layer can push.

Scores go to the period the clock is in; past periods stay stored and are read with ``period=``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from tiktok_minis.errors import ScoreRejected, UnknownPlayer
from tiktok_minis.ranking import NoRankIndex, RankIndex, Row, row_id_of, score_of
from tiktok_minis.services.boards import (
    Board,
    BoardRegistry,
    Operator,
    Order,
    Reset,
    ScoreValidator,
    check_score,
)
from tiktok_minis.services.clock import Clock, utc_now
from tiktok_minis.services.profile import Placeholder
from tiktok_minis.services.rank_indexes import index_loader, index_sweep, row_key
from tiktok_minis.store import Store
from tiktok_minis.store.score_removals import Removal
from tiktok_minis.store.scores import BoardPeriod, ScoreWrite, Written
from tiktok_minis.support.concurrency import KeyedLock, TaskSet
from tiktok_minis.support.listeners import Listeners

if TYPE_CHECKING:
    pass

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

#: The most entries ``top`` and ``around`` return to server code (clients get ``live_size``).
MAX_LIMIT: Final = 1000


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


class Leaderboards:
    """Writes scores, reads ranked entries with current profiles, and announces changes.

    ``clock`` decides the current period (and when a player reached a score); tests pass one
    they control.
    """

    def __init__(
        self,
        boards: BoardRegistry,
        store: Store,
        placeholder: Placeholder,
        clock: Clock = utc_now,
        *,
        index: RankIndex | None = None,
    ) -> None:
        """``index`` holds the boards' order for O(log n) ranks (see :mod:`tiktok_minis.ranking`);
        without one, or while it loads, ranks are counted in the database."""
        self.boards = boards
        self._scores = store.scores
        self._placeholder = placeholder
        self._clock = clock
        self._index: RankIndex = index if index is not None else NoRankIndex()
        # One write of a player's board period at a time in this process, index update
        # included, so an in-process index sees the writes in the order they committed.
        self._writes: KeyedLock[tuple[str, str, str]] = KeyedLock()
        self._removals = TaskSet("score-removals")
        self._listeners: Listeners[BoardChange] = Listeners(log, "board")

    # -- the change feed ---------------------------------------------------------------------

    def subscribe(self, listener: BoardListener) -> Callable[[], None]:
        """Call ``listener`` after every change; the returned function unsubscribes it.

        Listeners run synchronously inside ``submit``: keep them cheap (schedule work, do not
        await it). One that raises is logged and does not affect ``submit`` or other listeners.
        """
        return self._listeners.subscribe(listener)

    def _emit(self, change: BoardChange) -> None:
        self._listeners.emit(change, {"board": change.board})

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
            await self._check_client_score(definition, open_id, score)
        now = self._clock()
        where = BoardPeriod(board, definition.period_key(now), definition.order)
        async with self._writes.hold((board, where.period, open_id)):
            written = await self._scores.write(
                ScoreWrite(where, definition.operator, open_id, score, now)
            )
            if written is not None:
                key = row_key(where.order, written.id, written.score, written.reached_at)
                await self._index.apply(
                    board, where.period, where.order, Row(written.id, written.version, key)
                )
        if written is None:  # a best that did not beat the stored score: nothing changed
            current = await self.entry(board, open_id, period=where.period)
            if current is None:  # the player was deleted meanwhile
                raise UnknownPlayer(f"No player has open_id {open_id!r}.")
            return current
        self._emit(BoardChange(board, where.period))
        return self.entry_of(
            await self._rank(where, written),
            written.score,
            written.public_id,
            written.display_name,
            written.avatar_url,
        )

    @staticmethod
    async def _check_client_score(definition: Board, open_id: str, score: int) -> None:
        """Refuse a client's score on a board that takes none, or that the validator refuses."""
        if not definition.client_scores:
            raise ScoreRejected(f"Board {definition.name!r} does not take scores from clients.")
        validator = definition.validator
        if validator is not None:
            verdict = validator(open_id, score)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if not verdict:
                raise ScoreRejected("The game refused this score.")

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
        where = self._where(definition, period)
        keys = await self._index.keys(board, where.period, where.order, 1, limit)
        if keys is None:
            return await self._scores.top(where, limit, self.entry_of)
        return await self._entries(where.order, keys, first_rank=1)

    async def entry(self, board: str, open_id: str, *, period: str | None = None) -> Entry | None:
        """The player's entry in ``period`` (default: the current one), ``None`` without a score."""
        where = self._where(self.boards.get(board), period)
        row = await self._scores.row_of(where, open_id)
        if row is None:
            return None
        rank = await self._rank(where, row)
        return self.entry_of(rank, row.score, row.public_id, row.display_name, row.avatar_url)

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
        where = self._where(self.boards.get(board), period)
        row = await self._scores.row_of(where, open_id)
        if row is None:
            return []
        key = row_key(where.order, row.id, row.score, row.reached_at)
        rank = await self._index.rank(board, where.period, where.order, key)
        keys = None
        if rank is not None:
            first = max(1, rank - radius)
            keys = await self._index.keys(board, where.period, where.order, first, rank + radius)
        if rank is None or keys is None:
            return await self._scores.around(where, open_id, radius, self.entry_of)
        return await self._entries(where.order, keys, first_rank=first)

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

    def _where(self, definition: Board, period: str | None) -> BoardPeriod:
        """The board's rows in ``period``, by default the one the clock is in."""
        if period is None:
            period = definition.period_key(self._clock())
        return BoardPeriod(definition.name, period, definition.order)

    async def _rank(self, where: BoardPeriod, row: Written) -> int:
        """The row's rank: from the index, or counted in the database while it cannot say."""
        key = row_key(where.order, row.id, row.score, row.reached_at)
        rank = await self._index.rank(where.board, where.period, where.order, key)
        if rank is None:
            rank = await self._scores.rank_of(where, row)
        return rank

    async def _entries(self, order: Order, keys: list[int], *, first_rank: int) -> list[Entry]:
        """The entries of consecutive index keys, with each player's current profile.

        A row the database no longer has (deleted a moment ago, its removal on the way) is
        left out.
        """
        shown = await self._scores.shown([row_id_of(key) for key in keys])
        entries = []
        for rank, key in enumerate(keys, first_rank):
            player = shown.get(row_id_of(key))
            if player is not None:
                entries.append(self.entry_of(rank, score_of(order, key), *player))
        return entries

    def entry_of(
        self,
        rank: int,
        score: int,
        public_id: str,
        display_name: str | None,
        avatar_url: str | None,
    ) -> Entry:
        """How this service shows a stored row at ``rank``: what the store's queries render
        with, and what a check of the counted answers compares against."""
        # The name and avatar come from the player's row as it is now, never from the score.
        shown = self._placeholder.show(display_name, avatar_url)
        return Entry(
            rank,
            score,
            EntryPlayer(public_id, shown.display_name, shown.avatar_url, shown.placeholder),
        )
