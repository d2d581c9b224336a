"""Resumable sessions: a signed, expiring, opaque string that names a player, and its end.

A client keeps the session from its login ack and passes it as the Socket.IO connect ``auth`` on
reconnect, since TikTok's codes are single use. The session is a Fernet token (encrypted and
authenticated, with its issue time) under a key of its own derived from ``TTMINIS_SECRET_KEY``;
it carries the player's public id, never the ``open_id``, and the player's session epoch.

A session ends three ways, each recorded in the database (``Store.sessions``) so that every
server process, and the operator's shell, agrees: a logout ends that one string; a logout
everywhere moves the player's epoch on, ending every session issued before; forgetting the
player ends every session of that public id for good. :class:`Sessions` checks those ends when a
client resumes and follows them, so that each process unbinds its own live connections.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from cryptography.fernet import InvalidToken

from tiktok_minis.errors import MinisError
from tiktok_minis.services.clock import Clock
from tiktok_minis.services.players import Player, Players
from tiktok_minis.store import Store
from tiktok_minis.store.crypto import TokenCipher
from tiktok_minis.store.sessions import SessionEnd
from tiktok_minis.support.feeds import Feed

__all__ = [
    "InvalidSession",
    "SessionClaims",
    "SessionEnd",
    "SessionListener",
    "SessionSigner",
    "Sessions",
    "session_digest",
]

log = logging.getLogger("tiktok_minis.sessions")

_MAX_SESSION_LENGTH = 1024

#: Called with the session ends recorded since the last call, from any process.
SessionListener = Callable[[list[SessionEnd]], None]


def session_digest(session: str) -> str:
    """The name under which a session string's end is recorded (never the string itself)."""
    return hashlib.sha256(session.encode()).hexdigest()


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


class Sessions:
    """Issues, resumes and ends sessions; follows the ends that any process records.

    ``start`` begins following (every ``poll_seconds``); listeners get each batch of ends, their
    own process's included, and unbind the connections those ends name.
    """

    def __init__(
        self,
        store: Store,
        signer: SessionSigner,
        players: Players,
        *,
        clock: Clock,
        poll_seconds: float = 1.0,
        retention: timedelta = timedelta(days=30),
    ) -> None:
        self._store = store
        self._signer = signer
        self._players = players
        self._clock = clock
        self._retention = retention
        self._ends: Feed[SessionEnd] = Feed(
            "session-ends",
            store.sessions.ended_since,
            store.sessions.latest_id,
            poll_seconds=poll_seconds,
        )

    def subscribe(self, listener: SessionListener) -> Callable[[], None]:
        """Call ``listener`` with every batch of session ends, from any process."""
        return self._ends.subscribe(listener)

    def issue(self, player: Player) -> str:
        """A new session for ``player``, under the player's current epoch."""
        return self._signer.issue(player.id, player.session_epoch)

    async def resume(self, session: object) -> Player:
        """The player a valid, unended session names; :class:`InvalidSession` otherwise."""
        if not isinstance(session, str):
            raise InvalidSession()
        claims = self._signer.verify(session)
        player = await self._players.get_by_public_id(claims.public_id)
        if player is None or player.session_epoch != claims.epoch:
            raise InvalidSession()
        if await self._store.sessions.is_ended(session_digest(session)):
            raise InvalidSession()
        return player

    async def end(self, player_public_id: str, digest: str) -> None:
        """End one session, by its :func:`session_digest` (a logout): refused from now on."""
        await self._store.sessions.end_one(
            player_public_id, digest, reason="logout", now=self._clock()
        )
        log.info("session ended", extra={"event": "logout", "player": player_public_id})

    async def end_all(self, player: Player, *, reason: str = "logout") -> int:
        """End every session of ``player`` (a logout everywhere); the epoch new sessions get.

        Listeners hear of it at once in this process, and at their next poll in the others.
        """
        epoch = await self._store.players.next_session_epoch(player.open_id)
        await self._store.sessions.end_below(player.id, epoch, reason=reason, now=self._clock())
        log.info("every session ended", extra={"event": "logout_everywhere", "player": player.id})
        await self.poll()
        return epoch

    async def start(self) -> None:
        """Begin following the ends recorded from now on."""
        await self._ends.start()

    async def close(self) -> None:
        """Stop following. Closing twice is harmless; ``start`` may follow again."""
        await self._ends.close()

    async def poll(self) -> list[SessionEnd]:
        """Read the ends recorded since the last poll and tell the listeners; returns them."""
        return await self._ends.poll()

    async def housekeeping(self) -> int:
        """Delete the ends older than any session can be; returns how many went."""
        return await self._store.sessions.delete_older_than(self._clock() - self._retention)
