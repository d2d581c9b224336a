"""TikTok's answers: judged by their body, parsed into typed results, turned into errors.

TikTok's answers are judged by their body, not their status: OAuth errors arrive flat
(sometimes with HTTP 200), user info in a ``{"data", "error"}`` envelope. Error codes become the
plugin's errors (``invalid_grant`` -> LoginFailed, ``scope_not_authorized`` -> NotAuthorized,
``access_token_invalid`` -> TokenExpired, a "try again later" -> UpstreamUnavailable); a body
that is not what TikTok documents is UpstreamUnavailable too. Each failure is logged once here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from tiktok_minis.errors import (
    LoginFailed,
    MinisError,
    NotAuthorized,
    TokenExpired,
    UpstreamRejected,
    UpstreamUnavailable,
)
from tiktok_minis.tiktok.models import TikTokUser, TokenSet

__all__ = [
    "PATHS",
    "BadBody",
    "Clock",
    "Endpoint",
    "garbage",
    "is_transient",
    "parse_body",
    "raise_for_error",
    "token_set",
    "unavailable",
    "user_of",
]

log = logging.getLogger("tiktok_minis.tiktok")

Endpoint = Literal["token", "revoke", "user_info"]
#: Seconds since the epoch, like ``time.time``: when token answers count their lifetimes from.
Clock = Callable[[], float]

#: Where each endpoint is, under the API's base URL.
PATHS: Final[Mapping[Endpoint, str]] = {
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


class BadBody(Exception):
    """The body is not what TikTok documents: a proxy page, truncated JSON, the wrong shape."""


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object ``raw`` holds; :class:`BadBody` if it holds none."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadBody("not JSON") from exc
    if not isinstance(body, dict):
        raise BadBody(f"a JSON {type(body).__name__}, not an object")
    return body


def is_transient(endpoint: Endpoint, body: dict[str, Any]) -> bool:
    """Whether a parsed body is one of TikTok's "try again later" answers."""
    if endpoint == "user_info":
        error = body.get("error")
        return isinstance(error, dict) and error.get("code") in _API_TRANSIENT
    return body.get("error") in _OAUTH_TRANSIENT


def raise_for_error(
    endpoint: Endpoint, status: int, body: dict[str, Any], header_log_id: str | None
) -> None:
    """Map TikTok's error shapes to the plugin's errors: the body decides, not the status."""
    if endpoint == "user_info":
        error = body.get("error")
        if not isinstance(error, dict) or not isinstance(error.get("code"), str):
            raise garbage(endpoint, status, "no error envelope")
        code = error["code"]
        log_id = str(error.get("log_id") or header_log_id or "") or None
        if code == "ok":
            if status >= 400:
                raise garbage(endpoint, status, "an error status with code ok")
            return
    else:
        code = body.get("error")
        if code is None or code == "":
            if status >= 400:
                raise garbage(endpoint, status, "an error status without an error")
            return
        code = str(code)
        log_id = str(body.get("log_id") or header_log_id or "") or None
    _log_failure(endpoint, status, code, log_id)
    raise _translate(endpoint, code, log_id)


def token_set(body: dict[str, Any], clock: Clock) -> TokenSet:
    """The token set of a token answer, issued at ``clock()``."""
    try:
        open_id = body["open_id"]
        access = body["access_token"]
        refresh = body["refresh_token"]
        expires_in = int(body["expires_in"])
        refresh_expires_in = int(body["refresh_expires_in"])
    except (KeyError, TypeError, ValueError) as exc:
        raise garbage("token", 200, "a token answer without its fields") from exc
    if not all(isinstance(v, str) and v for v in (open_id, access, refresh)):
        raise garbage("token", 200, "a token answer with empty fields")
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
        issued_at=datetime.fromtimestamp(clock(), UTC),
    )


def user_of(body: dict[str, Any]) -> TikTokUser:
    """The user of a user-info answer (empty fields are ``None``)."""
    data = body.get("data")
    user = data.get("user") if isinstance(data, dict) else None
    if not isinstance(user, dict) or not isinstance(user.get("open_id", ""), str):
        raise garbage("user_info", None, "no data.user object")

    def text(name: str) -> str | None:
        value = user.get(name)
        return value if isinstance(value, str) and value else None

    return TikTokUser(
        open_id=text("open_id") or "",
        display_name=text("display_name"),
        avatar_url=text("avatar_url"),
        union_id=text("union_id"),
    )


def unavailable(endpoint: Endpoint, status: int | None, reason: str) -> UpstreamUnavailable:
    """The error for TikTok out of reach (or making no sense), logged with ``reason``."""
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


def garbage(endpoint: Endpoint, status: int | None, reason: str) -> UpstreamUnavailable:
    """The error for an answer that is not what TikTok documents (:class:`BadBody`)."""
    return unavailable(endpoint, status, f"unexpected body: {reason}")


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


def _translate(endpoint: Endpoint, code: str, log_id: str | None) -> MinisError:
    """The plugin error for one of TikTok's error codes."""
    if endpoint == "user_info":
        if code == "access_token_invalid":
            return TokenExpired(log_id=log_id)
        if code in ("scope_not_authorized", "scope_permission_missed"):
            return NotAuthorized(log_id=log_id)
        if code in _API_TRANSIENT:
            return UpstreamUnavailable(log_id=log_id)
    elif code in _OAUTH_GRANT_DEAD:
        return LoginFailed(log_id=log_id)
    elif code in _OAUTH_TRANSIENT:
        return UpstreamUnavailable(log_id=log_id)
    return UpstreamRejected(f"TikTok refused the request: {code}", log_id=log_id, error=code)
