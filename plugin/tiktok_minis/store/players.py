"""Every query on players: the only place that reads or writes ``PlayerRow``.

Tokens arrive here already encrypted (see :mod:`tiktok_minis.store.crypto`); this module never
sees a token in clear.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError

from tiktok_minis.store.models import Consent, PlayerRow

__all__ = [
    "EncryptedTokens",
    "by_open_id",
    "by_public_id",
    "clear_tokens",
    "ensure_player",
    "new_public_id",
    "replace_tokens",
    "revert_to_placeholder",
    "save_tokens",
    "set_consent",
    "set_profile",
]


@dataclass(frozen=True, slots=True)
class EncryptedTokens:
    """A token set as stored: ciphertexts and expiry instants."""

    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    scopes: str


def new_public_id() -> str:
    """A fresh public id: random, URL-safe, unrelated to the ``open_id``."""
    return secrets.token_urlsafe(12)


async def by_open_id(open_id: str) -> PlayerRow | None:
    """The player stored under ``open_id``, if any."""
    return await PlayerRow.get_or_none(open_id=open_id)


async def by_public_id(public_id: str) -> PlayerRow | None:
    """The player with that public id, if any."""
    return await PlayerRow.get_or_none(public_id=public_id)


async def ensure_player(open_id: str) -> tuple[PlayerRow, bool]:
    """The player under ``open_id``, created if new; ``True`` when this call created it.

    Two first logins of one player at once both end with the same row: the primary key decides.
    """
    row = await by_open_id(open_id)
    if row is not None:
        return row, False
    try:
        return await PlayerRow.create(open_id=open_id, public_id=new_public_id()), True
    except IntegrityError:
        row = await by_open_id(open_id)
        if row is None:  # the integrity error was not the race we expected
            raise
        return row, False


def _token_fields(tokens: EncryptedTokens) -> dict[str, object]:
    return {
        "access_token": tokens.access_token,
        "access_expires_at": tokens.access_expires_at,
        "refresh_token": tokens.refresh_token,
        "refresh_expires_at": tokens.refresh_expires_at,
        "scopes": tokens.scopes,
    }


async def save_tokens(open_id: str, tokens: EncryptedTokens) -> None:
    """Store a token set fresh from a code exchange: it is the newest, whatever is stored."""
    await PlayerRow.filter(open_id=open_id).update(**_token_fields(tokens))


async def replace_tokens(
    open_id: str, expected_refresh_token: str, tokens: EncryptedTokens
) -> bool:
    """Store refreshed tokens only if the stored refresh token is still the one we refreshed.

    Refresh tokens rotate: if another process refreshed first, its tokens are newer than ours and
    stay; ``False`` tells the caller to read them back.
    """
    updated = await PlayerRow.filter(open_id=open_id, refresh_token=expected_refresh_token).update(
        **_token_fields(tokens)
    )
    return updated == 1


async def clear_tokens(open_id: str) -> None:
    """Forget the tokens (they are dead or revoked)."""
    await PlayerRow.filter(open_id=open_id).update(
        access_token=None,
        access_expires_at=None,
        refresh_token=None,
        refresh_expires_at=None,
        scopes="",
    )


async def set_profile(
    open_id: str,
    *,
    display_name: str | None,
    avatar_url: str | None,
    union_id: str | None,
    fetched_at: datetime,
    refresh_at: datetime,
) -> None:
    """Store a profile fetched from TikTok; the player has granted access."""
    fields: dict[str, object] = {
        "display_name": display_name,
        "avatar_url": avatar_url,
        "profile_fetched_at": fetched_at,
        "profile_refresh_at": refresh_at,
        "consent": Consent.GRANTED,
    }
    if union_id:  # user info returns it only when asked; never erase a known one
        fields["union_id"] = union_id
    await PlayerRow.filter(open_id=open_id).update(**fields)


async def set_consent(open_id: str, consent: Consent) -> None:
    """Record the player's answer without touching the profile."""
    await PlayerRow.filter(open_id=open_id).update(consent=consent)


async def revert_to_placeholder(open_id: str, consent: Consent) -> None:
    """Drop the profile (the real name must stop showing) and record ``consent``."""
    await PlayerRow.filter(open_id=open_id).update(
        display_name=None,
        avatar_url=None,
        profile_fetched_at=None,
        profile_refresh_at=None,
        consent=consent,
    )
