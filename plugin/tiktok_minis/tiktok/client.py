"""The TikTok Open API client: token exchange, refresh, revoke and user info.

It knows HTTP and TikTok's JSON, nothing about games. Every call is retried on connection errors,
timeouts, 5xx, 429 and TikTok's "try again later" answers (``_retry``), each attempt has its own
timeout, and the whole operation is bounded by a budget, after which it is
:class:`~tiktok_minis.errors.UpstreamUnavailable`. TikTok's answers are judged by their body,
not their status (``_answers``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp_retry import RetryClient

from tiktok_minis.settings import Settings
from tiktok_minis.tiktok._answers import (
    PATHS,
    BadBody,
    Clock,
    Endpoint,
    garbage,
    parse_body,
    raise_for_error,
    token_set,
    unavailable,
    user_of,
)
from tiktok_minis.tiktok._retry import QUIET, Backoff
from tiktok_minis.tiktok.models import USER_INFO_FIELDS, TikTokUser, TokenSet
from tiktok_minis.tiktok.throttle import Pace, UpstreamThrottle

__all__ = ["CallObserver", "Clock", "Endpoint", "TikTokClient"]

#: Called after every finished operation: endpoint, last HTTP status (None if none), seconds.
CallObserver = Callable[[Endpoint, int | None, float], None]


class TikTokClient:
    """TikTok's Open API for one app: ``fetch_token``, ``refresh_token``, ``revoke_token``,
    ``fetch_user``.

    Takes an ``aiohttp.ClientSession`` or opens its own on ``start``; closes only what it opened.
    A ``throttle`` limits the session it opens (a given session needs its ``trace_config()``).
    ``base_url`` may be changed before ``start`` (the sandbox emulator's port is known late).
    ``clock`` (default the real time) dates token answers: expiries are that instant plus
    ``expires_in``, so a clock a test moves by hand moves them too.
    """

    def __init__(
        self,
        *,
        client_key: str,
        client_secret: str,
        base_url: str = "https://open.tiktokapis.com",
        session: aiohttp.ClientSession | None = None,
        budget: float = 10.0,
        attempt_timeout: float = 4.0,
        max_attempts: int = 4,
        retry_after_cap: float = 5.0,
        backoff_base: float = 0.2,
        on_call: CallObserver | None = None,
        throttle: UpstreamThrottle | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.on_call = on_call
        #: The shared rate limit; it applies to the session this client opens itself.
        self.throttle = throttle
        self._client_key = client_key
        self._client_secret = client_secret
        self._clock = clock
        self._session = session
        self._owns_session = session is None
        self._budget = budget
        self._attempt_timeout = aiohttp.ClientTimeout(total=attempt_timeout)
        self._retries = {
            endpoint: Backoff(
                attempts=max_attempts,
                base=backoff_base,
                cap=max(backoff_base, budget / 2),
                retry_after_cap=retry_after_cap,
                endpoint=endpoint,
            )
            for endpoint in PATHS
        }
        self._http: RetryClient | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        session: aiohttp.ClientSession | None = None,
        *,
        clock: Clock = time.time,
        pace: Pace | None = None,
    ) -> TikTokClient:
        """A client configured from the plugin's settings, dating tokens by ``clock``; ``pace``
        keeps the upstream budget (shared through Redis by several processes)."""
        return cls(
            client_key=settings.effective_client_key,
            client_secret=settings.effective_client_secret.get_secret_value(),
            base_url=settings.api_base_url,
            session=session,
            budget=settings.upstream_budget_seconds,
            attempt_timeout=settings.upstream_attempt_timeout_seconds,
            max_attempts=settings.upstream_max_attempts,
            retry_after_cap=settings.upstream_retry_after_cap_seconds,
            throttle=UpstreamThrottle(
                settings.upstream_rate_per_second,
                path_rates={PATHS["user_info"]: settings.user_info_rate_per_second},
                pace=pace,
            ),
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"TikTokClient(base_url={self.base_url!r}, client_key={self._client_key!r})"

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP session (unless one was given). Starting twice does nothing."""
        if self._http is not None:
            return
        if self._session is None or self._session.closed:
            traces = [self.throttle.trace_config()] if self.throttle is not None else None
            self._session = aiohttp.ClientSession(trace_configs=traces)
            self._owns_session = True
        self._http = RetryClient(client_session=self._session, logger=QUIET)

    async def close(self) -> None:
        """Close the session if this client opened it. Closing twice is harmless."""
        # Not RetryClient.close(): it would close a session the caller owns.
        self._http = None
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def __aenter__(self) -> TikTokClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the four calls -----------------------------------------------------------------------

    async def fetch_token(self, code: str) -> TokenSet:
        """Exchange a code from ``TTMinis.game.login`` or ``authorize`` for a token set.

        Mini games send no ``redirect_uri`` and no ``code_verifier``. Codes are single use: if an
        attempt's answer was lost and the retry meets ``invalid_grant``, this is LoginFailed and
        the client fetches a new code.
        """
        body = await self._call(
            "token", "POST", data=self._credentials(code=code, grant_type="authorization_code")
        )
        return token_set(body, self._clock)

    async def refresh_token(self, refresh_token: str) -> TokenSet:
        """Trade a refresh token for a new token set (the refresh token may rotate)."""
        body = await self._call(
            "token",
            "POST",
            data=self._credentials(grant_type="refresh_token", refresh_token=refresh_token),
        )
        return token_set(body, self._clock)

    async def revoke_token(self, access_token: str) -> None:
        """Revoke the player's authorization of this app."""
        await self._call("revoke", "POST", data=self._credentials(token=access_token))

    async def fetch_user(
        self, access_token: str, fields: Sequence[str] = USER_INFO_FIELDS
    ) -> TikTokUser:
        """The user's profile fields (``user.info.basic`` for anything beyond ``open_id``)."""
        body = await self._call(
            "user_info",
            "GET",
            params={"fields": ",".join(fields)},
            headers={"Authorization": f"Bearer {access_token}"},
        )
        return user_of(body)

    # -- the machinery ------------------------------------------------------------------------

    def _credentials(self, **fields: str) -> dict[str, str]:
        return {"client_key": self._client_key, "client_secret": self._client_secret, **fields}

    async def _call(self, endpoint: Endpoint, method: str, **kwargs: Any) -> dict[str, Any]:
        """One operation: retried within the budget, then the body judged."""
        if self._http is None:
            raise RuntimeError("TikTokClient.start() was not awaited")
        started = time.monotonic()
        status: int | None = None
        try:
            async with asyncio.timeout(self._budget):
                async with self._http.request(
                    method,
                    self.base_url + PATHS[endpoint],
                    retry_options=self._retries[endpoint],
                    timeout=self._attempt_timeout,
                    allow_redirects=False,
                    **kwargs,
                ) as response:
                    status = response.status
                    raw = await response.read()
                    log_id = response.headers.get("X-Tt-Logid")
        except TimeoutError as exc:
            raise unavailable(endpoint, status, "timed out") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise unavailable(endpoint, status, type(exc).__name__) from exc
        finally:
            if self.on_call is not None:
                self.on_call(endpoint, status, time.monotonic() - started)
        try:
            body = parse_body(raw)
        except BadBody as exc:
            raise garbage(endpoint, status, str(exc)) from exc
        raise_for_error(endpoint, status, body, log_id)
        return body
