"""Noticing a restarted Redis, whose markers may vouch for what it no longer holds.

A restarted Redis may come back from a snapshot older than the writes it acknowledged, or be a
replica that never got them. Every load records the server's ``run_id`` under the prefix before
it sets a marker; every process probes the run_id; the first to find another one recorded
deletes every marker and lock under the prefix, so every period is rebuilt.
"""

from __future__ import annotations

import logging
from typing import Final

from redis.exceptions import ResponseError

from tiktok_minis.ranking._redis_link import Link
from tiktok_minis.ranking._redis_names import boot_key, stale_patterns
from tiktok_minis.ranking._redis_scripts import CHUNK

__all__ = ["ServerWatch"]

log = logging.getLogger("tiktok_minis.ranking")

#: How long the recorded run_id lasts once no process refreshes it.
_BOOT_MS: Final = 86_400_000


class ServerWatch:
    """Which Redis server this is, and what to do when it is another than before."""

    def __init__(self, link: Link) -> None:
        self._link = link
        # The recorded run_id outlives every marker (each probe refreshes it), then goes too.
        self._boot_ms = max(_BOOT_MS, 2 * link.ttls[0])
        self._info_allowed = True

    async def run_id(self) -> str | None:
        """The server's run_id (it changes when Redis restarts), ``None`` if INFO is denied."""
        redis = self._link.redis
        if not self._info_allowed:
            async with self._link.calls:
                await redis.ping()
            return None
        try:
            async with self._link.calls:
                info = await redis.info("server")
        except ResponseError:
            self._info_allowed = False
            log.warning(
                "rank index cannot run INFO: a restarted Redis will not be noticed",
                extra={"event": "rank_info_denied"},
            )
            return None
        run_id = info.get("run_id")
        return None if run_id is None else str(run_id)

    async def observe(self, run_id: str | None) -> None:
        """Record ``run_id``; the first process to see a new server hides every period.

        The server may have come back from a snapshot older than the writes it acknowledged,
        or be a replica that never received them.
        """
        if run_id is None:
            return
        link = self._link
        async with link.calls:
            claimed = await link.scripts.claim_boot(
                keys=[boot_key(link.prefix)], args=[run_id, self._boot_ms]
            )
            if not int(claimed):
                return
            stale: list[bytes] = []
            for pattern in stale_patterns(link.prefix):
                async for found in link.redis.scan_iter(match=pattern, count=1000):
                    stale.append(found)
            for start in range(0, len(stale), CHUNK):
                await link.redis.delete(*stale[start : start + CHUNK])
        if stale:
            log.warning(
                "rank index: Redis restarted, every period is rebuilt",
                extra={"event": "rank_redis_restarted", "keys": len(stale)},
            )
