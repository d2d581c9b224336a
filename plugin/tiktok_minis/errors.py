"""The plugin's one error hierarchy.

Every error a game, a client or an operator can meet is a :class:`MinisError`. Each class carries
a stable ``code``: the wire code that the realtime layer puts into a failed ack (see PROTOCOL.md).
Only the realtime layer turns errors into acks; services and the TikTok client raise them::

    MinisError                      internal_error
    ├── ConfigurationError          internal_error  (a setting is missing or malformed)
    ├── InvalidPayload              invalid_payload
    ├── NotLoggedIn                 not_logged_in
    ├── LoginFailed                 login_failed
    ├── NotAuthorized               not_authorized
    ├── TokenExpired                not_authorized  (normally handled by refreshing; see players)
    ├── UpstreamUnavailable         upstream_unavailable
    ├── UpstreamRejected            internal_error  (TikTok refused our request: a config or bug)
    ├── StorageUnavailable          storage_unavailable
    ├── UnknownBoard                unknown_board
    ├── UnknownPlayer               internal_error  (the Python API named an open_id never seen)
    ├── ScoreRejected               score_rejected
    ├── RateLimited                 rate_limited
    └── InternalError               internal_error
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    # Only for the annotation: services.players imports this module.
    from tiktok_minis.services.players import Player

__all__ = [
    "ConfigurationError",
    "InternalError",
    "InvalidPayload",
    "LoginFailed",
    "MinisError",
    "NotAuthorized",
    "NotLoggedIn",
    "RateLimited",
    "ScoreRejected",
    "StorageUnavailable",
    "TokenExpired",
    "UnknownBoard",
    "UnknownPlayer",
    "UpstreamRejected",
    "UpstreamUnavailable",
]


class MinisError(Exception):
    """Base of every error the plugin raises on purpose.

    ``code`` is the wire code; ``message`` is safe to show a player (it never holds a token or a
    secret). ``log_id`` is TikTok's log id when TikTok's answer caused the error: support asks
    for it, so it is logged, never sent to clients.
    """

    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Something went wrong on the server."

    def __init__(self, message: str | None = None, *, log_id: str | None = None) -> None:
        self.message = message or self.default_message
        self.log_id = log_id
        super().__init__(self.message)


class ConfigurationError(MinisError, ValueError):
    """A setting is missing or malformed; the message says what to fix."""

    default_message = "The plugin is misconfigured."


class InvalidPayload(MinisError):
    """An event's payload is not of the documented shape."""

    code = "invalid_payload"
    default_message = "The payload is not of the documented shape."


class NotLoggedIn(MinisError):
    """The event needs a logged-in connection."""

    code = "not_logged_in"
    default_message = "Log in first (tiktok:login)."


class LoginFailed(MinisError):
    """TikTok rejected a code (unknown, expired, used) or it belongs to another player."""

    code = "login_failed"
    default_message = "TikTok rejected the code; get a new code and try again."


class NotAuthorized(MinisError):
    """TikTok says the user has not granted the scope; the placeholder stays.

    ``player`` is the player as stored after the refusal, when the service knows it, so the
    realtime layer can answer with the placeholder.
    """

    code = "not_authorized"
    default_message = "The player has not granted access to their profile."

    def __init__(
        self,
        message: str | None = None,
        *,
        log_id: str | None = None,
        player: Player | None = None,
    ) -> None:
        super().__init__(message, log_id=log_id)
        self.player = player


class TokenExpired(MinisError):
    """TikTok refused an access token as invalid or expired (``access_token_invalid``)."""

    code = "not_authorized"
    default_message = "The player's TikTok access has expired."


class UpstreamUnavailable(MinisError):
    """TikTok did not answer successfully within the retry budget; nothing was lost."""

    code = "upstream_unavailable"
    default_message = "TikTok is not answering right now; nothing was lost, try again later."


class UpstreamRejected(MinisError):
    """TikTok refused the request itself (bad credentials, bad parameters): a server-side fault."""

    default_message = "TikTok refused the server's request."

    def __init__(
        self, message: str | None = None, *, log_id: str | None = None, error: str = ""
    ) -> None:
        super().__init__(message, log_id=log_id)
        self.error = error


class StorageUnavailable(MinisError):
    """The game's database did not answer (restarting, unreachable, pool exhausted)."""

    code = "storage_unavailable"
    default_message = "The server's database is not answering right now; retry in a moment."


class UnknownBoard(MinisError):
    """No leaderboard of that name is defined."""

    code = "unknown_board"
    default_message = "No such leaderboard."


class UnknownPlayer(MinisError, LookupError):
    """The game's server code named an ``open_id`` that never logged in."""

    default_message = "No such player."


class ScoreRejected(MinisError):
    """Client scores are off for this board, the validator refused the score, or it overflows."""

    code = "score_rejected"
    default_message = "The score was not accepted."


class RateLimited(MinisError):
    """This connection sent too many events; wait and retry."""

    code = "rate_limited"
    default_message = "Too many events; wait a moment and retry."


class InternalError(MinisError):
    """An unexpected failure; ``reference`` ties the client's message to the server's log line."""

    def __init__(self, reference: str) -> None:
        super().__init__(f"Internal error (reference {reference}).")
        self.reference = reference
