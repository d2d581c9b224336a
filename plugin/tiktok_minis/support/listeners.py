"""One change feed for every service: subscribe a listener, get back a one-shot unsubscribe."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["Listeners"]

T = TypeVar("T")


class Listeners(Generic[T]):
    """Listeners of one kind of change, called synchronously in subscription order.

    The list is a tuple replaced on every (un)subscribe: emitting iterates it without copying,
    and a listener that unsubscribes while being called does not disturb the iteration. The
    unsubscribe function is one-shot, so calling it twice never removes another subscription
    of the same listener. A listener that raises is logged and the others still run.
    """

    def __init__(self, log: logging.Logger, what: str) -> None:
        """``what`` names the change in the log line of a failing listener."""
        self._log = log
        self._what = what
        self._listeners: tuple[Callable[[T], None], ...] = ()

    def subscribe(self, listener: Callable[[T], None]) -> Callable[[], None]:
        """Call ``listener`` with every change; the returned function unsubscribes it."""
        self._listeners = (*self._listeners, listener)
        subscribed = True

        def unsubscribe() -> None:
            nonlocal subscribed
            if subscribed:
                subscribed = False
                listeners = list(self._listeners)
                listeners.remove(listener)
                self._listeners = tuple(listeners)

        return unsubscribe

    def emit(self, change: T, extra: Mapping[str, Any] | None = None) -> None:
        """Call every listener with ``change``; ``extra`` goes into a failure's log record."""
        log = self._log
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:
                log.exception(
                    f"{self._what} listener failed",
                    extra={"event": "listener_failed", **(extra or {})},
                )
