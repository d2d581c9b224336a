"""The control routes: what a person does in the TikTok app, driven over JSON.

The demo page's stand-in for the TTMinis SDK calls these (login, Allow, Deny, rename, remove the
app), and so can tests. They never hand out tokens: only the Open API's OAuth endpoints do.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from tiktok_minis.sandbox.api import SANDBOX_KEY
from tiktok_minis.sandbox.identity import avatar_svg
from tiktok_minis.sandbox.state import Sandbox, SandboxUser
from tiktok_minis.sandbox.webhooks import authorization_removed, signed_webhook

__all__ = ["create_control_app"]

_MAX_BODY = 16 * 1024
_MAX_DEVICE = 128
_MAX_NAME = 64
_MAX_URL = 2048
_AVATAR_MAX_AGE = 300  # seconds a browser may keep an avatar

_ROUTES = {
    "POST /login": '{"device"} -> {"code"}: the one-time code of TTMinis.game.login',
    "POST /authorize": '{"device"} -> {"code"}: the user pressed Allow (user.info.basic)',
    "POST /deny": '{"device"} -> {}: the user pressed Deny',
    "POST /profile": '{"device", "display_name"?, "avatar_url"?} -> the profile on TikTok',
    "POST /revoke": '{"device"} -> {"webhook_status"}: the user removed the app in TikTok '
    "(and the app's webhook is told, when one is set)",
    "GET /avatar/{avatar_id}.svg": "a generated avatar, behind a signed expiring link",
}


class _BadInput(Exception):
    """The request body is not what the route takes; the message says what to fix."""


def _error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    raw = await request.read()
    if len(raw) > _MAX_BODY:
        raise _BadInput(f"the body must be at most {_MAX_BODY} bytes")
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise _BadInput('send a JSON object, like {"device": "phone-1"}')
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _BadInput(f"unknown field(s): {', '.join(unknown)}")
    return data


def _device(data: dict[str, Any]) -> str:
    device = data.get("device")
    if not isinstance(device, str) or not device.strip() or len(device) > _MAX_DEVICE:
        raise _BadInput(f"device must be a non-empty string of at most {_MAX_DEVICE} characters")
    return device


def _optional_name(data: dict[str, Any]) -> str | None:
    name = data.get("display_name")
    if name is None:
        return None
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
        raise _BadInput(
            f"display_name must be a non-empty string of at most {_MAX_NAME} characters"
        )
    return name.strip()


def _optional_avatar(data: dict[str, Any]) -> str | None:
    url = data.get("avatar_url")
    if url is None or url == "":
        return url
    if not isinstance(url, str) or len(url) > _MAX_URL:
        raise _BadInput(f"avatar_url must be a string of at most {_MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise _BadInput('avatar_url must be an http(s) URL without credentials, or "" to reset')
    return url


def _own_base(request: web.Request, sandbox: Sandbox) -> str:
    if sandbox.avatar_base_url:
        return sandbox.avatar_base_url
    prefix = str(request.app.router["index"].url_for()).rstrip("/")
    return f"{request.scheme}://{request.host}{prefix}"


def _profile(request: web.Request, sandbox: Sandbox, user: SandboxUser) -> dict[str, Any]:
    avatar = user.custom_avatar_url or sandbox.avatar_link(
        user.open_id, _own_base(request, sandbox)
    )
    return {"display_name": user.display_name, "avatar_url": avatar}


_DEVICE_ONLY = frozenset({"device"})
_PROFILE_FIELDS = frozenset({"device", "display_name", "avatar_url"})


async def _login(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    device = _device(await _body(request, _DEVICE_ONLY))
    return web.json_response({"code": sandbox.login_code(sandbox.user_for_device(device).open_id)})


async def _authorize(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    device = _device(await _body(request, _DEVICE_ONLY))
    code = sandbox.authorize_code(sandbox.user_for_device(device).open_id)
    return web.json_response({"code": code})


async def _deny(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    sandbox.deny(sandbox.user_for_device(_device(await _body(request, _DEVICE_ONLY))).open_id)
    return web.json_response({})


async def _set_profile(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    data = await _body(request, _PROFILE_FIELDS)
    device, name, avatar = _device(data), _optional_name(data), _optional_avatar(data)
    user = sandbox.user_for_device(device)
    sandbox.set_profile(user.open_id, display_name=name, avatar_url=avatar)
    return web.json_response(_profile(request, sandbox, user))


async def _revoke(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    user = sandbox.user_for_device(_device(await _body(request, _DEVICE_ONLY)))
    sandbox.revoke_user(user.open_id)
    delivered = await _send_removal_webhook(request, sandbox, user)
    return web.json_response({"webhook_status": delivered})


async def _send_removal_webhook(
    request: web.Request, sandbox: Sandbox, user: SandboxUser
) -> int | None:
    """Tell the app, as TikTok does, that the user removed it: the webhook's HTTP status."""
    if sandbox.webhook_url is None:
        return None
    target = sandbox.webhook_url
    if target.startswith("/"):
        target = f"{request.url.origin()}{target}"
    now = int(sandbox.now())
    body, headers = signed_webhook(
        sandbox.client_secret,
        authorization_removed(sandbox.client_key, user.open_id, create_time=now),
        timestamp=now,
    )
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
            http.post(target, data=body, headers=headers) as answer,
        ):
            return answer.status
    except (aiohttp.ClientError, TimeoutError):
        return None  # TikTok would retry later; the next refresh notices the revocation anyway


async def _avatar(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    avatar_id = request.match_info["avatar_id"]
    expires = request.query.get("x-expires", "")
    signature = request.query.get("x-signature", "")
    if not sandbox.check_avatar_link(avatar_id, expires, signature):
        return web.Response(status=403, text="Forbidden: the link is invalid or expired.")
    user = sandbox.user_by_avatar_id(avatar_id)
    if user is None:
        return web.Response(status=404, text="Not found.")
    max_age = max(0, min(_AVATAR_MAX_AGE, int(expires) - int(sandbox.now())))
    return web.Response(
        text=avatar_svg(user.open_id, user.display_name),
        content_type="image/svg+xml",
        headers={
            "Cache-Control": f"private, max-age={max_age}",
            "X-Content-Type-Options": "nosniff",
            # The SVG carries a user-chosen name: nothing in it may run or load anything.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        },
    )


async def _index(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "name": "tiktok-minis sandbox: a TikTok emulator's control routes",
            "routes": _ROUTES,
        }
    )


@web.middleware
async def _bad_input(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _BadInput as exc:
        return _error(str(exc))


def create_control_app(sandbox: Sandbox) -> web.Application:
    """The control routes alone; a game server mounts this at ``/ttminis/sandbox``."""
    app = web.Application(middlewares=[_bad_input])
    app[SANDBOX_KEY] = sandbox
    app.router.add_get("/", _index, name="index")
    app.router.add_post("/login", _login, name="login")
    app.router.add_post("/authorize", _authorize, name="authorize")
    app.router.add_post("/deny", _deny, name="deny")
    app.router.add_post("/profile", _set_profile, name="profile")
    app.router.add_post("/revoke", _revoke, name="revoke")
    app.router.add_get("/avatar/{avatar_id}.svg", _avatar, name="avatar")
    return app
