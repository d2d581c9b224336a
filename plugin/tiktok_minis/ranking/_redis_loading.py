"""Loading a board period into the shared rank index from the database.

A read that finds no marker asks for a rebuild, and answers ``None``. One process takes the
lock (``SET lock token NX PX``), empties ``z`` and ``rows`` (not ``gone``), then applies what
``loader`` reads, in pipelined batches (one in flight while the next is read), through the same
version-checked script that serves writes, extending its lease with each batch. Writes never
wait for a load: they go to Redis whatever the marker says. A write committed before the load
began is read by the loader; one committed later is applied by its writer, and the versions
decide whichever lands second, so a load never undoes a newer write, even when the loader reads
one snapshot. Only then, if the lock is still the loader's, is the marker set. Other processes
that asked meanwhile wait for the marker, or for the lock to lapse (its holder died), and take
over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from redis.exceptions import RedisError

from tiktok_minis.ranking._logs import log_loaded
from tiktok_minis.ranking._redis_link import POLL_SECONDS, Link
from tiktok_minis.ranking._redis_names import PeriodKeys
from tiktok_minis.ranking._redis_restart import ServerWatch
from tiktok_minis.ranking._redis_scripts import LOCK_MS, lock_token
from tiktok_minis.ranking.base import Loader
from tiktok_minis.ranking.keys import Order

__all__ = ["Rebuilds", "Spawn"]

log = logging.getLogger("tiktok_minis.ranking")

#: Runs a coroutine in the index's background; ``None`` once the index is closed.
Spawn = Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any] | None]

#: After a failed load, the period is not tried again for this long.
_LOAD_RETRY_SECONDS: Final = 5.0
#: Rebuilds one process runs at once.
_REBUILDS: Final = 4


class Rebuilds:
    """The rebuilds this process runs: at most one per period, a few at once."""

    def __init__(self, link: Link, server: ServerWatch, loader: Loader, spawn: Spawn) -> None:
        self._link = link
        self._server = server
        self._loader = loader
        self._spawn = spawn
        self._rebuilding: dict[tuple[str, str], asyncio.Task[Any]] = {}
        self._slots = asyncio.Semaphore(_REBUILDS)

    def request(self, board: str, period: str, order: Order) -> None:
        """Rebuild the period in the background, unless this process rebuilds it already."""
        where = (board, period)
        if where in self._rebuilding:
            return
        task = self._spawn(self._rebuild(board, period, order))
        if task is not None:
            self._rebuilding[where] = task
            task.add_done_callback(lambda done: self._rebuilt(where, done))

    def running(self, board: str, period: str) -> asyncio.Task[Any] | None:
        """This process's rebuild of the period, if one runs."""
        return self._rebuilding.get((board, period))

    def forget(self) -> None:
        """Forget the rebuilds (the index closed, their tasks are cancelled)."""
        self._rebuilding.clear()

    def _rebuilt(self, where: tuple[str, str], task: asyncio.Task[Any]) -> None:
        if self._rebuilding.get(where) is task:
            del self._rebuilding[where]

    async def _rebuild(self, board: str, period: str, order: Order) -> None:
        link = self._link
        names = link.names(board, period)
        try:
            while True:
                # Before the lock: noticing a restart deletes every lock under the prefix.
                run_id = await self._server.run_id()
                await self._server.observe(run_id)
                token = lock_token()
                async with link.calls:
                    locked = await link.redis.set(names.lock, token, nx=True, px=LOCK_MS)
                if locked:
                    async with self._slots:
                        await self._load(board, period, order, names, token, run_id)
                    return
                # Another process loads it: wait for its marker, or for its lock to lapse.
                async with link.calls:
                    if await link.redis.exists(names.ready):
                        return
                await asyncio.sleep(POLL_SECONDS)
        except RedisError as exc:
            link.failed("rebuild", exc)
        except Exception:
            log.exception(
                "rank index load failed",
                extra={"event": "rank_load_failed", "board": board, "period": period},
            )
            # Reads keep answering None meanwhile; a failing loader is not called per read.
            await asyncio.sleep(_LOAD_RETRY_SECONDS)

    async def _load(
        self,
        board: str,
        period: str,
        order: Order,
        names: PeriodKeys,
        token: str,
        run_id: str | None,
    ) -> None:
        started = time.perf_counter()
        scripts = self._link.scripts
        released = False
        try:
            async with self._link.calls:
                state = int(await scripts.begin(keys=names.all, args=[token]))
            if state != 1:
                released = True  # ready already (the lock given back), or the lock not ours
                return
            rows = await self._load_rows(board, period, order, names, token)
            # A server restarted under the load lost part of it: the marker must not be set.
            if rows is not None and run_id is not None and await self._server.run_id() != run_id:
                rows = None
            if rows is not None:
                async with self._link.calls:
                    finished = await scripts.finish(keys=names.all, args=[*self._link.ttls, token])
                released = int(finished) == 1
            _log_load(board, period, rows if released else None, started)
        finally:
            if not released:
                # Given back at once, so that another try need not wait out the lease.
                with contextlib.suppress(RedisError):
                    async with self._link.calls:
                        await scripts.release(keys=[names.lock], args=[token])

    async def _load_rows(
        self, board: str, period: str, order: Order, names: PeriodKeys, token: str
    ) -> int | None:
        """Apply what the loader reads; how many rows, ``None`` if the lock was lost meanwhile.

        One batch is in flight while the loader reads the next: the database's reading and
        Redis's applying overlap instead of taking turns.
        """
        rows = 0
        flying: asyncio.Task[bool] | None = None
        try:
            async for batch in self._loader(board, period, order):
                landing, flying = (
                    flying,
                    asyncio.ensure_future(self._link.apply_rows(names, batch, token=token)),
                )
                if landing is not None and not await landing:
                    return None
                rows += len(batch)
            if flying is not None:
                landing, flying = flying, None
                if not await landing:
                    return None
            return rows
        finally:
            # A batch still in flight when the load fails or is cancelled is abandoned (it is
            # version-checked: finishing or not, it does no harm), never left unawaited.
            if flying is not None:
                flying.cancel()
                await asyncio.gather(flying, return_exceptions=True)


def _log_load(board: str, period: str, rows: int | None, started: float) -> None:
    """Log how a load that got the lock ended: ``rows`` loaded, ``None`` if superseded."""
    if rows is None:
        # The lock was taken from this load (a repair, a restart, a lapsed lease):
        # whoever took it decides; the next read asks again if need be.
        log.info(
            "rank index load superseded",
            extra={"event": "rank_load_superseded", "board": board, "period": period},
        )
        return
    log_loaded(board, period, rows, started)
