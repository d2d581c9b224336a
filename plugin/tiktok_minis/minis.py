"""The composition root: :class:`TikTokMinis` builds every part in order, closes in reverse."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import socketio
from aiohttp import web
from socketio.async_pubsub_manager import AsyncPubSubManager

if TYPE_CHECKING:
    from redis.asyncio import Redis

from tiktok_minis.errors import ConfigurationError
from tiktok_minis.ops.health import Health, UpstreamHealth
from tiktok_minis.ops.metrics import Metrics
from tiktok_minis.ranking import MemoryRankIndex, NoRankIndex, RankIndex
from tiktok_minis.realtime import DEFAULT_MAX_FRAME_BYTES, LoginHook, Realtime, RedisManager, harden
from tiktok_minis.sandbox import Sandbox, SandboxServer, create_control_app
from tiktok_minis.services.avatars import Avatars
from tiktok_minis.services.leaderboards import (
    BoardRegistry,
    Leaderboards,
    index_loader,
    index_sweep,
)
from tiktok_minis.services.players import Player, Players
from tiktok_minis.services.profile import Placeholder
from tiktok_minis.services.refresher import Refresher
from tiktok_minis.services.sessions import Sessions, SessionSigner
from tiktok_minis.settings import Settings
from tiktok_minis.store import score_removals
from tiktok_minis.store import webhooks as webhook_events
from tiktok_minis.store.crypto import TokenCipher
from tiktok_minis.store.database import Database, is_outage
from tiktok_minis.store.score_removals import Removal
from tiktok_minis.support.concurrency import TaskSet
from tiktok_minis.support.feeds import Feed
from tiktok_minis.tiktok.client import TikTokClient
from tiktok_minis.tiktok.throttle import RedisPace
from tiktok_minis.web.webhook import DEFAULT_PATH as WEBHOOK_PATH
from tiktok_minis.web.webhook import add_webhook_route, event_retention

__all__ = ["MINIS_KEY", "TikTokMinis"]

log = logging.getLogger("tiktok_minis")

STATIC_DIR = Path(__file__).parent / "static"
#: Where the plugin serves its own files and, in sandbox mode, the emulator's browser routes.
URL_PREFIX = "/ttminis"

MINIS_KEY: web.AppKey[TikTokMinis] = web.AppKey("tiktok_minis", object)  # type: ignore[arg-type]

_HOUSEKEEPING_SECONDS = 3600.0


class TikTokMinis:
    """The plugin, as a game embeds it.

    ::

        minis = TikTokMinis(Settings())
        minis.boards.define(Board("global", client_scores=True))
        sio = minis.create_server()          # or the game's own AsyncServer
        sio.attach(app)
        minis.attach(sio, app)

    ``players`` and ``leaderboards`` are the services for the game's own server code; they work
    once the app has started (or after ``await minis.start()`` outside aiohttp).
    """

    def __init__(
        self, settings: Settings | None = None, *, clock: Callable[[], float] | None = None
    ) -> None:
        """``clock`` (seconds since the epoch) replaces the real time, emulator included: tests
        move it by hand (:class:`tiktok_minis.sandbox.ManualClock`) to make days pass at once."""
        self.settings = settings if settings is not None else Settings()
        self.clock: Callable[[], float] = clock if clock is not None else time.time
        self.boards = BoardRegistry()
        #: The built-in TikTok emulator with ``Settings(sandbox=True)``; else ``None``.
        self.sandbox: Sandbox | None = Sandbox(clock=self.clock) if self.settings.sandbox else None
        self.database = Database(self.settings.database_url, self.settings.database_pool_size)
        #: The Redis client the processes share state through (``TTMINIS_REDIS_URL``), if any.
        self.redis = _redis_client(self.settings.redis_url) if self.settings.redis_url else None
        self._client = TikTokClient.from_settings(
            self.settings,
            clock=self.clock,
            # One upstream budget for the whole app: every process draws from it.
            pace=RedisPace(self.redis, f"{self.settings.redis_channel}:upstream")
            if self.redis is not None
            else None,
        )
        #: Prometheus metrics; serve ``metrics.handler`` where the scraper looks.
        self.metrics = Metrics()
        upstream_health = UpstreamHealth(self.clock)
        metrics = self.metrics

        def on_call(endpoint: str, status: int | None, seconds: float) -> None:
            metrics.upstream(endpoint, status, seconds)
            upstream_health.record(endpoint, status, seconds)

        self._client.on_call = on_call
        #: Liveness and readiness (mounted by ``attach`` under ``/ttminis/health/``).
        self.health = Health(
            started=lambda: self._started,
            database_answers=self.database.ping,
            redis=self.redis,
            upstream=upstream_health,
        )
        if self._client.throttle is not None:
            self.metrics.watch_throttle(self._client.throttle)
        self.metrics.watch_connections(lambda: self.connection_count)
        self.avatars = Avatars(
            max_bytes=self.settings.avatar_max_bytes,
            timeout_seconds=self.settings.avatar_timeout_seconds,
            default_avatar_url=self.settings.placeholder_avatar_url,
            url_prefix=f"{URL_PREFIX}/avatars",
        )
        placeholder = Placeholder(
            self.settings.placeholder_name, self.settings.placeholder_avatar_url
        )
        self.players = Players(
            self._client,
            TokenCipher(self.settings.secret_keys),
            placeholder,
            refresh_days=self.settings.profile_refresh_days,
            token_leeway=self.settings.token_refresh_leeway,
            clock=self._now,
            keep_avatar=self.avatars.keep,
        )
        #: Where the boards' order is kept for O(log n) ranks (``TTMINIS_RANK_INDEX``).
        self.rank_index = self._rank_index()
        self.leaderboards = Leaderboards(
            self.boards, self.database, placeholder, clock=self._now, index=self.rank_index
        )
        # Scores deleted by any process (a forget, from the shell too) leave every rank index.
        self._score_removals: Feed[Removal] = Feed(
            "score-removals",
            score_removals.removed_since,
            score_removals.latest_id,
            poll_seconds=self.settings.session_poll_seconds,
        )
        self._score_removals.subscribe(self.leaderboards.scores_removed)
        self.refresher = Refresher(
            self.players,
            dialect=lambda: self.database.dialect,
            clock=self._now,
            interval_seconds=self.settings.refresher_interval_seconds,
            batch_size=self.settings.refresher_batch_size,
            concurrency=self.settings.refresher_concurrency,
            throttle=self._client.throttle,
            on_round=self.metrics.refresh_round,
        )
        #: Issues, resumes and ends sessions (logout, logout everywhere, forget).
        self.sessions = Sessions(
            SessionSigner(self.settings.secret_keys, self.settings.session_ttl_seconds),
            self.players,
            clock=self._now,
            poll_seconds=self.settings.session_poll_seconds,
            retention=timedelta(seconds=self.settings.session_ttl_seconds),
        )
        self._login_hooks: list[LoginHook] = []
        self._realtime: Realtime | None = None
        self._sandbox_server: SandboxServer | None = None
        self._tasks = TaskSet("tiktok-minis")
        self._started = False
        self.players.subscribe(self._player_changed)
        self.players.subscribe_forgotten(self._player_forgotten)

    # -- what a game calls --------------------------------------------------------------------

    def on_login(self, hook: LoginHook) -> LoginHook:
        """Decorate ``async def hook(sid, player)``: called after each successful login."""
        self._login_hooks.append(hook)
        return hook

    def create_server(self, **options: Any) -> socketio.AsyncServer:
        """An ``AsyncServer`` set up for the plugin: Redis manager when configured, sane limits."""
        if self.settings.redis_url:
            options.setdefault("client_manager", self.redis_manager())
        options.setdefault("async_mode", "aiohttp")
        options.setdefault("cors_allowed_origins", [])
        options.setdefault("max_http_buffer_size", DEFAULT_MAX_FRAME_BYTES)
        return socketio.AsyncServer(**options)

    def redis_manager(self) -> RedisManager:
        """The Socket.IO client manager that shares rooms and pushes through
        ``TTMINIS_REDIS_URL``, for a game that builds its own ``AsyncServer``:
        ``socketio.AsyncServer(client_manager=minis.redis_manager(), ...)``."""
        if not self.settings.redis_url:
            raise ConfigurationError("redis_manager() needs TTMINIS_REDIS_URL.")
        _redis_client(self.settings.redis_url)  # the redis extra is there, or a sentence says so
        metrics = self.metrics
        return RedisManager(
            self.settings.redis_url,
            channel=self.settings.redis_channel,
            on_failure=metrics.redis_failure,
            on_link=lambda up: metrics.redis_link(up=up),
            on_relinked=self.leaderboards.announce_all,
        )

    def _share_rooms(self, sio: socketio.AsyncServer) -> None:
        """With ``TTMINIS_REDIS_URL``, make sure ``sio`` shares rooms and pushes through Redis.

        A server still on python-socketio's default in-process manager gets the Redis manager
        (nothing was emitted through it yet); one with a manager of another kind is refused,
        since pushes would silently stay in one process.
        """
        if not self.settings.redis_url or isinstance(sio.manager, AsyncPubSubManager):
            return
        if type(sio.manager) is not socketio.AsyncManager:
            raise ConfigurationError(
                "TTMINIS_REDIS_URL is set but the AsyncServer given to attach() has a client "
                f"manager of its own ({type(sio.manager).__name__}): build the server with "
                "minis.create_server(), or pass client_manager=minis.redis_manager()."
            )
        manager = self.redis_manager()
        manager.set_server(sio)
        sio.manager = manager
        log.info(
            "redis manager installed on the game's server",
            extra={"event": "redis_manager_installed"},
        )

    def attach(self, sio: socketio.AsyncServer, app: web.Application) -> None:
        """Register the events on ``sio`` and the plugin's routes and lifecycle on ``app``."""
        if self._realtime is not None:
            raise RuntimeError("TikTokMinis.attach() was already called")
        self._share_rooms(sio)
        self._realtime = Realtime(
            sio,
            players=self.players,
            leaderboards=self.leaderboards,
            sessions=self.sessions,
            settings=self.settings,
            login_hooks=self._login_hooks,
            on_event=self.metrics.event,
            on_push=self.metrics.pushed,
            is_outage=is_outage,
        )
        self._realtime.register()
        harden(sio)
        self.leaderboards.subscribe(self._realtime.board_changed)
        self.sessions.subscribe(self._realtime.sessions_ended)
        app.router.add_static(f"{URL_PREFIX}/static/", STATIC_DIR, append_version=False)
        self.avatars.add_routes(app)
        self.health.add_routes(app)
        add_webhook_route(
            app,
            players=self.players,
            client_key=self.settings.effective_client_key,
            client_secret=self.settings.effective_client_secret.get_secret_value(),
            tolerance_seconds=self.settings.webhook_tolerance_seconds,
            clock=self.clock,
            path=WEBHOOK_PATH,
        )
        if self.sandbox is not None:
            self.sandbox.webhook_url = WEBHOOK_PATH
            # The emulator's avatar links stay absolute (its own loopback server): the plugin
            # fetches them and serves copies under /ttminis/avatars/, as with TikTok's CDN.
            app.add_subapp(f"{URL_PREFIX}/sandbox/", create_control_app(self.sandbox))
        app[MINIS_KEY] = self
        app.cleanup_ctx.append(self._lifespan)

        async def close_sockets(_: web.Application) -> None:
            # Tell every client this process is going away, so it reconnects elsewhere and
            # resumes its session, and end the transport: engineio sends the close packet but
            # leaves the websocket open until the client hangs up, which held a SIGTERM for
            # seconds while any tab was open. A None in the send queue is engineio's own signal
            # for its writer to close the websocket after what is queued (the close packet).
            # wait=False: a socket whose client is already gone never drains its queue, and
            # engineio's disconnect() would wait on it forever.
            for socket in list(sio.eio.sockets.values()):
                await socket.close(wait=False, reason=sio.eio.reason.SERVER_DISCONNECT)
                socket.queue.put_nowait(None)
            close_manager = getattr(sio.manager, "close", None)
            if close_manager is not None:
                await close_manager()

        app.on_shutdown.append(close_sockets)

    @property
    def connection_count(self) -> int:
        """Sockets this process holds on the plugin's namespace (0 before ``attach``)."""
        return self._realtime.connection_count if self._realtime else 0

    def open_id_of(self, sid: str) -> str | None:
        """The ``open_id`` of the player logged in on connection ``sid`` of this process.

        ``None`` before login, after logout, for an unknown ``sid`` and before ``attach``. It
        covers resumed sessions too (which do not run the ``on_login`` hooks), so a game's own
        events can find their player: ``open_id = minis.open_id_of(sid)``.
        """
        return self._realtime.open_id_of(sid) if self._realtime else None

    async def healthy(self) -> bool:
        """Whether this process can serve players: started, its database (and Redis, when
        configured) answering. ``minis.health.ready()`` says what failed."""
        ok, _ = await self.health.ready()
        return ok

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database, the emulator (sandbox mode) and the TikTok client, in that order.

        A start that fails half-way closes what it opened before raising.
        """
        if self._started:
            return
        try:
            await self._open_parts()
        except BaseException:
            await self.close()
            raise
        self._started = True

    async def _open_parts(self) -> None:
        await self.database.open()
        if self.sandbox is not None:
            log.warning(
                "sandbox mode: a built-in TikTok emulator stands in for TikTok and sessions are "
                "signed with a public key; never run it in production",
                extra={"event": "sandbox_mode"},
            )
            self._sandbox_server = SandboxServer(self.sandbox)
            await self._sandbox_server.start()
            self._client.base_url = self._sandbox_server.url
            # Its avatar links point at its own loopback server: that origin, and nothing else
            # internal, may be fetched (replaced on every start: the port changes).
            self.avatars.allowed_origins = frozenset({self._sandbox_server.url})
        await self._client.start()
        await self.avatars.start()
        await self.sessions.start()
        await self.rank_index.start()
        await self._score_removals.start()
        if self._realtime is not None:
            self._realtime.start()
        if self.settings.refresher_enabled:
            self.refresher.start()
        self._tasks.spawn(self._housekeeping_loop())

    async def close(self) -> None:
        """Close everything ``start`` opened, in reverse. Closing twice is harmless."""
        self._started = False
        await self.refresher.close()
        if self._realtime is not None:
            await self._realtime.close()
        await self.sessions.close()
        await self._score_removals.close()
        await self.leaderboards.close()
        await self.rank_index.close()
        await self._tasks.close()
        self._tasks = TaskSet("tiktok-minis")
        await self._client.close()
        await self.avatars.close()
        if self._sandbox_server is not None:
            await self._sandbox_server.close()
            self._sandbox_server = None
        await self.database.close()
        if self.redis is not None:
            await self.redis.aclose()

    async def housekeeping(self) -> int:
        """Delete what is no longer needed: webhook event digests past TikTok's retry window,
        ended sessions older than any session can live.

        Runs hourly while started; returns how many rows went.
        """
        retention = event_retention(self.settings.webhook_tolerance_seconds)
        events = await webhook_events.delete_older_than(retention)
        # Every process follows removals within a poll; a day is plenty for one that lagged.
        removals = await score_removals.delete_older_than(self._now() - timedelta(days=1))
        return events + removals + await self.sessions.housekeeping()

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(_HOUSEKEEPING_SECONDS)
            try:
                await self.housekeeping()
            except Exception:
                log.exception("housekeeping failed", extra={"event": "housekeeping_failed"})

    async def _lifespan(self, app: web.Application) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.close()

    # -- wiring between the services and the pushes ------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _rank_index(self) -> RankIndex:
        """The rank index ``TTMINIS_RANK_INDEX`` asks for (``auto``: in memory for one process,
        on Redis with ``TTMINIS_REDIS_URL``, several processes)."""
        choice = self.settings.rank_index
        if choice == "auto":
            choice = "redis" if self.redis is not None else "memory"
        if choice == "memory":
            return MemoryRankIndex(index_loader(self.database))
        if choice == "redis":
            if self.redis is None:
                raise ConfigurationError("TTMINIS_RANK_INDEX=redis needs TTMINIS_REDIS_URL.")
            from tiktok_minis.ranking.redis import RedisRankIndex  # the redis extra is in

            return RedisRankIndex(
                self.redis,
                index_loader(self.database),
                prefix=f"{self.settings.redis_channel}:rank",
                sweep=index_sweep(self.database, self.boards),
            )
        return NoRankIndex()

    def _player_forgotten(self, player: Player) -> None:
        # The forget recorded the end of the player's sessions: unbind this process's connections
        # now rather than at the next poll (the other processes' polls do the same for theirs).
        self._tasks.spawn(self.sessions.poll())
        self._tasks.spawn(self._score_removals.poll())
        self.leaderboards.announce_all()

    def _player_changed(self, player: Player) -> None:
        if self._realtime is not None:
            self._tasks.spawn(self._realtime.push_player(player))
        self._tasks.spawn(self.leaderboards.notify_profile_changed(player.open_id))


def _redis_client(url: str) -> Redis:
    """A Redis client for ``url`` (it connects on first use); the ``redis`` extra must be in."""
    try:
        from redis.asyncio import Redis
    except ModuleNotFoundError:
        raise ConfigurationError(
            "TTMINIS_REDIS_URL is set but the redis package is not installed: "
            "pip install 'tiktok-minis[redis]'"
        ) from None
    # A bounded socket timeout: a Redis that stops answering fails a call in seconds, and the
    # callers fall back (the upstream budget to this process, ranks to the database).
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    # One quick retry, not redis-py's ten with a backoff of up to a second: the first call of
    # an outage must not hold its caller for seconds.
    return Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=2,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
    )
