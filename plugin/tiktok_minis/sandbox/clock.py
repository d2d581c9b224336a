"""A clock that tests move by hand, for the emulator's ``clock=`` argument."""

from __future__ import annotations

import time

__all__ = ["ManualClock"]


class ManualClock:
    """A callable clock that stands still until moved: ``Sandbox(clock=ManualClock())``.

    It starts at the real time (so log ids and expiry epochs look plausible) unless ``start`` is
    given. Only the emulator's view of time moves: nothing sleeps.
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        """The current time in seconds since the epoch."""
        return self.now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (not backward) and return the new time."""
        if seconds < 0:
            raise ValueError("a clock only moves forward: give 0 or more seconds")
        self.now += seconds
        return self.now
