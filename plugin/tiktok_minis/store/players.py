"""Every query on players: the only place that reads or writes ``PlayerRow``.

Tokens arrive here already encrypted (see :mod:`tiktok_minis.store.crypto`); this module never
sees a token in clear. The login write, batched, is :mod:`tiktok_minis.store.logins`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from tiktok_minis.store.avatars import AvatarStore, digest_of
from tiktok_minis.store.database import Database, Queries
from tiktok_minis.store.models import Consent, PlayerRow
from tiktok_minis.store.scores import ScoreStore
from tiktok_minis.store.sessions import SessionStore

__all__ = ["EncryptedTokens", "FetchedProfile", "PlayerStore", "new_public_id"]


@dataclass(frozen=True, slots=True)
class EncryptedTokens:
    """A token set as stored: ciphertexts and expiry instants."""

    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    scopes: str


@dataclass(frozen=True, slots=True)
class FetchedProfile:
    """A profile as TikTok gave it, to store: when it was fetched and when to fetch it again."""

    display_name: str | None
    avatar_url: str | None
    union_id: str | None
    fetched_at: datetime
    refresh_at: datetime


def new_public_id() -> str:
    """A fresh public id: random, URL-safe, unrelated to the ``open_id``."""
    return secrets.token_urlsafe(12)


def _token_fields(tokens: EncryptedTokens) -> dict[str, object]:
    return {
        "access_token": tokens.access_token,
        "access_expires_at": tokens.access_expires_at,
        "refresh_token": tokens.refresh_token,
        "refresh_expires_at": tokens.refresh_expires_at,
        "scopes": tokens.scopes,
    }


def _due(now: datetime) -> Q:
    """Granted players whose refresh time has come and whom no live claim holds."""
    return Q(consent=Consent.GRANTED, profile_refresh_at__lte=now) & (
        Q(refresh_claimed_until__isnull=True) | Q(refresh_claimed_until__lt=now)
    )


async def _open_ids(query: QuerySet[PlayerRow]) -> list[str]:
    rows = await query.values_list("open_id", flat=True)
    return [str(open_id) for open_id in rows]


_CLAIM_SQL = f"""
UPDATE ttminis_player SET refresh_claimed_until = $2
WHERE open_id IN (
    SELECT open_id FROM ttminis_player
    WHERE consent = '{Consent.GRANTED.value}' AND profile_refresh_at <= $1
      AND (refresh_claimed_until IS NULL OR refresh_claimed_until < $1)
    ORDER BY profile_refresh_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
RETURNING open_id
"""  # noqa: S608 (a constant enum value, no input)


class PlayerStore(Queries):
    """The queries on ``ttminis_player``, bound to one database.

    Forgetting a player deletes what hangs off them in the same transaction, through the stores
    that own those tables.
    """

    def __init__(
        self,
        database: Database,
        *,
        scores: ScoreStore,
        sessions: SessionStore,
        avatars: AvatarStore,
    ) -> None:
        super().__init__(database)
        self._scores = scores
        self._sessions = sessions
        self._avatars = avatars

    async def by_open_id(self, open_id: str) -> PlayerRow | None:
        """The player stored under ``open_id``, if any."""
        return await PlayerRow.get_or_none(open_id=open_id)

    async def by_public_id(self, public_id: str) -> PlayerRow | None:
        """The player with that public id, if any."""
        return await PlayerRow.get_or_none(public_id=public_id)

    async def ensure_player(self, open_id: str) -> tuple[PlayerRow, bool]:
        """The player under ``open_id``, created if new; ``True`` when this call created it.

        Two first logins of one player at once both end with the same row: the primary key
        decides.
        """
        row = await self.by_open_id(open_id)
        if row is not None:
            return row, False
        try:
            return await PlayerRow.create(open_id=open_id, public_id=new_public_id()), True
        except IntegrityError:
            row = await self.by_open_id(open_id)
            if row is None:  # the integrity error was not the race we expected
                raise
            return row, False

    async def save_tokens(self, open_id: str, tokens: EncryptedTokens) -> None:
        """Store a token set fresh from a code exchange: it is the newest, whatever is stored."""
        await PlayerRow.filter(open_id=open_id).update(**_token_fields(tokens))

    async def replace_tokens(
        self, open_id: str, expected_refresh_token: str, tokens: EncryptedTokens
    ) -> bool:
        """Store refreshed tokens only if the stored refresh token is still the one we refreshed.

        Refresh tokens rotate: if another process refreshed first, its tokens are newer than
        ours and stay; ``False`` tells the caller to read them back.
        """
        updated = await PlayerRow.filter(
            open_id=open_id, refresh_token=expected_refresh_token
        ).update(**_token_fields(tokens))
        return updated == 1

    async def clear_tokens(self, open_id: str) -> None:
        """Forget the tokens (they are dead or revoked)."""
        await PlayerRow.filter(open_id=open_id).update(
            access_token=None,
            access_expires_at=None,
            refresh_token=None,
            refresh_expires_at=None,
            scopes="",
        )

    async def set_profile(self, open_id: str, profile: FetchedProfile) -> None:
        """Store a profile fetched from TikTok; the player has granted access."""
        fields: dict[str, object] = {
            "display_name": profile.display_name,
            "avatar_url": profile.avatar_url,
            "profile_fetched_at": profile.fetched_at,
            "profile_refresh_at": profile.refresh_at,
            "consent": Consent.GRANTED,
            "refresh_claimed_until": None,
            "refresh_failures": 0,
        }
        if profile.union_id:  # user info returns it only when asked; never erase a known one
            fields["union_id"] = profile.union_id
        await PlayerRow.filter(open_id=open_id).update(**fields)

    async def revert_to_placeholder(self, open_id: str, consent: Consent) -> None:
        """Drop the profile (the real name must stop showing) and record ``consent``."""
        await PlayerRow.filter(open_id=open_id).update(
            display_name=None,
            avatar_url=None,
            profile_fetched_at=None,
            profile_refresh_at=None,
            refresh_claimed_until=None,
            refresh_failures=0,
            consent=consent,
        )

    async def claim_due_profiles(
        self, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[str]:
        """Claim up to ``limit`` players due for a profile refresh until ``lease_until``.

        Several processes may call this at once: no player is claimed twice while a lease
        holds. PostgreSQL skips rows another transaction is claiming (``FOR UPDATE SKIP
        LOCKED``); SQLite has no row locks, so each claim there is a conditional update that
        only one caller wins. A claim that its holder never finished (a crash) lapses at
        ``lease_until``.
        """
        if self.dialect == "postgres":
            # One statement: the rows are locked from the SELECT until the lease is written, and
            # a row another process is claiming right now is skipped, not waited for.
            rows = await self.connection().execute_query_dict(_CLAIM_SQL, [now, lease_until, limit])
            return [str(row["open_id"]) for row in rows]
        candidates = await _open_ids(
            PlayerRow.filter(_due(now)).order_by("profile_refresh_at").limit(limit)
        )
        claimed = []
        for open_id in candidates:
            won = await PlayerRow.filter(_due(now), open_id=open_id).update(
                refresh_claimed_until=lease_until
            )
            if won:
                claimed.append(open_id)
        return claimed

    async def postpone_refresh(self, open_id: str, *, failures: int, refresh_at: datetime) -> None:
        """A refresh failed upstream: try again at ``refresh_at``, and release the claim."""
        await PlayerRow.filter(open_id=open_id).update(
            refresh_failures=failures, profile_refresh_at=refresh_at, refresh_claimed_until=None
        )

    async def next_session_epoch(self, open_id: str) -> int:
        """Move the player's session epoch on (one atomic increment, so two moves at once both
        count); the epoch new sessions get (0 for an unknown player)."""
        await PlayerRow.filter(open_id=open_id).update(session_epoch=F("session_epoch") + 1)
        row = await PlayerRow.get_or_none(open_id=open_id).only("session_epoch")
        return row.session_epoch if row is not None else 0

    async def forget(self, open_id: str, *, anonymise_scores: bool, now: datetime) -> int:
        """Delete the player: tokens, profile, ids, their avatar image unless another player
        shows the same one. Their scores are deleted, or anonymised.

        Anonymised scores move, in the same transaction, to a new player row that has no TikTok
        identity (a random key that no login can produce, a new public id, no profile), so
        boards keep their history and show the placeholder. Every session of the player ends,
        recorded in the same transaction, and so is each deleted score row (for the rank
        indexes). Returns how many scores were deleted or moved.
        """
        async with in_transaction(self.connection().connection_name) as transaction:
            if anonymise_scores:
                stand_in = await PlayerRow.create(
                    open_id=f"forgotten:{secrets.token_urlsafe(24)}",
                    public_id=new_public_id(),
                    using_db=transaction,
                )
                affected = await self._scores.hand_over(
                    open_id, stand_in.open_id, using_db=transaction
                )
            else:
                affected = await self._scores.delete_all_of(open_id, now=now, using_db=transaction)
            row = await PlayerRow.filter(open_id=open_id).using_db(transaction).first()
            await PlayerRow.filter(open_id=open_id).using_db(transaction).delete()
            if row is not None:
                await self._sessions.end_forgotten(row.public_id, now=now, using_db=transaction)
                await self._forget_avatar(row.avatar_url, transaction)
            return affected

    async def _forget_avatar(self, url: str | None, transaction: BaseDBAsyncClient) -> None:
        # The picture is personal data too; players with the very same picture share it.
        digest = digest_of(url)
        if digest is None:
            return
        shared = await PlayerRow.filter(avatar_url=url).using_db(transaction).exists()
        if not shared:
            await self._avatars.delete(digest, using_db=transaction)
