"""The Open API routes, answering exactly as TikTok documents them, with injected faults applied."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tiktok_minis.sandbox import oauth
from tiktok_minis.sandbox.faults import Fault
from tiktok_minis.sandbox.oauth import ApiRefusal, OAuthRefusal
from tiktok_minis.sandbox.state import Sandbox

__all__ = ["CONTROL_APP_KEY", "SANDBOX_KEY", "SLEEPERS_KEY", "Sleepers", "add_api_routes"]

#: The emulator's state, on every app this package builds.
SANDBOX_KEY = web.AppKey("tiktok_minis.sandbox", Sandbox)

LOG_ID_HEADER = "X-Tt-Logid"  # TikTok sends this header too, though its docs do not say so
_FORM = "application/x-www-form-urlencoded"

_API_STATUS = {
    "access_token_invalid": 401,
    "scope_not_authorized": 401,
    "scope_permission_missed": 400,
    "invalid_params": 400,
    "rate_limit_exceeded": 429,
    "internal_error": 500,
}


class Sleepers:
    """Injected delays in progress; woken at once when the app shuts down.

    A delay is a timer on the running loop, never a blocking sleep: a slow emulator must not
    slow anything else. Shutting down wakes every sleeper so closing never waits on a delay.
    """

    def __init__(self) -> None:
        self._futures: set[asyncio.Future[bool]] = set()
        self.closing = False

    async def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; False when woken early because the app is shutting down."""
        if self.closing:
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, future, True)
        self._futures.add(future)
        try:
            return await future
        finally:
            timer.cancel()
            self._futures.discard(future)

    async def hold(self, fault: Fault) -> bool:
        """Wait until ``fault`` is released; False when woken because the app is shutting down."""
        if self.closing:
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        released = asyncio.ensure_future(fault.wait_released())
        released.add_done_callback(lambda _: _resolve(future, True))
        self._futures.add(future)
        try:
            return await future
        finally:
            released.cancel()
            self._futures.discard(future)

    def wake_all(self) -> None:
        """Wake every sleeper (they answer at once) and refuse new delays."""
        self.closing = True
        for future in self._futures:
            _resolve(future, False)


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


SLEEPERS_KEY = web.AppKey("tiktok_minis.sandbox.sleepers", Sleepers)
#: The control app mounted beside the Open API: its routes give the avatar links' base.
CONTROL_APP_KEY = web.AppKey("tiktok_minis.sandbox.control", web.Application)

Inner = Callable[[web.Request, Sandbox, str], Awaitable[web.Response]]


def oauth_error(refusal: OAuthRefusal, log_id: str) -> web.Response:
    """The flat OAuth error object."""
    body = {"error": refusal.error, "error_description": refusal.description, "log_id": log_id}
    return web.json_response(body, status=refusal.status)


def api_envelope(
    data: dict[str, Any], code: str, message: str, log_id: str, status: int
) -> web.Response:
    """The user-info envelope: ``{"data": ..., "error": {"code", "message", "log_id"}}``."""
    body = {"data": data, "error": {"code": code, "message": message, "log_id": log_id}}
    return web.json_response(body, status=status)


def _oauth_error_for(status: int) -> str:
    if status in (429, 503):
        return "temporarily_unavailable"
    if status >= 500:
        return "server_error"
    return {401: "invalid_client", 403: "unauthorized_client"}.get(status, "invalid_request")


def _api_error_for(status: int) -> str:
    return {401: "access_token_invalid", 400: "invalid_params", 429: "rate_limit_exceeded"}.get(
        status, "internal_error"
    )


def _fault_answer(fault: Fault, style: str, log_id: str) -> web.Response:
    if fault.body is not None:
        status = fault.status or 200
        if isinstance(fault.body, dict):
            return web.json_response(fault.body, status=status)
        raw = fault.body.encode() if isinstance(fault.body, str) else fault.body
        looks_html = raw.lstrip()[:1] == b"<"
        content_type = fault.content_type or ("text/html" if looks_html else "text/plain")
        return web.Response(body=raw, status=status, content_type=content_type)
    if style == "oauth":
        error = fault.oauth_error or fault.api_error
        status = fault.status or (200 if fault.oauth_error else 400 if error else 429)
        refusal = OAuthRefusal(error or _oauth_error_for(status), "Injected fault.", status)
        return oauth_error(refusal, log_id)
    code = fault.api_error or fault.oauth_error
    if fault.status is not None:
        status = fault.status
    elif fault.api_error:
        status = _API_STATUS.get(fault.api_error, 400)
    else:
        status = 200 if code else 429
    return api_envelope({}, code or _api_error_for(status), "Injected fault.", log_id, status)


async def _drop(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.abort()
    # Nothing can be written any more; aiohttp drops the connection without an answer.
    raise asyncio.CancelledError


def _endpoint(
    name: str, style: str, inner: Inner
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        sandbox = request.app[SANDBOX_KEY]
        sandbox.record_call(name)
        fault = sandbox.take_fault(name)
        log_id = sandbox.new_log_id()
        response: web.Response | None = None
        if fault is not None and fault.process_first:
            response = await inner(request, sandbox, log_id)
        sleepers = request.app[SLEEPERS_KEY]
        interrupted = False  # by the shutdown: the held or delayed request answers 503
        if fault is not None and fault.hold:
            interrupted = not await sleepers.hold(fault)
        if fault is not None and fault.delay and not interrupted:
            interrupted = not await sleepers.sleep(fault.delay)
        if interrupted:
            response = _fault_answer(Fault(name, status=503), style, log_id)
        elif fault is not None and fault.drop:
            return await _drop(request)
        elif fault is not None and fault.replaces_answer:
            response = _fault_answer(fault, style, log_id)
        elif response is None:
            response = await inner(request, sandbox, log_id)
        response.headers[LOG_ID_HEADER] = log_id
        if fault is not None:
            response.headers.update(fault.headers)
            retry_after = fault.retry_after_header()
            if retry_after is not None:
                response.headers["Retry-After"] = retry_after
        return response

    handler.__name__ = f"{name}_handler"
    return handler


async def _form(request: web.Request) -> dict[str, list[str]]:
    if request.content_type != _FORM:
        raise OAuthRefusal("invalid_request", f"The request body must be {_FORM}.")
    form = await request.post()
    return {key: [str(value) for value in form.getall(key)] for key in form}


async def _token(request: web.Request, sandbox: Sandbox, log_id: str) -> web.Response:
    try:
        return web.json_response(oauth.exchange(sandbox, await _form(request)))
    except OAuthRefusal as refusal:
        return oauth_error(refusal, log_id)


async def _revoke(request: web.Request, sandbox: Sandbox, log_id: str) -> web.Response:
    try:
        return web.json_response(oauth.revoke(sandbox, await _form(request)))
    except OAuthRefusal as refusal:
        return oauth_error(refusal, log_id)


def own_avatar_base(request: web.Request) -> str:
    """The control app's URL as this request reached the emulator (for avatar links)."""
    control = request.app.get(CONTROL_APP_KEY)
    prefix = str(control.router["index"].url_for()) if control is not None else "/sandbox"
    return f"{request.scheme}://{request.host}{prefix.rstrip('/')}"


async def _user_info(request: web.Request, sandbox: Sandbox, log_id: str) -> web.Response:
    fields = request.query.getall("fields", [])
    base = sandbox.avatar_base_url or own_avatar_base(request)
    try:
        if len(fields) > 1:
            raise ApiRefusal("invalid_params", "The fields parameter is given more than once.", 400)
        authorization = request.headers.get("Authorization")
        user = oauth.user_info(sandbox, authorization, fields[0] if fields else None, base)
    except ApiRefusal as refusal:
        return api_envelope({}, refusal.code, refusal.message, log_id, refusal.status)
    return api_envelope({"user": user}, "ok", "", log_id, 200)


def add_api_routes(app: web.Application) -> None:
    """Add the Open API routes (token, revoke, user info) to ``app``."""
    app.router.add_post("/v2/oauth/token/", _endpoint("token", "oauth", _token), name="token")
    app.router.add_post("/v2/oauth/revoke/", _endpoint("revoke", "oauth", _revoke), name="revoke")
    app.router.add_get(
        "/v2/user/info/", _endpoint("user_info", "api", _user_info), name="user_info"
    )
