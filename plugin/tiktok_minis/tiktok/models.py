"""Typed results of the TikTok Open API, parsed from the documented JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = ["USER_INFO_FIELDS", "TikTokUser", "TokenSet"]

#: The user-info fields the plugin asks for: all covered by ``user.info.basic``.
USER_INFO_FIELDS: tuple[str, ...] = ("open_id", "union_id", "avatar_url", "display_name")


@dataclass(frozen=True, slots=True)
class TokenSet:
    """What the token endpoint returns for a code exchange or a refresh.

    Expiry instants are computed from ``expires_in``/``refresh_expires_in`` at the moment the
    answer arrived (``issued_at``): TikTok's pages disagree on the lifetimes, so nothing is assumed.
    :class:`~tiktok_minis.tiktok.client.TikTokClient` sets ``issued_at`` from its clock; the
    real time is only the default for a token set built by hand.
    """

    open_id: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    refresh_expires_in: int
    scopes: frozenset[str]
    token_type: str = "Bearer"  # noqa: S105 (the scheme's name, not a secret)
    issued_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def access_expires_at(self) -> datetime:
        """When the access token stops working."""
        return self.issued_at + timedelta(seconds=self.expires_in)

    @property
    def refresh_expires_at(self) -> datetime:
        """When the refresh token stops working."""
        return self.issued_at + timedelta(seconds=self.refresh_expires_in)

    def has_scope(self, scope: str) -> bool:
        """Whether TikTok granted ``scope`` with this token."""
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class TikTokUser:
    """The profile fields user info returned (only the requested ones come back)."""

    open_id: str
    display_name: str | None = None
    avatar_url: str | None = None
    union_id: str | None = None
