"""Token buckets: the per-connection event limit and the limits on failed logins."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["KeyedBuckets", "TokenBucket"]


class TokenBucket:
    """Allows ``burst`` events at once and ``rate`` events per second sustained."""

    __slots__ = ("_burst", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = clock()

    def take(self) -> bool:
        """Spend one token; ``False`` when the bucket is empty (the event is refused)."""
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def refund(self) -> None:
        """Give back a token taken for an attempt that turned out not to count."""
        self._tokens = min(self._burst, self._tokens + 1.0)

    @property
    def empty(self) -> bool:
        """Whether the next ``take`` would be refused (nothing is spent)."""
        self._refill()
        return self._tokens < 1.0

    def charge(self) -> None:
        """Spend a token even when none is left, down to one burst in debt: for a cost that is
        known only afterwards, so later attempts wait until it is paid back."""
        self._refill()
        self._tokens = max(self._tokens - 1.0, -self._burst)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now


class KeyedBuckets:
    """One :class:`TokenBucket` per key (a client address, say), at most ``max_keys`` of them.

    Past ``max_keys`` the least recently used bucket is forgotten, so a flood of new keys costs
    bounded memory; a forgotten key starts again with a full bucket.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def bucket(self, key: str) -> TokenBucket:
        """The bucket of ``key``, made full if new."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._rate, self._burst, self._clock)
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket
