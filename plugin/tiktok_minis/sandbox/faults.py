"""Faults a test injects into the emulator: errors, slow answers, garbage, dropped connections."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ENDPOINTS", "Fault", "FaultBook"]

#: The Open API endpoints, as named in :attr:`Sandbox.calls` and :meth:`Sandbox.inject`.
ENDPOINTS: tuple[str, ...] = ("token", "revoke", "user_info")


@dataclass(eq=False)
class Fault:
    """One injected fault; it applies to the next ``times`` requests to ``endpoint``.

    Build faults with :meth:`Sandbox.inject`, which documents each field. ``times=None`` keeps
    the fault until :meth:`Sandbox.clear_faults`. ``hits`` counts the requests it has met.

    Note that aiohttp's client retries a GET once by itself when a kept-alive connection drops:
    to make a client *see* a dropped user-info request, give ``drop=True`` with ``times=2``.

    A fault with ``hold=True`` keeps each request it meets waiting until :meth:`release`.
    """

    endpoint: str
    status: int | None = None
    body: str | bytes | dict[str, Any] | None = None
    delay: float = 0.0
    retry_after: float | None = None
    times: int | None = 1
    oauth_error: str | None = None
    api_error: str | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    process_first: bool = False
    drop: bool = False
    hold: bool = False
    hits: int = 0
    # Set once by release(): a test decides when a held request goes on, no timing involved.
    _released: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.endpoint != "*" and self.endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(ENDPOINTS)} or '*'")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or None for every request until cleared)")
        if not math.isfinite(self.delay) or self.delay < 0:
            raise ValueError("delay must be a finite number of seconds, 0 or more")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code (100 to 599)")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be 0 or more seconds")
        if not self.replaces_answer and self.delay == 0 and not self.headers and not self.hold:
            raise ValueError(
                "the fault does nothing: give a status, body, oauth_error, api_error, "
                "retry_after, delay, headers, hold or drop"
            )

    def release(self) -> None:
        """Let the requests this fault holds go on, and any it meets later pass at once."""
        self._released.set()

    async def wait_released(self) -> None:
        """Return once :meth:`release` was called (at once if it was)."""
        await self._released.wait()

    @property
    def replaces_answer(self) -> bool:
        """Whether the fault answers instead of the endpoint (a delay or headers alone do not)."""
        return (
            self.drop
            or self.status is not None
            or self.body is not None
            or self.retry_after is not None
            or self.oauth_error is not None
            or self.api_error is not None
        )

    @property
    def exhausted(self) -> bool:
        """Whether the fault has met all the requests it was given."""
        return self.times is not None and self.hits >= self.times

    def retry_after_header(self) -> str | None:
        """The ``Retry-After`` value: whole seconds when whole, else the decimal as given."""
        if self.retry_after is None:
            return None
        if float(self.retry_after).is_integer():
            return str(int(self.retry_after))
        return repr(float(self.retry_after))


class FaultBook:
    """Pending faults in the order they were injected; each request takes the first matching."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Queue ``fault`` behind the ones already pending."""
        self._faults.append(fault)

    def take(self, endpoint: str) -> Fault | None:
        """The fault for this request to ``endpoint``, consumed once; None when there is none."""
        for fault in self._faults:
            if fault.endpoint in ("*", endpoint):
                fault.hits += 1
                if fault.exhausted:
                    self._faults.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        """Forget every pending fault."""
        self._faults.clear()

    @property
    def pending(self) -> tuple[Fault, ...]:
        """The faults still waiting for requests."""
        return tuple(self._faults)
