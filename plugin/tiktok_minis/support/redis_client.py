"""The one Redis client the plugin's parts share (``TTMINIS_REDIS_URL``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tiktok_minis.errors import ConfigurationError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["redis_client", "require_redis"]

_MISSING = (
    "TTMINIS_REDIS_URL is set but the redis package is not installed: "
    "pip install 'tiktok-minis[redis]'"
)


def require_redis() -> None:
    """Raise the sentence with the pip line unless the ``redis`` extra is installed."""
    try:
        import redis.asyncio  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigurationError(_MISSING) from None


def redis_client(url: str) -> Redis:
    """A Redis client for ``url`` (it connects on first use); the ``redis`` extra must be in."""
    require_redis()
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    # Bounded socket timeouts: a Redis that stops answering fails a call in seconds, and the
    # callers fall back (the upstream budget to this process, ranks to the database). One
    # quick retry, not redis-py's ten with a backoff of up to a second: the first call of an
    # outage must not hold its caller for seconds.
    return Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=2,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
    )
