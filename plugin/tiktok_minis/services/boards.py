"""Board definitions: what a leaderboard is (:class:`Board`) and the game's boards by name
(:class:`BoardRegistry`), with the check every submitted score passes (:func:`check_score`).

Periods are UTC: a ``daily`` board keeps one table per day (``2026-11-25``), ``weekly`` per ISO
week (``2026-W48``), ``monthly`` per month (``2026-11``), ``never`` one (``all``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from tiktok_minis.errors import ConfigurationError, ScoreRejected, UnknownBoard
from tiktok_minis.store.scores import Operator, Order
from tiktok_minis.support.int64 import INT64_MAX, INT64_MIN

__all__ = [
    "BOARD_NAME_PATTERN",
    "Board",
    "BoardRegistry",
    "Operator",
    "Order",
    "Reset",
    "ScoreValidator",
    "check_score",
]

Reset = Literal["never", "daily", "weekly", "monthly"]
#: ``(open_id, score) -> accept?``, sync or async; consulted for client-submitted scores only.
ScoreValidator = Callable[[str, int], bool | Awaitable[bool]]

#: The names a board may have (unanchored: matched whole with ``fullmatch``).
BOARD_NAME_PATTERN: Final = r"[a-z0-9_-]{1,64}"
_NAME = re.compile(BOARD_NAME_PATTERN)
_ORDERS: Final = ("desc", "asc")
_OPERATORS: Final = ("best", "latest", "incr")
_RESETS: Final = ("never", "daily", "weekly", "monthly")


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


def check_score(score: object) -> int:
    """``score`` if it is a signed 64-bit integer; :class:`ScoreRejected` otherwise.

    ``bool`` is refused although Python makes it an ``int``: ``True`` is never a score.
    """
    if isinstance(score, bool) or not isinstance(score, int):
        raise ScoreRejected(f"A score must be an integer, not {type(score).__name__}.")
    if not INT64_MIN <= score <= INT64_MAX:
        raise ScoreRejected("A score must fit in a signed 64-bit integer.")
    return score
