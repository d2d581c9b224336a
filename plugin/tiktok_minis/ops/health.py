"""Liveness and readiness, for a load balancer, an orchestrator or a person with curl.

``GET /ttminis/health/live`` answers 200 while the process serves at all. ``GET
/ttminis/health/ready`` answers 200 when the plugin is started (its schema migrated), its
database answers and, with ``TTMINIS_REDIS_URL``, Redis answers; else 503, with what failed.
TikTok's recent health is a detail of the answer, never a failure: a TikTok outage must not take
the game's servers out of the load balancer (logins fail with ``upstream_unavailable``, the rest
of the game goes on).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Health", "UpstreamHealth"]

#: Where the routes are mounted.
PREFIX = "/ttminis/health"


class UpstreamHealth:
    """TikTok's recent answers, as the TikTok client reports each operation."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.last_ok: float | None = None
        self.last_failure: float | None = None
        self.failures_in_a_row = 0

    def record(self, endpoint: str, status: int | None, seconds: float) -> None:
        """An operation ended with HTTP ``status`` (``None``: no answer at all)."""
        if status is not None and status < 500 and status != 429:
            self.last_ok = self._clock()
            self.failures_in_a_row = 0
        else:
            self.last_failure = self._clock()
            self.failures_in_a_row += 1

    def detail(self) -> dict[str, Any]:
        """What readiness says about TikTok: a detail, never a failure."""
        now = self._clock()
        return {
            "answering": self.failures_in_a_row == 0,
            "failures_in_a_row": self.failures_in_a_row,
            "seconds_since_ok": None if self.last_ok is None else round(now - self.last_ok, 1),
        }


class Health:
    """The plugin's liveness and readiness checks, and their routes."""

    def __init__(
        self,
        *,
        started: Callable[[], bool],
        database_answers: Callable[[], Awaitable[bool]],
        redis: Redis | None,
        upstream: UpstreamHealth,
    ) -> None:
        self._started = started
        self._database_answers = database_answers
        self._redis = redis
        self.upstream = upstream

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Whether this process can serve players, and why not."""
        started = self._started()
        database = started and await self._database_answers()
        redis: bool | None = None
        if self._redis is not None:
            try:
                redis = bool(await self._redis.ping())
            except Exception:  # noqa: BLE001 (any failure means "not answering")
                redis = False
        ok = database and redis is not False
        return ok, {
            "ok": ok,
            "started": started,
            "database": database,
            "redis": redis,
            "tiktok": self.upstream.detail(),
        }

    def add_routes(self, app: web.Application, prefix: str = PREFIX) -> None:
        """Mount ``live`` and ``ready`` under ``prefix``."""

        async def live(_: web.Request) -> web.Response:
            return web.json_response({"ok": True})

        async def ready(_: web.Request) -> web.Response:
            ok, detail = await self.ready()
            return web.json_response(detail, status=200 if ok else 503)

        app.router.add_get(f"{prefix}/live", live)
        app.router.add_get(f"{prefix}/ready", ready)
