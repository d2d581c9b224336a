"""The TikTok emulator over real HTTP on a loopback port, against the documented shapes."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

import tiktok_minis.sandbox as sandbox_package
from tiktok_minis.sandbox import (
    ManualClock,
    Sandbox,
    SandboxServer,
    SandboxUser,
    create_control_app,
)
from tiktok_minis.settings import SANDBOX_CLIENT_KEY, SANDBOX_CLIENT_SECRET

TOKEN_KEYS = {
    "open_id",
    "scope",
    "access_token",
    "expires_in",
    "refresh_token",
    "refresh_expires_in",
    "token_type",
}
BOTH_SCOPES = "user.info.basic,user.info.open_id"
ALL_FIELDS = "open_id,union_id,avatar_url,avatar_url_100,avatar_large_url,display_name"


class Api:
    """A plain aiohttp client for the emulator's documented endpoints and its control routes."""

    def __init__(self, http: aiohttp.ClientSession, server: SandboxServer) -> None:
        self.http = http
        self.url = server.url

    async def post_form(self, path: str, form: dict[str, str]) -> tuple[int, Any]:
        async with self.http.post(self.url + path, data=form) as response:
            return response.status, await response.json()

    async def token(self, **fields: str) -> tuple[int, Any]:
        form = {"client_key": SANDBOX_CLIENT_KEY, "client_secret": SANDBOX_CLIENT_SECRET, **fields}
        return await self.post_form("/v2/oauth/token/", form)

    async def exchange(self, code: str) -> dict[str, Any]:
        status, body = await self.token(grant_type="authorization_code", code=code)
        assert status == 200, body
        return dict(body)

    async def refresh(self, refresh_token: str) -> tuple[int, Any]:
        return await self.token(grant_type="refresh_token", refresh_token=refresh_token)

    async def revoke(self, token: str, **overrides: str) -> tuple[int, Any]:
        form = {"client_key": SANDBOX_CLIENT_KEY, "client_secret": SANDBOX_CLIENT_SECRET}
        return await self.post_form("/v2/oauth/revoke/", {**form, "token": token, **overrides})

    async def user_info(
        self, token: str | None, fields: str | None = "open_id,display_name"
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        params = {"fields": fields} if fields is not None else {}
        url = self.url + "/v2/user/info/"
        async with self.http.get(url, headers=headers, params=params) as response:
            return response.status, await response.json()

    async def control(self, path: str, payload: Any) -> tuple[int, Any]:
        async with self.http.post(f"{self.url}/sandbox{path}", json=payload) as response:
            return response.status, await response.json()


@pytest.fixture
def clock() -> ManualClock:
    """The emulator's clock, moved by hand."""
    return ManualClock(start=1_800_000_000)


@pytest.fixture
def sandbox(clock: ManualClock) -> Sandbox:
    """A fresh emulator on the manual clock, with a user-info rate limit of 5 per minute."""
    return Sandbox(clock=clock, seed=7, user_info_rate_limit=5)


@pytest.fixture
async def server(sandbox: Sandbox) -> AsyncIterator[SandboxServer]:
    """The emulator on a free loopback port."""
    async with SandboxServer(sandbox) as running:
        yield running


@pytest.fixture
def api(http: aiohttp.ClientSession, server: SandboxServer) -> Api:
    """The client bound to the running emulator."""
    return Api(http, server)


async def authorized(sandbox: Sandbox, api: Api) -> tuple[SandboxUser, dict[str, Any]]:
    """A user who pressed Allow, and the token answer of that code."""
    user = sandbox.add_user(display_name="Ada Lovelace")
    return user, await api.exchange(sandbox.authorize_code(user.open_id))


# -- token endpoint ------------------------------------------------------------------------------


async def test_code_exchange_answers_the_documented_flat_object(sandbox: Sandbox, api: Api) -> None:
    """A login code (no redirect_uri, no code_verifier) gives exactly the documented fields."""
    user = sandbox.add_user()
    body = await api.exchange(sandbox.login_code(user.open_id))
    assert set(body) == TOKEN_KEYS
    assert body["open_id"] == user.open_id
    assert body["scope"] == "user.info.open_id"
    assert body["access_token"].startswith("act.")
    assert body["refresh_token"].startswith("rft.")
    assert (body["expires_in"], body["refresh_expires_in"]) == (86400, 365 * 86400)
    assert body["token_type"] == "Bearer"
    assert sandbox.calls["token"] == 1


async def test_code_is_single_use(sandbox: Sandbox, api: Api) -> None:
    """A second exchange of the same code is a flat invalid_grant with HTTP 400."""
    code = sandbox.login_code(sandbox.add_user().open_id)
    await api.exchange(code)
    status, body = await api.token(grant_type="authorization_code", code=code)
    assert status == 400
    assert set(body) == {"error", "error_description", "log_id"}
    assert body["error"] == "invalid_grant"


async def test_code_expires_after_five_minutes(
    sandbox: Sandbox, api: Api, clock: ManualClock
) -> None:
    """Codes live 5 minutes on the emulator's clock."""
    user = sandbox.add_user()
    fresh, stale = sandbox.login_code(user.open_id), sandbox.login_code(user.open_id)
    clock.advance(299)
    assert (await api.exchange(fresh))["open_id"] == user.open_id
    clock.advance(2)
    status, body = await api.token(grant_type="authorization_code", code=stale)
    assert (status, body["error"]) == (400, "invalid_grant")


@pytest.mark.parametrize(
    ("client_key", "client_secret"),
    [("someone-else", SANDBOX_CLIENT_SECRET), (SANDBOX_CLIENT_KEY, "wrong-secret")],
)
async def test_wrong_client_is_invalid_client(
    sandbox: Sandbox, api: Api, client_key: str, client_secret: str
) -> None:
    """A wrong client key or secret is invalid_client with HTTP 401, and spends no code."""
    code = sandbox.login_code(sandbox.add_user().open_id)
    form = {
        "client_key": client_key,
        "client_secret": client_secret,
        "grant_type": "authorization_code",
        "code": code,
    }
    status, body = await api.post_form("/v2/oauth/token/", form)
    assert (status, body["error"]) == (401, "invalid_client")
    assert (await api.exchange(code))["scope"] == "user.info.open_id"


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "authorization_code"},
        {"grant_type": "authorization_code", "code": ""},
        {"code": "abc"},
        {"grant_type": "refresh_token"},
    ],
    ids=["no-code", "empty-code", "no-grant-type", "no-refresh-token"],
)
async def test_missing_fields_are_invalid_request(api: Api, form: dict[str, str]) -> None:
    """A missing or empty field is invalid_request with HTTP 400."""
    status, body = await api.token(**form)
    assert (status, body["error"]) == (400, "invalid_request")


async def test_odd_bodies_are_invalid_request(
    sandbox: Sandbox, api: Api, http: aiohttp.ClientSession
) -> None:
    """A JSON body, a repeated field or a missing client are invalid_request too."""
    code = sandbox.login_code(sandbox.add_user().open_id)
    as_json = {"client_key": SANDBOX_CLIENT_KEY, "client_secret": SANDBOX_CLIENT_SECRET}
    async with http.post(api.url + "/v2/oauth/token/", json=as_json) as response:
        assert (response.status, (await response.json())["error"]) == (400, "invalid_request")
    repeated = f"client_key={SANDBOX_CLIENT_KEY}&client_secret={SANDBOX_CLIENT_SECRET}"
    repeated += f"&grant_type=authorization_code&code={code}&code={code}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with http.post(api.url + "/v2/oauth/token/", data=repeated, headers=headers) as response:
        assert (response.status, (await response.json())["error"]) == (400, "invalid_request")
    status, body = await api.post_form(
        "/v2/oauth/token/", {"grant_type": "authorization_code", "code": code}
    )
    assert (status, body["error"]) == (400, "invalid_request")


async def test_unknown_grant_type_is_unsupported(api: Api) -> None:
    """An unknown grant_type is unsupported_grant_type."""
    status, body = await api.token(grant_type="client_credentials")
    assert (status, body["error"]) == (400, "unsupported_grant_type")


async def test_scopes_before_and_after_authorize(sandbox: Sandbox, api: Api) -> None:
    """Silent login carries user.info.open_id; after Allow, login codes carry the grant too."""
    user = sandbox.add_user()
    before = await api.exchange(sandbox.login_code(user.open_id))
    allowed = await api.exchange(sandbox.authorize_code(user.open_id))
    later = await api.exchange(sandbox.login_code(user.open_id))
    assert before["scope"] == "user.info.open_id"
    assert allowed["scope"] == BOTH_SCOPES
    assert later["scope"] == BOTH_SCOPES
    assert user.granted_scopes == {"user.info.basic"}


async def test_refresh_rotates_and_retires_the_old_token(sandbox: Sandbox, api: Api) -> None:
    """A refresh gives new tokens with the grant's scopes; the old refresh token dies."""
    _, first = await authorized(sandbox, api)
    status, second = await api.refresh(first["refresh_token"])
    assert status == 200
    assert set(second) == TOKEN_KEYS
    assert second["scope"] == BOTH_SCOPES
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    status, again = await api.refresh(first["refresh_token"])
    assert (status, again["error"]) == (400, "invalid_grant")
    assert (await api.refresh(second["refresh_token"]))[0] == 200


async def test_refresh_token_counts_remaining_lifetime_and_expires(
    sandbox: Sandbox, api: Api, clock: ManualClock
) -> None:
    """refresh_expires_in is what is left of the first refresh token's life; then invalid_grant."""
    _, first = await authorized(sandbox, api)
    clock.advance(1000)
    status, second = await api.refresh(first["refresh_token"])
    assert (status, second["refresh_expires_in"]) == (200, 365 * 86400 - 1000)
    clock.advance(365 * 86400)
    status, body = await api.refresh(second["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_refresh_without_rotation_keeps_the_refresh_token(
    http: aiohttp.ClientSession,
) -> None:
    """With rotate_refresh_tokens=False the same refresh token comes back and keeps working."""
    sandbox = Sandbox(rotate_refresh_tokens=False, access_ttl=7200, refresh_ttl=180 * 86400)
    async with SandboxServer(sandbox) as server:
        api = Api(http, server)
        _, first = await authorized(sandbox, api)
        assert (first["expires_in"], first["refresh_expires_in"]) == (7200, 180 * 86400)
        for _ in range(2):
            status, body = await api.refresh(first["refresh_token"])
            assert (status, body["refresh_token"]) == (200, first["refresh_token"])


# -- user info -----------------------------------------------------------------------------------


async def test_user_info_gives_only_the_requested_fields(sandbox: Sandbox, api: Api) -> None:
    """User info answers the documented envelope with exactly the requested fields."""
    user, tokens = await authorized(sandbox, api)
    status, body = await api.user_info(tokens["access_token"], "display_name, union_id")
    assert status == 200
    assert body["data"] == {"user": {"display_name": "Ada Lovelace", "union_id": user.union_id}}
    assert body["error"]["code"] == "ok"
    assert body["error"]["message"] == ""
    assert re.fullmatch(r"\d{14}[0-9A-F]{20}", body["error"]["log_id"])
    status, body = await api.user_info(tokens["access_token"], ALL_FIELDS)
    assert status == 200
    assert list(body["data"]["user"]) == ALL_FIELDS.split(",")


async def test_open_id_alone_needs_only_the_open_id_scope(sandbox: Sandbox, api: Api) -> None:
    """A silent-login token reads open_id; basic fields are scope_not_authorized (401)."""
    user = sandbox.add_user()
    tokens = await api.exchange(sandbox.login_code(user.open_id))
    status, body = await api.user_info(tokens["access_token"], "open_id")
    assert (status, body["data"]["user"]) == (200, {"open_id": user.open_id})
    status, body = await api.user_info(tokens["access_token"], "open_id,display_name")
    assert (status, body["error"]["code"], body["data"]) == (401, "scope_not_authorized", {})


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        (None, 400, "invalid_params"),
        ("", 400, "invalid_params"),
        ("open_id,,display_name", 400, "invalid_params"),
        ("open_id,shoe_size", 400, "invalid_params"),
        ("open_id,follower_count", 400, "scope_permission_missed"),
    ],
)
async def test_bad_fields(
    sandbox: Sandbox, api: Api, fields: str | None, status: int, code: str
) -> None:
    """Bad fields are invalid_params; fields out of a mini game's reach scope_permission_missed."""
    _, tokens = await authorized(sandbox, api)
    got_status, body = await api.user_info(tokens["access_token"], fields)
    assert (got_status, body["error"]["code"], body["data"]) == (status, code, {})
    assert body["error"]["log_id"]


async def test_missing_unknown_or_expired_tokens_are_access_token_invalid(
    sandbox: Sandbox, api: Api, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """No header, another scheme, an unknown or an expired token: 401 access_token_invalid."""
    _, tokens = await authorized(sandbox, api)
    for token in (None, "act.not-a-token"):
        status, body = await api.user_info(token)
        assert (status, body["error"]["code"]) == (401, "access_token_invalid")
    headers = {"Authorization": f"Basic {tokens['access_token']}"}
    async with http.get(api.url + "/v2/user/info/?fields=open_id", headers=headers) as response:
        assert response.status == 401
    clock.advance(86400)
    status, body = await api.user_info(tokens["access_token"])
    assert (status, body["error"]["code"]) == (401, "access_token_invalid")


async def test_expire_access_tokens_then_refresh(sandbox: Sandbox, api: Api) -> None:
    """expire_access_tokens kills live access tokens; a refresh brings a working one."""
    user, tokens = await authorized(sandbox, api)
    sandbox.expire_access_tokens(user.open_id)
    assert (await api.user_info(tokens["access_token"]))[0] == 401
    _, refreshed = await api.refresh(tokens["refresh_token"])
    assert (await api.user_info(refreshed["access_token"]))[0] == 200


async def test_user_info_rate_limit_slides_over_a_minute(
    sandbox: Sandbox, api: Api, clock: ManualClock
) -> None:
    """Past the per-minute limit user info is 429 rate_limit_exceeded until the window slides."""
    _, tokens = await authorized(sandbox, api)
    for _ in range(5):
        assert (await api.user_info(tokens["access_token"]))[0] == 200
    status, body = await api.user_info(tokens["access_token"])
    assert (status, body["error"]["code"]) == (429, "rate_limit_exceeded")
    clock.advance(60)
    assert (await api.user_info(tokens["access_token"]))[0] == 200


# -- revocation ----------------------------------------------------------------------------------


async def test_revoke_user_kills_every_token_and_the_grant(sandbox: Sandbox, api: Api) -> None:
    """After the user removes the app: access_token_invalid, invalid_grant, and no basic scope."""
    user, tokens = await authorized(sandbox, api)
    pending = sandbox.login_code(user.open_id)
    sandbox.revoke_user(user.open_id)
    status, body = await api.user_info(tokens["access_token"])
    assert (status, body["error"]["code"]) == (401, "access_token_invalid")
    status, body = await api.refresh(tokens["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body = await api.token(grant_type="authorization_code", code=pending)
    assert (status, body["error"]) == (400, "invalid_grant")
    again = await api.exchange(sandbox.login_code(user.open_id))
    assert again["scope"] == "user.info.open_id"
    assert sandbox.tokens_of(user.open_id) == [again["access_token"]]


async def test_revoke_endpoint(sandbox: Sandbox, api: Api, clock: ManualClock) -> None:
    """Revoke answers {} and ends the authorization; bad client, unknown or expired tokens fail."""
    user, tokens = await authorized(sandbox, api)
    status, body = await api.revoke(tokens["access_token"], client_secret="nope")
    assert (status, body["error"]) == (401, "invalid_client")
    assert await api.revoke(tokens["access_token"]) == (200, {})
    assert sandbox.calls["revoke"] == 2
    assert user.granted_scopes == set()
    assert (await api.refresh(tokens["refresh_token"]))[1]["error"] == "invalid_grant"
    status, body = await api.revoke(tokens["access_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body = await api.post_form("/v2/oauth/revoke/", {"client_key": SANDBOX_CLIENT_KEY})
    assert (status, body["error"]) == (400, "invalid_request")
    fresh = await api.exchange(sandbox.login_code(user.open_id))
    clock.advance(86401)
    status, body = await api.revoke(fresh["access_token"])
    assert (status, body["error"]) == (400, "invalid_grant")


# -- avatars -------------------------------------------------------------------------------------


async def test_signed_avatar_link_works_then_expires(
    sandbox: Sandbox, api: Api, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """The avatar link is signed, answers the SVG, refuses tampering and dies after 6 hours."""
    user, tokens = await authorized(sandbox, api)
    _, body = await api.user_info(tokens["access_token"], "avatar_url,avatar_large_url")
    link = body["data"]["user"]["avatar_url"]
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}" == api.url
    assert parts.path == f"/sandbox/avatar/{user.avatar_id}.svg"
    assert user.open_id not in link, "an avatar link must not reveal the open_id"
    query = parse_qs(parts.query)
    assert int(query["x-expires"][0]) == int(clock()) + 6 * 3600
    async with http.get(link) as response:
        assert response.status == 200
        assert response.content_type == "image/svg+xml"
        assert response.headers["Cache-Control"] == "private, max-age=300"
        assert ">AL</text>" in await response.text()
    async with http.get(link.replace("x-signature=", "x-signature=0")) as response:
        assert response.status == 403
    clock.advance(6 * 3600)
    async with http.get(link) as response:
        assert response.status == 403


async def test_custom_avatar_and_base_url(sandbox: Sandbox, api: Api) -> None:
    """A custom avatar comes back as-is; avatar_base_url sets where generated links point."""
    user, tokens = await authorized(sandbox, api)
    sandbox.avatar_base_url = "/ttminis/sandbox"
    _, body = await api.user_info(tokens["access_token"], "avatar_url")
    assert body["data"]["user"]["avatar_url"].startswith(
        f"/ttminis/sandbox/avatar/{user.avatar_id}"
    )
    sandbox.set_profile(user.open_id, avatar_url="https://cdn.example.com/a.png")
    _, body = await api.user_info(tokens["access_token"], "avatar_url,avatar_url_100")
    assert set(body["data"]["user"].values()) == {"https://cdn.example.com/a.png"}
    assert user.avatar_url == "https://cdn.example.com/a.png"


async def test_control_app_mounted_elsewhere_serves_avatars(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """create_control_app works under a game's prefix; avatar links built for it resolve there."""
    game = web.Application()
    game.add_subapp("/ttminis/sandbox", create_control_app(sandbox))
    runner = web.AppRunner(game)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        base = f"http://127.0.0.1:{runner.addresses[0][1]}/ttminis/sandbox"
        sandbox.avatar_base_url = base
        user = sandbox.add_user(display_name="Grace Hopper")
        assert user.avatar_url.startswith(f"{base}/avatar/")
        async with http.get(user.avatar_url) as response:
            assert (response.status, response.content_type) == (200, "image/svg+xml")
        async with http.post(base + "/profile", json={"device": "d", "display_name": "G"}) as r:
            assert (r.status, (await r.json())["avatar_url"].startswith(base)) == (200, True)
    finally:
        await runner.cleanup()


# -- faults --------------------------------------------------------------------------------------


async def test_injected_503_on_each_endpoint_style(sandbox: Sandbox, api: Api) -> None:
    """status=503 gives the endpoint's own error shape, once; the next request is normal."""
    _, tokens = await authorized(sandbox, api)
    sandbox.inject("token", status=503)
    sandbox.inject("user_info", status=503)
    status, body = await api.refresh(tokens["refresh_token"])
    assert (status, body["error"]) == (503, "temporarily_unavailable")
    status, body = await api.user_info(tokens["access_token"])
    assert (status, body["error"]["code"], body["data"]) == (503, "internal_error", {})
    assert (await api.refresh(tokens["refresh_token"]))[0] == 200
    assert (await api.user_info(tokens["access_token"]))[0] == 200
    assert sandbox.faults == ()


async def test_injected_429_with_retry_after(
    sandbox: Sandbox, api: Api, http: aiohttp.ClientSession
) -> None:
    """retry_after answers 429 with a Retry-After header, for `times` requests."""
    _, tokens = await authorized(sandbox, api)
    sandbox.inject("user_info", retry_after=2, times=2)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    for _ in range(2):
        async with http.get(api.url + "/v2/user/info/?fields=open_id", headers=headers) as resp:
            body = await resp.json()
            assert (resp.status, resp.headers["Retry-After"]) == (429, "2")
            assert body["error"]["code"] == "rate_limit_exceeded"
    assert (await api.user_info(tokens["access_token"]))[0] == 200


async def test_injected_garbage_and_oauth_error_with_200(
    sandbox: Sandbox, api: Api, http: aiohttp.ClientSession
) -> None:
    """A garbage HTML body comes verbatim; oauth_error comes flat with HTTP 200."""
    code = sandbox.login_code(sandbox.add_user().open_id)
    sandbox.inject("*", body="<html>garbage")
    form = {
        "client_key": SANDBOX_CLIENT_KEY,
        "client_secret": SANDBOX_CLIENT_SECRET,
        "grant_type": "authorization_code",
        "code": code,
    }
    async with http.post(api.url + "/v2/oauth/token/", data=form) as response:
        assert (response.status, response.content_type) == (200, "text/html")
        assert await response.text() == "<html>garbage"
    sandbox.inject("token", oauth_error="invalid_grant")
    status, body = await api.token(**{k: v for k, v in form.items() if "client" not in k})
    assert (status, body["error"]) == (200, "invalid_grant")
    assert set(body) == {"error", "error_description", "log_id"}
    assert (await api.exchange(code))["open_id"]


async def test_process_first_models_a_lost_answer(sandbox: Sandbox, api: Api) -> None:
    """With process_first the code is spent before the 503, so the retry is invalid_grant."""
    code = sandbox.login_code(sandbox.add_user().open_id)
    sandbox.inject("token", status=503, process_first=True)
    assert (await api.token(grant_type="authorization_code", code=code))[0] == 503
    status, body = await api.token(grant_type="authorization_code", code=code)
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_dropped_connection(sandbox: Sandbox, api: Api) -> None:
    """drop=True closes the connection without an answer (and without spending the code)."""
    code = sandbox.login_code(sandbox.add_user().open_id)
    sandbox.inject("token", drop=True)
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.token(grant_type="authorization_code", code=code)
    assert (await api.exchange(code))["scope"] == "user.info.open_id"


async def test_delay_is_slow_but_does_not_block_and_close_wakes_it(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """A delayed request waits without blocking others; closing the server answers it at once."""
    user = sandbox.add_user()
    code = sandbox.login_code(user.open_id)
    server = SandboxServer(sandbox)
    await server.start()
    api = Api(http, server)
    sandbox.inject("token", delay=60)
    slow = asyncio.create_task(api.token(grant_type="authorization_code", code=code))
    await sandbox.wait_for_calls("token", 1)
    other = await api.exchange(sandbox.login_code(user.open_id))
    assert other["open_id"] == user.open_id
    assert not slow.done()
    await server.close()
    async with asyncio.timeout(5):  # answered by the close, not by the 60 s delay
        status, body = await slow
    assert (status, body["error"]) == (503, "temporarily_unavailable")
    await server.close()


async def test_short_delay_then_normal_answer(sandbox: Sandbox, api: Api) -> None:
    """A delay alone slows the request, which then gets its normal answer."""
    user = sandbox.add_user()
    sandbox.inject("token", delay=0.05)
    started = time.monotonic()
    body = await api.exchange(sandbox.login_code(user.open_id))
    assert time.monotonic() - started >= 0.05
    assert body["open_id"] == user.open_id


async def test_wait_for_calls_times_out(sandbox: Sandbox) -> None:
    """Waiting for a request that never comes raises TimeoutError."""
    with pytest.raises(TimeoutError):
        await sandbox.wait_for_calls("revoke", timeout=0.01)


def test_inject_validates_its_arguments(sandbox: Sandbox) -> None:
    """inject refuses unknown endpoints, times below 1 and faults that do nothing."""
    with pytest.raises(ValueError, match="endpoint"):
        sandbox.inject("users", status=500)
    with pytest.raises(ValueError, match="times"):
        sandbox.inject("token", status=500, times=0)
    with pytest.raises(ValueError, match="does nothing"):
        sandbox.inject("token")
    assert sandbox.faults == ()


async def test_every_answer_has_a_fresh_log_id(
    sandbox: Sandbox, api: Api, http: aiohttp.ClientSession
) -> None:
    """Every Open API answer carries a new log id (in the body where documented, and a header)."""
    seen = set()
    for _ in range(3):
        async with http.post(api.url + "/v2/oauth/token/", data={}) as response:
            body = await response.json()
            assert response.headers["X-Tt-Logid"] == body["log_id"]
            seen.add(body["log_id"])
    assert len(seen) == 3


# -- control routes ------------------------------------------------------------------------------


async def test_control_login_authorize_deny_revoke(sandbox: Sandbox, api: Api) -> None:
    """The control routes act as the user on a device: login, Allow, Deny, remove the app."""
    status, login = await api.control("/login", {"device": "phone-1"})
    assert status == 200
    assert set(login) == {"code"}
    user = sandbox.user_for_device("phone-1")
    assert (await api.exchange(login["code"]))["open_id"] == user.open_id
    assert await api.control("/deny", {"device": "phone-1"}) == (200, {})
    assert (user.denials, user.granted_scopes) == (1, set())
    _, allow = await api.control("/authorize", {"device": "phone-1"})
    tokens = await api.exchange(allow["code"])
    assert tokens["scope"] == BOTH_SCOPES
    # No webhook is set on a bare emulator: nobody to tell.
    assert await api.control("/revoke", {"device": "phone-1"}) == (200, {"webhook_status": None})
    assert (await api.user_info(tokens["access_token"]))[0] == 401


async def test_control_profile_renames_the_user(sandbox: Sandbox, api: Api) -> None:
    """POST /profile renames on TikTok's side; user info shows the new name."""
    _, allow = await api.control("/authorize", {"device": "tablet"})
    tokens = await api.exchange(allow["code"])
    status, body = await api.control("/profile", {"device": "tablet", "display_name": " Neo "})
    assert status == 200
    assert body["display_name"] == "Neo"
    assert "/sandbox/avatar/" in body["avatar_url"]
    assert "access_token" not in str(body)
    _, info = await api.user_info(tokens["access_token"], "display_name")
    assert info["data"]["user"] == {"display_name": "Neo"}


async def test_control_index_lists_routes(api: Api, http: aiohttp.ClientSession) -> None:
    """GET / describes the control routes."""
    async with http.get(api.url + "/sandbox/") as response:
        body = await response.json()
    assert response.status == 200
    assert "POST /login" in body["routes"]


@pytest.mark.parametrize(
    "payload",
    [
        None,
        ["device"],
        {},
        {"device": ""},
        {"device": 7},
        {"device": "x" * 129},
        {"device": "d", "extra": 1},
    ],
    ids=["null", "array", "no-device", "empty", "number", "too-long", "unknown-field"],
)
async def test_control_rejects_bad_input(api: Api, payload: Any) -> None:
    """Bad control input is 400 with a readable error."""
    status, body = await api.control("/login", payload)
    assert status == 400
    assert set(body) == {"error"}


@pytest.mark.parametrize(
    "payload",
    [
        {"device": "d", "display_name": "x" * 65},
        {"device": "d", "display_name": "   "},
        {"device": "d", "avatar_url": "javascript:alert(1)"},
        {"device": "d", "avatar_url": "https://user:pw@example.com/a.png"},
    ],
    ids=["long-name", "blank-name", "bad-scheme", "credentials"],
)
async def test_control_profile_rejects_bad_values(
    sandbox: Sandbox, api: Api, payload: dict[str, Any]
) -> None:
    """Bad profile values are 400 and change nothing."""
    status, body = await api.control("/profile", payload)
    assert (status, set(body)) == (400, {"error"})
    assert sandbox.users == {}


async def test_control_rejects_non_json(api: Api, http: aiohttp.ClientSession) -> None:
    """A body that is not JSON is 400."""
    async with http.post(api.url + "/sandbox/login", data=b"device=phone") as response:
        assert response.status == 400
        assert "JSON" in (await response.json())["error"]


# -- the Python side -----------------------------------------------------------------------------


def test_users_have_fun_names_and_devices_keep_their_user(sandbox: Sandbox) -> None:
    """Users get a fun name, an opaque open_id and union_id; a device keeps its user."""
    user = sandbox.add_user()
    assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+ \d{1,2}", user.display_name)
    assert user.open_id != user.union_id
    assert sandbox.user_for_device("p") is sandbox.user_for_device("p")
    assert sandbox.user_for_device("q") is not sandbox.user_for_device("p")
    with pytest.raises(ValueError, match="open_id"):
        sandbox.add_user(open_id=user.open_id)
    with pytest.raises(KeyError):
        sandbox.login_code("nobody")


def test_device_users_are_bounded() -> None:
    """Past max_devices, the oldest device's user is forgotten, tokens and all."""
    sandbox = Sandbox(max_devices=2)
    first = sandbox.user_for_device("a")
    sandbox.user_for_device("b")
    sandbox.user_for_device("c")
    assert set(sandbox.devices) == {"b", "c"}
    assert first.open_id not in sandbox.users
    assert len(sandbox.users) == 2


def test_expired_codes_and_tokens_are_swept(clock: ManualClock) -> None:
    """Expired codes are forgotten as new ones are issued, so a long demo does not grow forever."""
    sandbox = Sandbox(clock=clock)
    user = sandbox.add_user()
    old = sandbox.login_code(user.open_id)
    clock.advance(301)
    for _ in range(300):
        sandbox.login_code(user.open_id)
    assert old not in sandbox.codes
    assert len(sandbox.codes) == 300


async def test_headers_alone_decorate_the_normal_answer(
    sandbox: Sandbox, api: Api, http: aiohttp.ClientSession
) -> None:
    """A fault with only headers adds them to the normal answer, until cleared when times=None."""
    _, tokens = await authorized(sandbox, api)
    sandbox.inject("user_info", headers={"X-Extra": "1"}, times=None)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    for _ in range(2):
        async with http.get(api.url + "/v2/user/info/?fields=open_id", headers=headers) as resp:
            assert (resp.status, resp.headers["X-Extra"]) == (200, "1")
    assert len(sandbox.faults) == 1
    sandbox.clear_faults()
    assert not sandbox.faults


async def test_server_lifecycle() -> None:
    """url needs a started server; close is idempotent."""
    server = SandboxServer(Sandbox())
    with pytest.raises(RuntimeError):
        _ = server.url
    async with server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
    await server.close()


def test_public_names_are_sorted_and_exported() -> None:
    """__all__ is sorted and lists exactly the package's public names."""
    public = {
        name
        for name, value in vars(sandbox_package).items()
        if not name.startswith("_") and not isinstance(value, type(sandbox_package))
    }
    assert sandbox_package.__all__ == sorted(sandbox_package.__all__)
    assert set(sandbox_package.__all__) == public
