"""The wire shapes of PROTOCOL.md: one pydantic model per client event, and the serialisers.

Validation is strict: a bool or a float where an int belongs, a number beyond 64 bits, an empty
or over-long string, or a missing field is ``invalid_payload``. Unknown extra fields are ignored,
so newer clients keep working with this server.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from tiktok_minis.errors import InvalidPayload
from tiktok_minis.services.boards import BOARD_NAME_PATTERN
from tiktok_minis.services.leaderboards import Entry
from tiktok_minis.services.players import Player
from tiktok_minis.support.int64 import INT64_MAX, INT64_MIN

__all__ = [
    "Ack",
    "AroundPayload",
    "AuthorizePayload",
    "BoardPayload",
    "EmptyPayload",
    "LoginPayload",
    "LogoutPayload",
    "SubmitPayload",
    "entry_to_wire",
    "parse",
    "player_to_wire",
]

#: An event's answer: ``{"ok": true, ...}`` or ``{"ok": false, "error": {...}}``.
Ack = dict[str, Any]

# TikTok does not document a code length; real codes are well under this bound.
Code = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
# The names ``Board`` accepts. Pydantic searches, hence the anchors; ``invalid_payload`` quotes
# the anchored form.
BoardName = Annotated[str, StringConstraints(pattern=f"^{BOARD_NAME_PATTERN}$")]
Score = Annotated[int, Field(strict=True, ge=INT64_MIN, le=INT64_MAX)]


class _Payload(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


P = TypeVar("P", bound=_Payload)


class EmptyPayload(_Payload):
    """Events that take no fields (``tiktok:me``)."""


class LogoutPayload(_Payload):
    """``tiktok:logout``: end this connection's session, or with ``everywhere`` all of them."""

    everywhere: bool = False


class LoginPayload(_Payload):
    """``tiktok:login``: the code from ``TTMinis.game.login``."""

    code: Code


class AuthorizePayload(_Payload):
    """``tiktok:authorize``: the outcome of ``TTMinis.game.authorize``, with its code if any."""

    granted: bool
    code: Code | None = None


class BoardPayload(_Payload):
    """``leaderboard:join`` and ``leaderboard:leave``."""

    board: BoardName


class SubmitPayload(_Payload):
    """``leaderboard:submit``: a signed 64-bit score."""

    board: BoardName
    score: Score


class AroundPayload(_Payload):
    """``leaderboard:around``: entries within ``radius`` ranks of the caller."""

    board: BoardName
    radius: Annotated[int, Field(strict=True, ge=1, le=50)] = 5


def parse(model: type[P], data: Any) -> P:
    """The payload as ``model``; :class:`InvalidPayload` naming the first bad field otherwise."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidPayload(f"The payload must be a JSON object, not {type(data).__name__}.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise InvalidPayload(f"{where}: {first['msg']}") from None


def player_to_wire(player: Player) -> dict[str, Any]:
    """The ``Player`` shape, ``open_id`` included: for that player's own connections only (the
    acks of their own login, authorize and ``tiktok:me``, and ``player:update`` to their room)."""
    return {
        "id": player.id,
        "open_id": player.open_id,
        "display_name": player.display_name,
        "avatar_url": player.avatar_url,
        "placeholder": player.placeholder,
        "consent": player.consent.value,
    }


def entry_to_wire(entry: Entry) -> dict[str, Any]:
    """The ``Entry`` shape: what every client may see, so the public ``id`` and no ``open_id``."""
    player = entry.player
    return {
        "rank": entry.rank,
        "score": entry.score,
        "player": {
            "id": player.id,
            "display_name": player.display_name,
            "avatar_url": player.avatar_url,
            "placeholder": player.placeholder,
        },
    }
