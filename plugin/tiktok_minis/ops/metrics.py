"""Prometheus metrics: what an operator watches, fed by observers the other modules call.

Each plugin instance has its own registry (two games in one process, or a test suite, never
collide); ``handler`` serves it in Prometheus' text format, and the game mounts it where its
scraper looks (the example server: ``GET /metrics``). Labels carry endpoint names, event names
and error codes only: never a player, a token or anything a client typed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from tiktok_minis.realtime import refused_packets
from tiktok_minis.services.refresher import RefreshRound
from tiktok_minis.tiktok.throttle import UpstreamThrottle

__all__ = ["Metrics"]

# Socket.IO events answer in milliseconds; TikTok calls in tens to thousands of them.
_EVENT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_UPSTREAM_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15)


class _ThrottleCollector(Collector):
    """The upstream throttle's own counts, read at scrape time."""

    def __init__(self, throttle: UpstreamThrottle) -> None:
        self._throttle = throttle

    def collect(self) -> Iterable[Metric]:
        attempts = CounterMetricFamily(
            "ttminis_upstream_attempts",
            "HTTP attempts to TikTok let through the rate limit (retries included).",
        )
        attempts.add_metric([], self._throttle.attempts)
        limited = CounterMetricFamily(
            "ttminis_upstream_rate_limited", "429 answers from TikTok, each pausing every caller."
        )
        limited.add_metric([], self._throttle.rate_limited)
        return [attempts, limited]


class _RefusedPacketsCollector(Collector):
    """The socket guard's refusals, read at scrape time (its counts are per process)."""

    def collect(self) -> Iterable[Metric]:
        refused = CounterMetricFamily(
            "ttminis_refused_packets",
            "Socket.IO packets and frames refused or ignored by this process, by reason: binary "
            "and oversized close the connection; reserved_event, malformed and "
            "unknown_namespace are dropped.",
            labels=["reason"],
        )
        for reason, count in refused_packets().items():
            refused.add_metric([reason], count)
        return [refused]


class Metrics:
    """The plugin's metrics and the observers that feed them."""

    def __init__(self) -> None:
        """Declare every metric (one statement each, so the whole list reads in one place:
        longer than most functions on purpose)."""
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        registry.register(_RefusedPacketsCollector())
        self.events = Counter(
            "ttminis_events",
            "Socket.IO events handled, by event and outcome (ok or the error code).",
            ["event", "outcome"],
            registry=registry,
        )
        self.event_seconds = Histogram(
            "ttminis_event_seconds",
            "Time to answer a Socket.IO event.",
            ["event"],
            buckets=_EVENT_BUCKETS,
            registry=registry,
        )
        self.logins = Counter(
            "ttminis_logins", "Silent logins, by outcome.", ["outcome"], registry=registry
        )
        self.authorizations = Counter(
            "ttminis_authorizations",
            "Consent outcomes reported by clients: granted, denied, or the error code.",
            ["outcome"],
            registry=registry,
        )
        self.upstream_calls = Counter(
            "ttminis_upstream_calls",
            "Operations on TikTok's Open API (retries inside), by endpoint and final status.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.upstream_seconds = Histogram(
            "ttminis_upstream_seconds",
            "Time of one TikTok operation, retries included.",
            ["endpoint"],
            buckets=_UPSTREAM_BUCKETS,
            registry=registry,
        )
        self.pushes = Counter(
            "ttminis_pushes", "Pushes sent, by event.", ["event"], registry=registry
        )
        self.refreshes = Counter(
            "ttminis_profile_refreshes",
            "Background profile refreshes, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.connected = Gauge(
            "ttminis_connected_sockets",
            "Sockets this process holds on the plugin's namespace.",
            registry=registry,
        )
        self.redis_failures = Counter(
            "ttminis_redis_failures",
            "Redis manager failures, by operation: publish (an emit the other processes never "
            "got, dropped after two tries) or listen (the pub/sub link broke, or a retry failed).",
            ["operation"],
            registry=registry,
        )
        # Registered on the first report, so that a process without Redis shows no link at all.
        self._redis_link: Gauge | None = None

    @property
    def handler(self) -> Handler:
        """An aiohttp handler that serves the metrics in Prometheus' text format."""
        return make_aiohttp_handler(self.registry)

    def watch_connections(self, count: Callable[[], int]) -> None:
        """Read the connected-socket gauge from ``count`` at scrape time."""
        self.connected.set_function(count)

    def watch_throttle(self, throttle: UpstreamThrottle) -> None:
        """Expose the upstream throttle's attempts and 429s."""
        self.registry.register(_ThrottleCollector(throttle))

    # -- observers -----------------------------------------------------------------------------

    def event(self, event: str, ack: dict[str, Any], seconds: float) -> None:
        """A Socket.IO event was answered with ``ack`` after ``seconds``."""
        outcome = _outcome(ack)
        self.events.labels(event, outcome).inc()
        self.event_seconds.labels(event).observe(seconds)
        if event == "tiktok:login":
            self.logins.labels(outcome).inc()
        elif event == "tiktok:authorize":
            player = ack.get("player")
            consent = player.get("consent") if isinstance(player, dict) else None
            granted_or_denied = consent if ack.get("ok") and isinstance(consent, str) else None
            self.authorizations.labels(granted_or_denied or outcome).inc()

    def upstream(self, endpoint: str, status: int | None, seconds: float) -> None:
        """A TikTok operation ended with HTTP ``status`` (``None``: no answer) after ``seconds``."""
        self.upstream_calls.labels(endpoint, str(status) if status is not None else "none").inc()
        self.upstream_seconds.labels(endpoint).observe(seconds)

    def redis_failure(self, operation: str) -> None:
        """The Redis manager failed to ``publish``, or to ``listen`` (the link is down)."""
        self.redis_failures.labels(operation).inc()

    def redis_link(self, *, up: bool) -> None:
        """The Redis manager's pub/sub link came up (subscribed) or went down."""
        if self._redis_link is None:
            self._redis_link = Gauge(
                "ttminis_redis_link_up",
                "1 while this process is subscribed to the Redis channel, 0 while that link is "
                "down (pushes from other processes do not arrive).",
                registry=self.registry,
            )
        self._redis_link.set(1 if up else 0)

    def pushed(self, event: str) -> None:
        """A push of ``event`` went out."""
        self.pushes.labels(event).inc()

    def refresh_round(self, done: RefreshRound) -> None:
        """A refresher pass finished."""
        for outcome, count in (
            ("unchanged", done.unchanged),
            ("changed", done.changed),
            ("revoked", done.revoked),
            ("postponed", done.postponed),
        ):
            if count:
                self.refreshes.labels(outcome).inc(count)


def _outcome(ack: dict[str, Any]) -> str:
    if ack.get("ok"):
        return "ok"
    error = ack.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else "internal_error"
