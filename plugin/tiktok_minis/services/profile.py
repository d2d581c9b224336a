"""How a player is shown: the stored profile, or the configured placeholder; and the player as
the player service hands it to the game (:class:`Player`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tiktok_minis.store.models import Consent

__all__ = ["Forgotten", "Placeholder", "Player", "ShownProfile"]


@dataclass(frozen=True, slots=True)
class ShownProfile:
    """The name and avatar a client sees, and whether they are the placeholder."""

    display_name: str
    avatar_url: str
    placeholder: bool


@dataclass(frozen=True, slots=True)
class Placeholder:
    """The name and avatar of a player without a profile (TTMINIS_PLACEHOLDER_*)."""

    name: str = "TikTok Player"
    avatar_url: str = "/ttminis/static/default-avatar.svg"

    def show(self, display_name: str | None, avatar_url: str | None) -> ShownProfile:
        """The profile to show: the stored one when it has a name, else the placeholder."""
        if not display_name:
            return ShownProfile(self.name, self.avatar_url, placeholder=True)
        return ShownProfile(display_name, avatar_url or self.avatar_url, placeholder=False)


@dataclass(frozen=True, slots=True)
class Player:
    """A player as the game sees it: the stored profile, or the placeholder.

    ``open_id`` is the permanent key, sent only to the player's own connections (never on a
    leaderboard entry or to other players); ``id`` is the public id the others see.
    """

    open_id: str
    id: str
    display_name: str
    avatar_url: str
    placeholder: bool
    consent: Consent
    union_id: str | None = None
    profile_fetched_at: datetime | None = None
    session_epoch: int = 0


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What ``Players.forget`` did."""

    player: Player  # as it was before
    revoked_at_tiktok: bool
    scores: int  # deleted, or moved to an anonymous stand-in
    scores_anonymised: bool
