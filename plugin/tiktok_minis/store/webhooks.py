"""Every query on handled webhook events: the only place that reads or writes ``WebhookEventRow``.

An event is recorded under a digest once it is verified and about to be acted on; a delivery
whose digest is already here is a duplicate (TikTok delivers at least once) or a replay.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tortoise.exceptions import IntegrityError

from tiktok_minis.store.database import Queries
from tiktok_minis.store.models import WebhookEventRow

__all__ = ["WebhookEventStore"]

_EVENT_MAX = 64  # WebhookEventRow.event's max_length


class WebhookEventStore(Queries):
    """The queries on ``ttminis_webhook_event``, bound to one database."""

    async def claim_event(self, digest: str, event: str) -> bool:
        """Record the event ``digest`` (insert or ignore); ``True`` when this call inserted it.

        The primary key decides between two deliveries of one event at once: only one gets
        ``True``.
        """
        try:
            await WebhookEventRow.create(digest=digest, event=event[:_EVENT_MAX])
        except IntegrityError:
            return False
        return True

    async def release_event(self, digest: str) -> None:
        """Forget a claimed event whose handling failed, so that TikTok's retry is handled anew."""
        await WebhookEventRow.filter(digest=digest).delete()

    async def is_recorded(self, digest: str) -> bool:
        """Whether the event ``digest`` is recorded."""
        return await WebhookEventRow.filter(digest=digest).exists()

    async def delete_older_than(self, age: timedelta, *, now: datetime | None = None) -> int:
        """Delete the events received more than ``age`` before ``now``; returns how many.

        Housekeeping: a digest only has to outlive every delivery of its event that could still
        come.
        """
        cutoff = (now if now is not None else datetime.now(UTC)) - age
        deleted: int = await WebhookEventRow.filter(received_at__lt=cutoff).delete()
        return deleted
