"""The codes and tokens the emulator hands out, and the sweeps over their tables."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Code", "Token", "drop_owned", "expire_now", "sweep_expired"]


@dataclass(eq=False)
class Code:
    """A one-time code: ``login`` (silent login) or ``authorize`` (the user pressed Allow)."""

    value: str
    open_id: str
    kind: str
    expires_at: float


@dataclass(eq=False)
class Token:
    """An access or refresh token with the scopes it carries."""

    value: str
    open_id: str
    scopes: frozenset[str]
    expires_at: float


def drop_owned(tables: Iterable[dict[str, Code] | dict[str, Token]], open_id: str) -> None:
    """Remove every code or token of ``open_id`` from ``tables``."""
    for table in tables:
        for value in [value for value, item in table.items() if item.open_id == open_id]:
            del table[value]


def expire_now(table: dict[str, Token], open_id: str | None, now: float) -> None:
    """Make the live tokens of ``open_id`` (or of everyone when None) expire at ``now``."""
    for token in table.values():
        if (open_id is None or token.open_id == open_id) and token.expires_at > now:
            token.expires_at = now


def sweep_expired(tables: Iterable[dict[str, Code] | dict[str, Token]], now: float) -> None:
    """Forget expired codes and tokens (unknown and expired both answer invalid_grant)."""
    for table in tables:
        for value in [value for value, item in table.items() if now >= item.expires_at]:
            del table[value]
