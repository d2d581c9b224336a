"""Deleting what is no longer needed, hourly: webhook event digests past TikTok's retry
window, score removals every process has followed, sessions ended longer ago than any lives."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Final

from tiktok_minis.services.clock import Clock
from tiktok_minis.services.sessions import Sessions
from tiktok_minis.services.webhook_events import event_retention
from tiktok_minis.store import Store

__all__ = ["Housekeeping"]

log = logging.getLogger("tiktok_minis")

#: How often the loop runs.
EVERY_SECONDS: Final = 3600.0
# Every process follows removals within a poll; a day is plenty for one that lagged.
_REMOVALS_KEPT: Final = timedelta(days=1)


class Housekeeping:
    """One pass (``run``) and the hourly loop that repeats it while the plugin runs."""

    def __init__(
        self, store: Store, sessions: Sessions, *, webhook_tolerance_seconds: int, clock: Clock
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._tolerance = webhook_tolerance_seconds
        self._clock = clock

    async def run(self) -> int:
        """Delete one pass's worth; returns how many rows went."""
        events = await self._store.webhook_events.delete_older_than(
            event_retention(self._tolerance)
        )
        removals = await self._store.score_removals.delete_older_than(
            self._clock() - _REMOVALS_KEPT
        )
        return events + removals + await self._sessions.housekeeping()

    async def loop(self) -> None:
        """``run`` every hour until cancelled; a failed pass is logged and the next one tried."""
        while True:
            await asyncio.sleep(EVERY_SECONDS)
            try:
                await self.run()
            except Exception:
                log.exception("housekeeping failed", extra={"event": "housekeeping_failed"})
