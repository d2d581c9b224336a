"""The composition root: :class:`TikTokMinis` builds every part in order, closes in reverse."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import socketio
from aiohttp import web

if TYPE_CHECKING:
    pass

from tiktok_minis.errors import ConfigurationError
from tiktok_minis.ops.health import Health, UpstreamHealth
from tiktok_minis.ops.metrics import Metrics
from tiktok_minis.realtime import (
    LoginHook,
    Realtime,
    RedisManager,
    build_server,
    hang_up,
    harden,
    share_rooms,
)
from tiktok_minis.sandbox import Sandbox, SandboxServer, create_control_app
from tiktok_minis.sandbox.browser import add_sdk_route
from tiktok_minis.services.avatars import Avatars
from tiktok_minis.services.housekeeping import Housekeeping
from tiktok_minis.services.leaderboards import BoardRegistry, Leaderboards
from tiktok_minis.services.players import Player, Players
from tiktok_minis.services.profile import Placeholder
from tiktok_minis.services.rank_indexes import rank_index_for
from tiktok_minis.services.refresher import Refresher
from tiktok_minis.services.sessions import Sessions, SessionSigner
from tiktok_minis.services.webhook_events import WebhookEvents
from tiktok_minis.settings import Settings
from tiktok_minis.store import Store
from tiktok_minis.store.crypto import TokenCipher
from tiktok_minis.store.database import Database, is_outage
from tiktok_minis.store.score_removals import Removal
from tiktok_minis.support.concurrency import TaskSet
from tiktok_minis.support.feeds import Feed
from tiktok_minis.support.redis_client import redis_client, require_redis
from tiktok_minis.tiktok.client import TikTokClient
from tiktok_minis.tiktok.throttle import RedisPace
from tiktok_minis.web.avatars import add_avatar_routes
from tiktok_minis.web.webhook import DEFAULT_PATH as WEBHOOK_PATH
from tiktok_minis.web.webhook import add_webhook_route

__all__ = ["MINIS_KEY", "TikTokMinis"]

log = logging.getLogger("tiktok_minis")

STATIC_DIR = Path(__file__).parent / "static"
#: Where the plugin serves its own files and, in sandbox mode, the emulator's browser routes.
URL_PREFIX = "/ttminis"


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
        #: The queries on that database, one object per table, handed to every service.
        self.store = Store(self.database)
        #: The Redis client the processes share state through (``TTMINIS_REDIS_URL``), if any.
        self.redis = redis_client(self.settings.redis_url) if self.settings.redis_url else None
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
        #: Liveness and readiness (mounted by ``attach`` under ``/ttminis/health/``).
        self.health = self._observe()
        placeholder = Placeholder(
            self.settings.placeholder_name, self.settings.placeholder_avatar_url
        )
        self._build_players(placeholder)
        self._build_boards(placeholder)
        self._build_sessions()
        self._webhook_events = WebhookEvents(self.store)
        self._housekeeping = Housekeeping(
            self.store,
            self.sessions,
            webhook_tolerance_seconds=self.settings.webhook_tolerance_seconds,
            clock=self._now,
        )
        self._login_hooks: list[LoginHook] = []
        self._realtime: Realtime | None = None
        #: What start opened, each with its close; ``close`` unwinds it in reverse.
        self._opened = AsyncExitStack()
        self._tasks = TaskSet("tiktok-minis")
        self._started = False
        self.players.subscribe(self._player_changed)
        self.players.subscribe_forgotten(self._player_forgotten)

    def _observe(self) -> Health:
        """Metrics and TikTok's recent health fed by every upstream call; the health checks."""
        upstream_health = UpstreamHealth(self.clock)
        metrics = self.metrics

        def on_call(endpoint: str, status: int | None, seconds: float) -> None:
            metrics.upstream(endpoint, status, seconds)
            upstream_health.record(endpoint, status, seconds)

        self._client.on_call = on_call
        if self._client.throttle is not None:
            metrics.watch_throttle(self._client.throttle)
        metrics.watch_connections(lambda: self.connection_count)
        return Health(
            started=lambda: self._started,
            database_answers=self.database.ping,
            redis=self.redis,
            upstream=upstream_health,
        )

    def _build_players(self, placeholder: Placeholder) -> None:
        """The avatar copies and the player service, which keeps avatars as profiles arrive."""
        self.avatars = Avatars(
            self.store,
            max_bytes=self.settings.avatar_max_bytes,
            timeout_seconds=self.settings.avatar_timeout_seconds,
            default_avatar_url=self.settings.placeholder_avatar_url,
            url_prefix=f"{URL_PREFIX}/avatars",
        )
        self.players = Players(
            self.store,
            self._client,
            TokenCipher(self.settings.secret_keys),
            placeholder,
            refresh_days=self.settings.profile_refresh_days,
            token_leeway=self.settings.token_refresh_leeway,
            clock=self._now,
            keep_avatar=self.avatars.keep,
        )

    def _build_boards(self, placeholder: Placeholder) -> None:
        """The rank index, the leaderboard service, and the feed of scores removed anywhere."""
        #: Where the boards' order is kept for O(log n) ranks (``TTMINIS_RANK_INDEX``).
        self.rank_index = rank_index_for(
            self.settings.rank_index,
            store=self.store,
            boards=self.boards,
            redis=self.redis,
            prefix=f"{self.settings.redis_channel}:rank",
        )
        self.leaderboards = Leaderboards(
            self.boards, self.store, placeholder, clock=self._now, index=self.rank_index
        )
        # Scores deleted by any process (a forget, from the shell too) leave every rank index.
        self._score_removals: Feed[Removal] = Feed(
            "score-removals",
            self.store.score_removals.removed_since,
            self.store.score_removals.latest_id,
            poll_seconds=self.settings.session_poll_seconds,
        )
        self._score_removals.subscribe(self.leaderboards.scores_removed)

    def _build_sessions(self) -> None:
        """The background profile refresher and the session service."""
        self.refresher = Refresher(
            self.store,
            self.players,
            clock=self._now,
            interval_seconds=self.settings.refresher_interval_seconds,
            batch_size=self.settings.refresher_batch_size,
            concurrency=self.settings.refresher_concurrency,
            throttle=self._client.throttle,
            on_round=self.metrics.refresh_round,
        )
        #: Issues, resumes and ends sessions (logout, logout everywhere, forget).
        self.sessions = Sessions(
            self.store,
            SessionSigner(self.settings.secret_keys, self.settings.session_ttl_seconds),
            self.players,
            clock=self._now,
            poll_seconds=self.settings.session_poll_seconds,
            retention=timedelta(seconds=self.settings.session_ttl_seconds),
        )

    # -- what a game calls --------------------------------------------------------------------

    def on_login(self, hook: LoginHook) -> LoginHook:
        """Decorate ``async def hook(sid, player)``: called after each successful login."""
        self._login_hooks.append(hook)
        return hook

    def create_server(self, **options: Any) -> socketio.AsyncServer:
        """An ``AsyncServer`` set up for the plugin: Redis manager when configured, sane limits."""
        return build_server(self.redis_manager() if self.settings.redis_url else None, **options)

    def redis_manager(self) -> RedisManager:
        """The Socket.IO client manager that shares rooms and pushes through
        ``TTMINIS_REDIS_URL``, for a game that builds its own ``AsyncServer``:
        ``socketio.AsyncServer(client_manager=minis.redis_manager(), ...)``."""
        if not self.settings.redis_url:
            raise ConfigurationError("redis_manager() needs TTMINIS_REDIS_URL.")
        require_redis()
        metrics = self.metrics
        return RedisManager(
            self.settings.redis_url,
            channel=self.settings.redis_channel,
            on_failure=metrics.redis_failure,
            on_link=lambda up: metrics.redis_link(up=up),
            on_relinked=self.leaderboards.announce_all,
        )

    def attach(self, sio: socketio.AsyncServer, app: web.Application) -> None:
        """Register the events on ``sio`` and the plugin's routes and lifecycle on ``app``."""
        if self._realtime is not None:
            raise RuntimeError("TikTokMinis.attach() was already called")
        if self.settings.redis_url:
            share_rooms(sio, self.redis_manager)
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
        if self.sandbox is not None:
            # Before the static folder (which does not hold it): only sandbox mode serves it.
            add_sdk_route(app, f"{URL_PREFIX}/static/sandbox-sdk.js")
        app.router.add_static(f"{URL_PREFIX}/static/", STATIC_DIR, append_version=False)
        add_avatar_routes(app, self.avatars)
        self.health.add_routes(app)
        add_webhook_route(
            app,
            players=self.players,
            events=self._webhook_events,
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

        async def hang_up_on_shutdown(_: web.Application) -> None:
            await hang_up(sio)

        app.on_shutdown.append(hang_up_on_shutdown)

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
        """Open each part and put its close on the stack: ``close`` runs them in reverse."""
        opened = self._opened
        await self.database.open()
        opened.push_async_callback(self.database.close)
        if self.sandbox is not None:
            await self._open_sandbox(self.sandbox)
        await self._client.start()
        opened.push_async_callback(self._client.close)
        await self.avatars.start()
        opened.push_async_callback(self.avatars.close)
        # The pushes in flight end after every service below has closed, before the client
        # and the database they use. A closed set refuses (and closes) late spawns.
        if self._tasks.closed:
            self._tasks = TaskSet("tiktok-minis")
        opened.push_async_callback(self._tasks.close)
        await self.sessions.start()
        opened.push_async_callback(self.sessions.close)
        await self.rank_index.start()
        opened.push_async_callback(self.rank_index.close)
        opened.push_async_callback(self.leaderboards.close)
        await self._score_removals.start()
        opened.push_async_callback(self._score_removals.close)
        if self._realtime is not None:
            self._realtime.start()
        # Whatever is attached by close time: a game may attach after an explicit start().
        opened.push_async_callback(self._close_realtime)
        if self.settings.refresher_enabled:
            self.refresher.start()
            opened.push_async_callback(self.refresher.close)
        self._tasks.spawn(self._housekeeping.loop())

    async def _open_sandbox(self, sandbox: Sandbox) -> None:
        log.warning(
            "sandbox mode: a built-in TikTok emulator stands in for TikTok and sessions are "
            "signed with a public key; never run it in production",
            extra={"event": "sandbox_mode"},
        )
        server = SandboxServer(sandbox)
        await server.start()
        self._opened.push_async_callback(server.close)
        self._client.base_url = server.url
        # Its avatar links point at its own loopback server: that origin, and nothing else
        # internal, may be fetched (replaced on every start: the port changes).
        self.avatars.allowed_origins = frozenset({server.url})

    async def _close_realtime(self) -> None:
        if self._realtime is not None:
            await self._realtime.close()

    async def close(self) -> None:
        """Close everything ``start`` opened, in reverse. Closing twice is harmless.

        The Redis client is closed whether or not the plugin started: it exists from the
        constructor on, and a readiness check before ``start`` opens a connection.
        """
        self._started = False
        opened, self._opened = self._opened, AsyncExitStack()
        try:
            await opened.aclose()
        finally:
            if self.redis is not None:
                await self.redis.aclose()

    async def housekeeping(self) -> int:
        """Delete what is no longer needed: webhook event digests past TikTok's retry window,
        score removals every process has followed, ended sessions older than any session can
        live. Runs hourly while started; returns how many rows went."""
        return await self._housekeeping.run()

    async def _lifespan(self, app: web.Application) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.close()

    # -- wiring between the services and the pushes ------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

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


#: Where ``attach`` puts the plugin in the aiohttp app: ``request.app[MINIS_KEY]``.
MINIS_KEY = web.AppKey("tiktok_minis", TikTokMinis)
