"""The services' clock: "now" as an aware UTC datetime, unless the game or a test gives one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "utc_now"]

#: What the services ask for the time; tests pass one they move by hand.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)
