"""The background refresher: granted profiles re-fetched every few days, never on every launch.

Each stored profile carries its own next-refresh time, a random point 3 to 7 days
(TTMINIS_PROFILE_REFRESH_DAYS) after it was fetched, so refreshes spread evenly over the week
and a launch day's crowd does not come back as one stampede. Every ``interval`` the refresher
claims the due players in batches (a lease in the database, so several server processes never
refresh one player twice), refreshes them with bounded concurrency through the player service
(which renews an expired token first and pushes a changed name), and postpones a failure with
exponential backoff rather than dropping it. A 429 pauses every caller through the shared
upstream throttle; the refresher also stops starting new refreshes while that pause lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tiktok_minis.errors import MinisError, NotAuthorized, UnknownPlayer
from tiktok_minis.services.players import Players
from tiktok_minis.store import Store
from tiktok_minis.tiktok.throttle import UpstreamThrottle

__all__ = ["RefreshRound", "Refresher"]

log = logging.getLogger("tiktok_minis.refresher")

#: How long a claim holds: longer than any refresh can take (budgets are seconds).
LEASE = timedelta(minutes=10)
#: The first retry after a failed refresh, doubled per failure in a row, up to ``MAX_BACKOFF``.
FIRST_BACKOFF = timedelta(minutes=15)
MAX_BACKOFF = timedelta(days=1)


def backoff(failures: int) -> timedelta:
    """The wait before retrying after ``failures`` failed refreshes in a row (with jitter)."""
    ceiling = min(FIRST_BACKOFF * (1 << min(max(failures - 1, 0), 16)), MAX_BACKOFF)
    # Equal jitter: at least half the ceiling, so a failure never retries at once.
    return ceiling / 2 + ceiling / 2 * random.random()


@dataclass(slots=True)
class RefreshRound:
    """What one pass did: players claimed, and how each refresh ended."""

    claimed: int = 0
    unchanged: int = 0
    changed: int = 0
    revoked: int = 0
    postponed: int = 0
    failures: list[str] = field(default_factory=list)  # error codes, for logs and tests

    def merge(self, other: RefreshRound) -> None:
        """Add another pass's counts to this one."""
        self.claimed += other.claimed
        self.unchanged += other.unchanged
        self.changed += other.changed
        self.revoked += other.revoked
        self.postponed += other.postponed
        self.failures.extend(other.failures)


class Refresher:
    """Refreshes due profiles in the background; ``run_once`` does one pass on demand."""

    def __init__(
        self,
        store: Store,
        players: Players,
        *,
        clock: Callable[[], datetime],
        interval_seconds: float = 60.0,
        batch_size: int = 200,
        concurrency: int = 8,
        throttle: UpstreamThrottle | None = None,
        on_round: Callable[[RefreshRound], None] | None = None,
    ) -> None:
        self._players = players
        self._on_round = on_round
        self._store = store.players
        self._clock = clock
        self._interval = interval_seconds
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._throttle = throttle
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background loop (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="tiktok-minis-refresher")

    async def close(self) -> None:
        """Stop the loop; refreshes in flight are cancelled and their claims lapse later."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def wake(self) -> None:
        """Run a pass now rather than at the end of the interval (tests, admin tools)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                done = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A database hiccup: log it and try again next interval, never die quietly.
                log.exception("refresh pass failed", extra={"event": "refresh_pass_failed"})
                done = RefreshRound()
            if done.claimed >= self._batch_size:
                continue  # more are due: go on at once (the throttle sets the pace)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

    # -- one pass -----------------------------------------------------------------------------

    async def run_once(self) -> RefreshRound:
        """Claim one batch of due players and refresh them; the counts of what happened."""
        now = self._clock()
        open_ids = await self._store.claim_due_profiles(
            now=now, lease_until=now + LEASE, limit=self._batch_size
        )
        total = RefreshRound(claimed=len(open_ids))
        if not open_ids:
            return total
        gate = asyncio.Semaphore(self._concurrency)

        async def one(open_id: str) -> RefreshRound:
            async with gate:
                await self._wait_out_rate_limit()
                return await self._refresh(open_id)

        for result in await asyncio.gather(*(one(open_id) for open_id in open_ids)):
            total.merge(result)
        if self._on_round is not None:
            self._on_round(total)
        log.info(
            "refresh pass",
            extra={
                "event": "refresh_pass",
                "claimed": total.claimed,
                "changed": total.changed,
                "revoked": total.revoked,
                "postponed": total.postponed,
            },
        )
        return total

    async def _wait_out_rate_limit(self) -> None:
        if self._throttle is not None:
            await self._throttle.wait_out_pause()

    async def _refresh(self, open_id: str) -> RefreshRound:
        """Refresh one claimed player; upstream trouble postpones it, never raises."""
        before = await self._players.get(open_id)
        if before is None:
            return RefreshRound()
        try:
            after = await self._players.refresh_profile(open_id)
        except NotAuthorized:
            # The scope or the grant is gone: the player service reverted them to the
            # placeholder (consent unknown), pushed it, and they are no longer due.
            return RefreshRound(revoked=1)
        except UnknownPlayer:
            return RefreshRound()  # forgotten while claimed
        except MinisError as exc:
            return await self._postpone(open_id, before.id, exc.code)
        except Exception:
            log.exception("refresh failed", extra={"event": "refresh_failed", "player": before.id})
            return await self._postpone(open_id, before.id, "internal_error")
        changed = (after.display_name, after.avatar_url) != (before.display_name, before.avatar_url)
        return RefreshRound(changed=1) if changed else RefreshRound(unchanged=1)

    async def _postpone(self, open_id: str, public_id: str, code: str) -> RefreshRound:
        row = await self._store.by_open_id(open_id)
        failures = (row.refresh_failures if row is not None else 0) + 1
        retry_at = self._clock() + backoff(failures)
        await self._store.postpone_refresh(open_id, failures=failures, refresh_at=retry_at)
        log.warning(
            "refresh postponed",
            extra={
                "event": "refresh_postponed",
                "player": public_id,
                "code": code,
                "failures": failures,
            },
        )
        return RefreshRound(postponed=1, failures=[code])
