"""The TikTok Open API client: token exchange, refresh, revoke and user info.

It knows HTTP and TikTok's JSON, nothing about games. Every call is retried on connection errors,
timeouts, 5xx and 429 (exponential backoff with jitter, ``Retry-After`` honoured up to a cap),
each attempt has its own timeout, and the whole operation is bounded by a budget, after which it
is :class:`UpstreamUnavailable`. TikTok's answers are judged by their body, not their status:
OAuth errors arrive flat (sometimes with HTTP 200), user info in a ``{"data", "error"}`` envelope.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Literal

import aiohttp
from aiohttp_retry import ExponentialRetry, RetryClient

from tiktok_minis.errors import (
    LoginFailed,
    MinisError,
    NotAuthorized,
    TokenExpired,
    UpstreamRejected,
    UpstreamUnavailable,
)
from tiktok_minis.settings import Settings
from tiktok_minis.tiktok.models import USER_INFO_FIELDS, TikTokUser, TokenSet
from tiktok_minis.tiktok.throttle import Pace, UpstreamThrottle, retry_after_seconds

__all__ = ["CallObserver", "Clock", "Endpoint", "TikTokClient"]

log = logging.getLogger("tiktok_minis.tiktok")

Endpoint = Literal["token", "revoke", "user_info"]
#: Called after every finished operation: endpoint, last HTTP status (None if none), seconds.
CallObserver = Callable[[Endpoint, int | None, float], None]
#: Seconds since the epoch, like ``time.time``: when token answers count their lifetimes from.
Clock = Callable[[], float]

_PATHS: Final[Mapping[Endpoint, str]] = {
    "token": "/v2/oauth/token/",
    "revoke": "/v2/oauth/revoke/",
    "user_info": "/v2/user/info/",
}

# OAuth error strings (flat body) that mean "try again": TikTok's side is struggling.
_OAUTH_TRANSIENT: Final = frozenset({"server_error", "temporarily_unavailable"})
# OAuth errors that mean the code or refresh token is no good: the player must start over.
_OAUTH_GRANT_DEAD: Final = frozenset({"invalid_grant", "access_denied"})
# User-info envelope codes that mean "try again".
_API_TRANSIENT: Final = frozenset({"rate_limit_exceeded", "internal_error"})

_RETRY_EXCEPTIONS: Final = {
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    asyncio.TimeoutError,
}


class _Garbage(Exception):
    """The body is not what TikTok documents: a proxy page, truncated JSON, the wrong shape."""


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Garbage("not JSON") from exc
    if not isinstance(body, dict):
        raise _Garbage(f"a JSON {type(body).__name__}, not an object")
    return body


def _is_transient(endpoint: Endpoint, body: dict[str, Any]) -> bool:
    """Whether a parsed body is one of TikTok's "try again later" answers."""
    if endpoint == "user_info":
        error = body.get("error")
        return isinstance(error, dict) and error.get("code") in _API_TRANSIENT
    return body.get("error") in _OAUTH_TRANSIENT


class _Backoff(ExponentialRetry):
    """Exponential backoff with full jitter, and ``Retry-After`` honoured up to a cap."""

    def __init__(
        self, *, attempts: int, base: float, cap: float, retry_after_cap: float, endpoint: Endpoint
    ) -> None:
        super().__init__(
            attempts=attempts,
            start_timeout=base,
            max_timeout=cap,
            statuses={429},
            exceptions=set(_RETRY_EXCEPTIONS),
            retry_all_server_errors=True,
            evaluate_response_callback=self._acceptable,
        )
        self._retry_after_cap = retry_after_cap
        self._endpoint = endpoint

    async def _acceptable(self, response: aiohttp.ClientResponse) -> bool:
        """False (retry) for a garbage body or a documented transient error, whatever the status."""
        try:
            body = _parse_body(await response.read())
        except (_Garbage, aiohttp.ClientError):
            return False
        return not _is_transient(self._endpoint, body)

    def get_timeout(self, attempt: int, response: aiohttp.ClientResponse | None = None) -> float:
        """The wait before the next attempt."""
        if response is not None:
            retry_after = _retry_after(response)
            response.release()  # the retried answer is not read again: free its connection
            if retry_after is not None:
                return min(retry_after, self._retry_after_cap)
        # Full jitter (AWS architecture blog): spreads a crowd of retries over the whole window.
        return random.uniform(0, super().get_timeout(attempt - 1, response))


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    return retry_after_seconds(response.headers.get("Retry-After"))


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
            endpoint: _Backoff(
                attempts=max_attempts,
                base=backoff_base,
                cap=max(backoff_base, budget / 2),
                retry_after_cap=retry_after_cap,
                endpoint=endpoint,
            )
            for endpoint in _PATHS
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
                path_rates={_PATHS["user_info"]: settings.user_info_rate_per_second},
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
        self._http = RetryClient(client_session=self._session, logger=_QUIET)

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
        return self._token_set(body)

    async def refresh_token(self, refresh_token: str) -> TokenSet:
        """Trade a refresh token for a new token set (the refresh token may rotate)."""
        body = await self._call(
            "token",
            "POST",
            data=self._credentials(grant_type="refresh_token", refresh_token=refresh_token),
        )
        return self._token_set(body)

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
        data = body.get("data")
        user = data.get("user") if isinstance(data, dict) else None
        if not isinstance(user, dict) or not isinstance(user.get("open_id", ""), str):
            raise self._garbage("user_info", None, "no data.user object")

        def text(name: str) -> str | None:
            value = user.get(name)
            return value if isinstance(value, str) and value else None

        return TikTokUser(
            open_id=text("open_id") or "",
            display_name=text("display_name"),
            avatar_url=text("avatar_url"),
            union_id=text("union_id"),
        )

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
                    self.base_url + _PATHS[endpoint],
                    retry_options=self._retries[endpoint],
                    timeout=self._attempt_timeout,
                    allow_redirects=False,
                    **kwargs,
                ) as response:
                    status = response.status
                    raw = await response.read()
                    log_id = response.headers.get("X-Tt-Logid")
        except TimeoutError as exc:
            raise self._unavailable(endpoint, status, "timed out", exc) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise self._unavailable(endpoint, status, type(exc).__name__, exc) from exc
        finally:
            if self.on_call is not None:
                self.on_call(endpoint, status, time.monotonic() - started)
        try:
            body = _parse_body(raw)
        except _Garbage as exc:
            raise self._garbage(endpoint, status, str(exc)) from exc
        self._raise_for_error(endpoint, status, body, log_id)
        return body

    def _raise_for_error(
        self, endpoint: Endpoint, status: int, body: dict[str, Any], header_log_id: str | None
    ) -> None:
        """Map TikTok's error shapes to the plugin's errors: the body decides, not the status."""
        if endpoint == "user_info":
            error = body.get("error")
            if not isinstance(error, dict) or not isinstance(error.get("code"), str):
                raise self._garbage(endpoint, status, "no error envelope")
            code = error["code"]
            log_id = str(error.get("log_id") or header_log_id or "") or None
            if code == "ok":
                if status >= 400:
                    raise self._garbage(endpoint, status, "an error status with code ok")
                return
            message = str(error.get("message") or code)[:200]
        else:
            code = body.get("error")
            if code is None or code == "":
                if status >= 400:
                    raise self._garbage(endpoint, status, "an error status without an error")
                return
            code = str(code)
            log_id = str(body.get("log_id") or header_log_id or "") or None
            message = str(body.get("error_description") or code)[:200]
        self._log_failure(endpoint, status, code, log_id)
        raise _translate(endpoint, code, message, log_id)

    def _token_set(self, body: dict[str, Any]) -> TokenSet:
        try:
            open_id = body["open_id"]
            access = body["access_token"]
            refresh = body["refresh_token"]
            expires_in = int(body["expires_in"])
            refresh_expires_in = int(body["refresh_expires_in"])
        except (KeyError, TypeError, ValueError) as exc:
            raise self._garbage("token", 200, "a token answer without its fields") from exc
        if not all(isinstance(v, str) and v for v in (open_id, access, refresh)):
            raise self._garbage("token", 200, "a token answer with empty fields")
        scope = body.get("scope")
        scopes = frozenset(
            part.strip()
            for part in (scope if isinstance(scope, str) else "").split(",")
            if part.strip()
        )
        return TokenSet(
            open_id=open_id,
            access_token=access,
            refresh_token=refresh,
            expires_in=expires_in,
            refresh_expires_in=refresh_expires_in,
            scopes=scopes,
            token_type=str(body.get("token_type") or "Bearer"),
            # The injected clock, not the wall clock: the player service compares these expiries
            # with that same clock, and a test that moves it days ahead must see them move too.
            issued_at=datetime.fromtimestamp(self._clock(), UTC),
        )

    def _unavailable(
        self, endpoint: Endpoint, status: int | None, reason: str, exc: BaseException | None
    ) -> UpstreamUnavailable:
        log.warning(
            "tiktok unavailable",
            extra={
                "event": "upstream_unavailable",
                "endpoint": endpoint,
                "status": status,
                "reason": reason,
            },
        )
        return UpstreamUnavailable()

    def _garbage(self, endpoint: Endpoint, status: int | None, reason: str) -> UpstreamUnavailable:
        return self._unavailable(endpoint, status, f"unexpected body: {reason}", None)

    @staticmethod
    def _log_failure(endpoint: Endpoint, status: int, code: str, log_id: str | None) -> None:
        log.warning(
            "tiktok error",
            extra={
                "event": "upstream_error",
                "endpoint": endpoint,
                "status": status,
                "code": code,
                "log_id": log_id,
            },
        )


def _translate(endpoint: Endpoint, code: str, message: str, log_id: str | None) -> MinisError:
    """The plugin error for one of TikTok's error codes."""
    if endpoint == "user_info":
        if code == "access_token_invalid":
            return TokenExpired(log_id=log_id)
        if code in ("scope_not_authorized", "scope_permission_missed"):
            return NotAuthorized(log_id=log_id)
        if code in _API_TRANSIENT:
            return UpstreamUnavailable(log_id=log_id)
        return UpstreamRejected(f"TikTok refused the request: {code}", log_id=log_id, error=code)
    if code in _OAUTH_GRANT_DEAD:
        return LoginFailed(log_id=log_id)
    if code in _OAUTH_TRANSIENT:
        return UpstreamUnavailable(log_id=log_id)
    return UpstreamRejected(f"TikTok refused the request: {code}", log_id=log_id, error=code)


class _QuietLogger:
    """aiohttp-retry logs each retry with the exception's repr; ours logs the outcome once."""

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """Drop retry chatter."""

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """Drop retry chatter."""

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """Drop retry chatter."""


_QUIET = _QuietLogger()
