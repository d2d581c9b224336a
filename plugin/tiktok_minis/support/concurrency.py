"""Concurrency tools the services share: keyed locks, single-flight, owned background tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

__all__ = ["KeyedLock", "SingleFlight", "TaskSet"]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

log = logging.getLogger("tiktok_minis")


class KeyedLock(Generic[K]):
    """One asyncio lock per key, dropped once nobody holds or waits for it (bounded memory)."""

    def __init__(self) -> None:
        self._locks: dict[K, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        """Hold the lock of ``key`` for the body of the ``async with``."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class SingleFlight(Generic[K, T]):
    """Concurrent calls with one key share one execution and its result (or its error).

    The shared call runs in its own task, so a caller that gives up (is cancelled) does not cancel
    the work the other callers wait for. A ``fresh`` run never joins a call already under way: it
    starts its own, which later callers join instead, and the older call is then no longer
    *current* (:meth:`is_current`), so it can tell that its inputs may be out of date.
    """

    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Task[T]] = {}

    async def run(self, key: K, call: Callable[[], Awaitable[T]], *, fresh: bool = False) -> T:
        """The result of ``call()``, or of the call already under way for ``key``.

        With ``fresh``, ``call()`` runs even when a call for ``key`` is under way (whose callers
        keep waiting for that one).
        """
        task = self._flights.get(key)
        if task is None or fresh:
            task = asyncio.ensure_future(call())
            self._flights[key] = task
            task.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(task)

    def _landed(self, key: K, task: asyncio.Task[T]) -> None:
        # Only the current flight leaves the table: a superseded one must not remove its successor.
        if self._flights.get(key) is task:
            del self._flights[key]

    def is_current(self, key: K) -> bool:
        """Whether the calling task is the call that new callers of ``key`` would join.

        ``False`` inside a call that a ``fresh`` run superseded (and outside any call).
        """
        task = self._flights.get(key)
        return task is not None and task is asyncio.current_task()

    def __len__(self) -> int:
        return len(self._flights)


class TaskSet:
    """Background tasks owned by one object: references kept, errors logged, closed once.

    ``close`` cancels whatever is still running and waits for it; closing twice is harmless.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """Run ``coro`` in the background; ``None`` (and the coroutine closed) once closed."""
        if self._closed:
            coro.close()
            return None
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called: a closed set spawns nothing more."""
        return self._closed

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "background task failed",
                extra={"event": "task_failed", "owner": self._name},
                exc_info=task.exception(),
            )

    async def close(self) -> None:
        """Cancel and await every task still running."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)
