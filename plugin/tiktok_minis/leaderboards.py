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
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from tiktok_minis.errors import ConfigurationError, ScoreRejected, UnknownBoard
from tiktok_minis.profile import Placeholder
from tiktok_minis.store import scores as store
from tiktok_minis.store.database import Database
from tiktok_minis.store.scores import INT64_MAX, INT64_MIN, Operator, Order

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
    ) -> None:
        self.boards = boards
        self._database = database
        self._placeholder = placeholder
        self._clock = clock
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
        result, changed = await store.submit(
            self._database.dialect,
            definition.order,
            definition.operator,
            board,
            period,
            open_id,
            score,
            now,
            self._entry,
        )
        if changed:
            self._emit(BoardChange(board, period))
        return result

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
        return await store.top(
            self._database.dialect,
            definition.order,
            board,
            period if period is not None else definition.period_key(self._clock()),
            limit,
            self._entry,
        )

    async def entry(self, board: str, open_id: str, *, period: str | None = None) -> Entry | None:
        """The player's entry in ``period`` (default: the current one), ``None`` without a score."""
        definition = self.boards.get(board)
        return await store.entry(
            self._database.dialect,
            definition.order,
            board,
            period if period is not None else definition.period_key(self._clock()),
            open_id,
            self._entry,
        )

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
        return await store.around(
            self._database.dialect,
            definition.order,
            board,
            period if period is not None else definition.period_key(self._clock()),
            open_id,
            radius,
            self._entry,
        )

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
        dialect = self._database.dialect
        for definition in self.boards:
            period = definition.period_key(now)
            if await store.within_top(
                dialect, definition.order, definition.name, period, open_id, definition.live_size
            ):
                self._emit(BoardChange(definition.name, period))

    # -- rendering ---------------------------------------------------------------------------

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
