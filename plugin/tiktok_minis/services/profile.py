"""How a player is shown: the stored profile, or the configured placeholder."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Placeholder", "ShownProfile"]


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
