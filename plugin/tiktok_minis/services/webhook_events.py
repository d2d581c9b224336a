"""TikTok's webhook events, each acted on once.

TikTok delivers at least once and retries for up to 72 hours until it is answered 200
(https://developers.tiktok.com/doc/webhooks-overview/). So an event is claimed under a digest
before it is acted on: a second delivery finds the claim and changes nothing. When acting fails
the claim is released, so that TikTok's retry acts. Claims are kept through the retry window,
then housekeeping deletes them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from tiktok_minis.store import Store

__all__ = ["TIKTOK_RETRY_WINDOW", "WebhookEvents", "event_retention"]

log = logging.getLogger("tiktok_minis.webhook")

#: How long TikTok keeps retrying an event that was not answered 200.
TIKTOK_RETRY_WINDOW = timedelta(hours=72)

T = TypeVar("T")


def event_retention(tolerance_seconds: int) -> timedelta:
    """How long handled events must be kept: TikTok's retry window plus the tolerance.

    Pass it to ``Store.webhook_events.delete_older_than`` in housekeeping.
    """
    return TIKTOK_RETRY_WINDOW + timedelta(seconds=tolerance_seconds)


class WebhookEvents:
    """Claims webhook events so that each is acted on once."""

    def __init__(self, store: Store) -> None:
        self._store = store.webhook_events

    async def once(self, digest: str, event: str, act: Callable[[], Awaitable[T]]) -> T | None:
        """``await act()`` unless the event ``digest`` was claimed already; ``None`` then.

        The claim is taken first (two deliveries at once: one acts). When ``act`` raises, the
        claim is released and the error goes on, so TikTok's retry of the event acts.
        """
        if not await self._store.claim_event(digest, event):
            return None
        try:
            return await act()
        except Exception:
            await self._release(digest)
            raise

    async def _release(self, digest: str) -> None:
        try:
            await self._store.release_event(digest)
        except Exception:
            # The database that failed the handling may fail this too; TikTok's retry will then
            # be taken for a replay, and the player's next profile refresh reverts them instead.
            log.exception("webhook claim kept", extra={"event": "webhook_release_failed"})
