"""TikTok's OAuth and user-info rules, applied to a :class:`Sandbox`; no HTTP here.

Each function takes the already-parsed request and returns the success body, or raises
:class:`OAuthRefusal` (the flat OAuth error) or :class:`ApiRefusal` (the user-info envelope's
error), which ``api.py`` renders exactly as PLATFORM.md documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tiktok_minis.sandbox.state import BASIC_SCOPE, OPEN_ID_SCOPE, Sandbox

__all__ = [
    "BASIC_FIELDS",
    "OTHER_FIELDS",
    "ApiRefusal",
    "OAuthRefusal",
    "exchange",
    "revoke",
    "user_info",
]

#: The user-info fields mini games can get (all under ``user.info.basic``, ``open_id`` also
#: under ``user.info.open_id``).
BASIC_FIELDS: tuple[str, ...] = (
    "open_id",
    "union_id",
    "avatar_url",
    "avatar_url_100",
    "avatar_large_url",
    "display_name",
)
#: Real user-info fields that need scopes mini games cannot get.
OTHER_FIELDS: tuple[str, ...] = (
    "bio_description",
    "profile_deep_link",
    "profile_web_link",
    "is_verified",
    "username",
    "follower_count",
    "following_count",
    "likes_count",
    "video_count",
)
_AVATAR_FIELDS = frozenset({"avatar_url", "avatar_url_100", "avatar_large_url"})
_MAX_FIELD = 4096  # longest form value taken seriously


class OAuthRefusal(Exception):
    """An OAuth error answer: ``{"error", "error_description", "log_id"}`` with ``status``."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


class ApiRefusal(Exception):
    """A user-info error: the envelope's ``error.code`` and ``message`` with ``status``."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _field(form: Mapping[str, list[str]], name: str) -> str:
    values = form.get(name, [])
    if len(values) > 1:
        raise OAuthRefusal("invalid_request", f"The parameter {name} is given more than once.")
    value = values[0] if values else ""
    if not value:
        raise OAuthRefusal("invalid_request", f"The parameter {name} is required.")
    if len(value) > _MAX_FIELD:
        raise OAuthRefusal("invalid_request", f"The parameter {name} is malformed.")
    return value


def _check_client(sandbox: Sandbox, form: Mapping[str, list[str]]) -> None:
    key = _field(form, "client_key")
    secret = _field(form, "client_secret")
    if key != sandbox.client_key or secret != sandbox.client_secret:
        raise OAuthRefusal("invalid_client", "Client key or secret is incorrect.", status=401)


def exchange(sandbox: Sandbox, form: Mapping[str, list[str]]) -> dict[str, Any]:
    """``POST /v2/oauth/token/``: a code exchange or a refresh; the flat token answer."""
    grant_type = _field(form, "grant_type")
    _check_client(sandbox, form)
    if grant_type == "authorization_code":
        return _exchange_code(sandbox, _field(form, "code"))
    if grant_type == "refresh_token":
        return _refresh(sandbox, _field(form, "refresh_token"))
    raise OAuthRefusal("unsupported_grant_type", f"The grant type {grant_type!r} is not supported.")


def _exchange_code(sandbox: Sandbox, value: str) -> dict[str, Any]:
    # Codes are single use: taken out of the table before anything else can fail.
    code = sandbox.codes.pop(value, None)
    if code is None:
        raise OAuthRefusal("invalid_grant", "Authorization code is invalid, expired or used.")
    if sandbox.now() >= code.expires_at:
        raise OAuthRefusal("invalid_grant", "Authorization code is expired.")
    user = sandbox.user(code.open_id)
    if code.kind == "authorize":
        scopes = frozenset({OPEN_ID_SCOPE, BASIC_SCOPE})
    else:
        scopes = frozenset({OPEN_ID_SCOPE, *user.granted_scopes})
    return sandbox.issue_tokens(user.open_id, scopes, None)


def _refresh(sandbox: Sandbox, value: str) -> dict[str, Any]:
    token = sandbox.refresh_tokens.get(value)
    if token is None:
        raise OAuthRefusal("invalid_grant", "Refresh token is invalid or revoked.")
    if sandbox.now() >= token.expires_at:
        raise OAuthRefusal("invalid_grant", "Refresh token is expired.")
    user = sandbox.user(token.open_id)
    # The grant's scopes minus whatever the user has revoked since.
    scopes = token.scopes & frozenset({OPEN_ID_SCOPE, *user.granted_scopes})
    return sandbox.issue_tokens(user.open_id, scopes, token)


def revoke(sandbox: Sandbox, form: Mapping[str, list[str]]) -> dict[str, Any]:
    """``POST /v2/oauth/revoke/``: the user's authorization of the app ends; ``{}``.

    Revoking works like the user removing the app: every token of the user dies and the grant
    is gone. An expired, unknown or already revoked access token is refused with invalid_grant.
    """
    token_value = _field(form, "token")
    _check_client(sandbox, form)
    token = sandbox.access_tokens.get(token_value)
    if token is None:
        raise OAuthRefusal("invalid_grant", "Access token is invalid or revoked.")
    if sandbox.now() >= token.expires_at:
        raise OAuthRefusal("invalid_grant", "Access token is expired: refresh it first.")
    sandbox.revoke_user(token.open_id)
    return {}


def _admit(sandbox: Sandbox) -> None:
    limit = sandbox.user_info_rate_limit
    if limit is None:
        return
    now = sandbox.now()
    window = sandbox.user_info_window
    while window and window[0] <= now - 60:
        window.popleft()
    if len(window) >= limit:
        raise ApiRefusal(
            "rate_limit_exceeded", "The API rate limit was exceeded. Try again later.", 429
        )
    window.append(now)


def user_info(
    sandbox: Sandbox, authorization: str | None, fields_param: str | None, avatar_base: str | None
) -> dict[str, Any]:
    """``GET /v2/user/info/``: the requested fields of the token's user (the ``user`` object)."""
    _admit(sandbox)
    scheme, _, value = (authorization or "").strip().partition(" ")
    token = sandbox.live_access_token(value.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        raise ApiRefusal(
            "access_token_invalid",
            "The access token is invalid or not found in the request.",
            401,
        )
    fields = list(dict.fromkeys(part.strip() for part in (fields_param or "").split(",")))
    if not fields_param or "" in fields:
        raise ApiRefusal("invalid_params", "The fields parameter is missing or malformed.", 400)
    unknown = [name for name in fields if name not in BASIC_FIELDS + OTHER_FIELDS]
    if unknown:
        raise ApiRefusal("invalid_params", f"Unknown fields: {', '.join(unknown)}.", 400)
    beyond = [name for name in fields if name in OTHER_FIELDS]
    if beyond:
        raise ApiRefusal(
            "scope_permission_missed",
            f"The fields {', '.join(beyond)} need scopes this app does not have.",
            400,
        )
    if fields != ["open_id"] and BASIC_SCOPE not in token.scopes:
        raise ApiRefusal(
            "scope_not_authorized",
            f"The user did not authorize the scope required: {BASIC_SCOPE}.",
            401,
        )
    user = sandbox.user(token.open_id)
    avatar = user.custom_avatar_url or sandbox.avatar_link(user.open_id, avatar_base)
    values: dict[str, Any] = {
        "open_id": user.open_id,
        "union_id": user.union_id,
        "display_name": user.display_name,
    }
    return {name: avatar if name in _AVATAR_FIELDS else values[name] for name in fields}
