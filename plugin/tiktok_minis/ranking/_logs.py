"""What every rank index logs alike."""

from __future__ import annotations

import logging
import time

__all__ = ["log_loaded"]

log = logging.getLogger("tiktok_minis.ranking")


def log_loaded(board: str, period: str, rows: int, started: float) -> None:
    """Log that a board period was loaded in full: ``rows`` rows since ``started``.

    ``started`` is a ``time.perf_counter()`` reading taken when the load began.
    """
    log.info(
        "rank index loaded",
        extra={
            "event": "rank_loaded",
            "board": board,
            "period": period,
            "rows": rows,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
