"""The quieting of python-socketio's and engine.io's logs, and of the guard's own.

Their INFO lines carry whole packets (login codes and sessions included) and a hostile client
chooses how many of them there are: each logger goes to WARNING unless the game set a level,
and through :class:`LogRateLimit`, so one call site writes a few lines a minute at most.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import socketio

__all__ = ["GUARD_LOGGER", "LogRateLimit", "route_logs"]

#: The logger of the socket guard's refusals.
GUARD_LOGGER = "tiktok_minis.socket_guard"


def route_logs(sio: socketio.AsyncServer) -> None:
    """Send the libraries' logs to the plugin's loggers, once each, at WARNING, rate-limited.

    Without ``logger=``, each library logs to its own logger with a plain-text handler of its own
    and, through the root logger, to the game's handlers too: every traceback written twice. A
    logger the game passed stays its own.
    """
    if sio.logger is logging.getLogger("socketio.server"):
        sio.logger = _quiet_logger("tiktok_minis.socketio")
    if sio.eio.logger is logging.getLogger("engineio.server"):
        sio.eio.logger = _quiet_logger("tiktok_minis.engineio")
    _rate_limit(logging.getLogger(GUARD_LOGGER))


def _quiet_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    _rate_limit(logger)
    return logger


def _rate_limit(logger: logging.Logger) -> None:
    if not any(isinstance(existing, LogRateLimit) for existing in logger.filters):
        logger.addFilter(LogRateLimit())


class LogRateLimit(logging.Filter):
    """Lets each message shape through ``burst`` times per ``window`` seconds; counts the rest.

    A shape is a logging call site (logger, level, file and line, and the ``reason`` extra where
    there is one), so a flood of one bad packet is a few lines a minute whatever it carries. The
    first record let through after some were held back carries ``suppressed``: how many. Long
    string arguments are cut, so one line stays small even when a client chose what it holds.
    """

    #: Distinct shapes remembered; past it the counts start over (shapes are call sites: few).
    MAX_SHAPES = 1024
    MAX_ARG_CHARS = 200

    def __init__(
        self, burst: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()  # handlers may log from threads
        # shape -> [window start, let through in it, held back since the last let through]
        self._shapes: dict[tuple[str, int, str, int, str], list[float]] = {}
        #: Records held back since this filter was made.
        self.suppressed_total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` goes on; held-back records are only counted."""
        # A ``reason`` extra splits a call site: one flood does not hide another kind.
        shape = (record.name, record.levelno, record.pathname, record.lineno, _reason(record))
        now = self._clock()
        with self._lock:
            state = self._shapes.get(shape)
            if state is None:
                if len(self._shapes) >= self.MAX_SHAPES:
                    self._shapes.clear()
                state = self._shapes[shape] = [now, 0, 0]
            elif now - state[0] >= self.window:
                state[0], state[1] = now, 0
            if state[1] >= self.burst:
                state[2] += 1
                self.suppressed_total += 1
                return False
            state[1] += 1
            held_back, state[2] = int(state[2]), 0
        if held_back:
            record.suppressed = held_back
        _clip_args(record, self.MAX_ARG_CHARS)
        return True


def _reason(record: logging.LogRecord) -> str:
    reason = getattr(record, "reason", "")
    return reason if isinstance(reason, str) else ""


def _clip_args(record: logging.LogRecord, limit: int) -> None:
    args = record.args
    if isinstance(args, tuple) and any(isinstance(a, str) and len(a) > limit for a in args):
        record.args = tuple(
            a[:limit] + "..." if isinstance(a, str) and len(a) > limit else a for a in args
        )
