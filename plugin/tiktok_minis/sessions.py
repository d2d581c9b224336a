"""Resumable sessions: a signed, expiring, opaque string that names a player.

A client keeps the session from its login ack and passes it as the Socket.IO connect ``auth`` on
reconnect, since TikTok's codes are single use. The session is a Fernet token (encrypted and
authenticated, with its issue time) under a key of its own derived from ``TTMINIS_SECRET_KEY``;
it carries the player's public id, never the ``open_id``, and the player's session epoch, so
forgetting a player ends every session issued before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography.fernet import InvalidToken

from tiktok_minis.errors import MinisError
from tiktok_minis.store.crypto import TokenCipher

__all__ = ["InvalidSession", "SessionClaims", "SessionSigner"]

_MAX_SESSION_LENGTH = 1024


class InvalidSession(MinisError):
    """The session is tampered, foreign, malformed or expired: log in again."""

    code = "invalid_session"
    default_message = "The session is invalid or expired; log in again."


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """What a valid session says: whose it is and under which epoch it was issued."""

    public_id: str
    epoch: int


class SessionSigner:
    """Issues and verifies sessions."""

    def __init__(self, secrets: list[str], ttl_seconds: int) -> None:
        self._cipher = TokenCipher(secrets, purpose="sessions")
        self._ttl = ttl_seconds

    def issue(self, public_id: str, epoch: int) -> str:
        """A new session for the player."""
        return self._cipher.encrypt(json.dumps({"p": public_id, "e": epoch}, separators=(",", ":")))

    def verify(self, session: object) -> SessionClaims:
        """The claims of a valid session; raises :class:`InvalidSession` otherwise."""
        if not isinstance(session, str) or not 0 < len(session) <= _MAX_SESSION_LENGTH:
            raise InvalidSession()
        try:
            claims = json.loads(self._cipher.decrypt(session, ttl=self._ttl))
        except (InvalidToken, ValueError, UnicodeError):
            raise InvalidSession() from None
        if (
            not isinstance(claims, dict)
            or not isinstance(claims.get("p"), str)
            or type(claims.get("e")) is not int
        ):
            raise InvalidSession()
        return SessionClaims(public_id=claims["p"], epoch=claims["e"])
