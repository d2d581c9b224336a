"""The TikTok client against aioresponses: requests as documented, every error shape, retries."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from tiktok_minis import (
    LoginFailed,
    NotAuthorized,
    TokenExpired,
    UpstreamRejected,
    UpstreamUnavailable,
)
from tiktok_minis.tiktok import TikTokClient

BASE = "https://api.tiktok.test"
TOKEN_URL = f"{BASE}/v2/oauth/token/"
REVOKE_URL = f"{BASE}/v2/oauth/revoke/"
USER_URL = re.compile(r"^https://api\.tiktok\.test/v2/user/info/\?.*$")
SECRET = "client-secret-value"

TOKEN_BODY = {
    "open_id": "open-1",
    "scope": "user.info.open_id,user.info.basic",
    "access_token": "act.access-token-1",
    "expires_in": 7200,
    "refresh_token": "rft.refresh-token-1",
    "refresh_expires_in": 15552000,
    "token_type": "Bearer",
}
USER_BODY = {
    "data": {"user": {"open_id": "open-1", "display_name": "Zed", "avatar_url": "https://a/b"}},
    "error": {"code": "ok", "message": "", "log_id": "log-ok"},
}

OAUTH_ERRORS: list[tuple[str, type[Exception]]] = [
    ("invalid_grant", LoginFailed),
    ("access_denied", LoginFailed),
    ("invalid_client", UpstreamRejected),
    ("invalid_request", UpstreamRejected),
    ("invalid_scope", UpstreamRejected),
    ("unauthorized_client", UpstreamRejected),
    ("unsupported_grant_type", UpstreamRejected),
    ("unsupported_response_type", UpstreamRejected),
    ("server_error", UpstreamUnavailable),
    ("temporarily_unavailable", UpstreamUnavailable),
    ("something_new", UpstreamRejected),
]
API_ERRORS: list[tuple[str, int, type[Exception]]] = [
    ("access_token_invalid", 401, TokenExpired),
    ("scope_not_authorized", 401, NotAuthorized),
    ("scope_permission_missed", 400, NotAuthorized),
    ("invalid_params", 400, UpstreamRejected),
    ("rate_limit_exceeded", 429, UpstreamUnavailable),
    ("internal_error", 500, UpstreamUnavailable),
]
GARBAGE = ["<html>Bad gateway</html>", "null", "[]", '{"open_id": "trunc', "", '"a string"']


#: A small budget and tiny backoff, so failure paths finish quickly.
QUICK = {
    "budget": 2.0,
    "attempt_timeout": 0.5,
    "max_attempts": 3,
    "retry_after_cap": 0.3,
    "backoff_base": 0.001,
}

MakeClient = Callable[..., TikTokClient]


@pytest.fixture
def make_client() -> MakeClient:
    """Build started-on-entry clients: ``async with make_client(budget=0.3) as tiktok``; the
    test's key, secret and base URL and the ``QUICK`` limits, overridden by the keywords."""

    def make(**overrides: Any) -> TikTokClient:
        options = {"client_key": "key-1", "client_secret": SECRET, "base_url": BASE, **QUICK}
        return TikTokClient(**{**options, **overrides})

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> AsyncIterator[TikTokClient]:
    """A started client with the ``QUICK`` limits."""
    async with make_client() as tiktok:
        yield tiktok


def _oauth_error(error: str) -> dict[str, str]:
    return {"error": error, "error_description": f"about {error}", "log_id": f"log-{error}"}


def _api_error(code: str) -> dict[str, Any]:
    return {
        "data": {},
        "error": {"code": code, "message": f"about {code}", "log_id": f"log-{code}"},
    }


def _sent(mocked: aioresponses, method: str, url: str | re.Pattern[str]) -> list[Any]:
    """The requests' keyword arguments sent to ``url`` (a pattern matches any query)."""
    return [
        call.kwargs
        for (sent_method, sent_url), calls in mocked.requests.items()
        if sent_method == method
        and (url.match(str(sent_url)) if isinstance(url, re.Pattern) else sent_url == URL(url))
        for call in calls
    ]


def _user_requests(mocked: aioresponses) -> list[tuple[URL, dict[str, Any]]]:
    return [
        (url, call.kwargs)
        for (method, url), calls in mocked.requests.items()
        if method == "GET"
        for call in calls
    ]


async def test_fetch_token_sends_the_mini_game_form(client: TikTokClient) -> None:
    """The code exchange posts client_key, secret, code, grant type; no redirect_uri or verifier."""
    with aioresponses() as mocked:
        mocked.post(TOKEN_URL, payload=TOKEN_BODY)
        tokens = await client.fetch_token("code-1")
        (sent,) = _sent(mocked, "POST", TOKEN_URL)
    assert sent["data"] == {
        "client_key": "key-1",
        "client_secret": SECRET,
        "code": "code-1",
        "grant_type": "authorization_code",
    }
    assert tokens.open_id == "open-1"
    assert tokens.access_token == "act.access-token-1"
    assert tokens.scopes == {"user.info.open_id", "user.info.basic"}
    assert (tokens.access_expires_at - tokens.issued_at).total_seconds() == 7200
    assert (tokens.refresh_expires_at - tokens.issued_at).total_seconds() == 15552000
    assert "act." not in repr(tokens) and "rft." not in repr(tokens)


async def test_refresh_token_sends_the_refresh_grant(client: TikTokClient) -> None:
    """A refresh posts grant_type=refresh_token with the refresh token; the lifetime is trusted."""
    with aioresponses() as mocked:
        mocked.post(TOKEN_URL, payload={**TOKEN_BODY, "expires_in": 86400})
        tokens = await client.refresh_token("rft.old")
        (sent,) = _sent(mocked, "POST", TOKEN_URL)
    assert sent["data"] == {
        "client_key": "key-1",
        "client_secret": SECRET,
        "grant_type": "refresh_token",
        "refresh_token": "rft.old",
    }
    assert tokens.expires_in == 86400


@pytest.mark.parametrize("grant", ["code", "refresh"])
async def test_token_sets_are_dated_by_the_clients_clock(
    make_client: MakeClient, grant: str
) -> None:
    """Both token answers count expires_in and refresh_expires_in from the injected clock."""
    issued = 1_900_000_000.0  # years from the real time: a wall-clock date cannot pass
    async with make_client(clock=lambda: issued) as tiktok:
        with aioresponses() as mocked:
            mocked.post(TOKEN_URL, payload=TOKEN_BODY)
            if grant == "code":
                tokens = await tiktok.fetch_token("code-1")
            else:
                tokens = await tiktok.refresh_token("rft.old")
    assert tokens.issued_at == datetime.fromtimestamp(issued, UTC)
    assert tokens.access_expires_at == datetime.fromtimestamp(issued + 7200, UTC)
    assert tokens.refresh_expires_at == datetime.fromtimestamp(issued + 15552000, UTC)


async def test_revoke_posts_the_token(client: TikTokClient) -> None:
    """Revoke posts client_key, secret and the access token; {} is success."""
    with aioresponses() as mocked:
        mocked.post(REVOKE_URL, payload={})
        await client.revoke_token("act.x")
        (sent,) = _sent(mocked, "POST", REVOKE_URL)
    assert sent["data"] == {"client_key": "key-1", "client_secret": SECRET, "token": "act.x"}


async def test_fetch_user_sends_bearer_and_fields(client: TikTokClient) -> None:
    """User info is a GET with the Bearer header and an explicit fields list."""
    with aioresponses() as mocked:
        mocked.get(USER_URL, payload=USER_BODY)
        user = await client.fetch_user("act.x", ["open_id", "display_name", "avatar_url"])
        ((url, sent),) = _user_requests(mocked)
    assert sent["headers"]["Authorization"] == "Bearer act.x"
    assert url.query["fields"] == "open_id,display_name,avatar_url"
    assert (user.open_id, user.display_name, user.avatar_url, user.union_id) == (
        "open-1",
        "Zed",
        "https://a/b",
        None,
    )


@pytest.mark.parametrize(("error", "raised"), OAUTH_ERRORS)
@pytest.mark.parametrize("status", [200, 400])
async def test_oauth_errors_map_by_body(
    client: TikTokClient, error: str, raised: type[Exception], status: int
) -> None:
    """Every documented OAuth error maps by its body, whether it came with 200 or 400."""
    with aioresponses() as mocked:
        mocked.post(TOKEN_URL, payload=_oauth_error(error), status=status, repeat=True)
        with pytest.raises(raised) as caught:
            await client.fetch_token("code-1")
    assert getattr(caught.value, "log_id", None) == f"log-{error}"


@pytest.mark.parametrize(("code", "status", "raised"), API_ERRORS)
async def test_user_info_errors_map_by_envelope(
    client: TikTokClient, code: str, status: int, raised: type[Exception]
) -> None:
    """Every documented user-info error code maps to the plugin's error, log_id kept."""
    with aioresponses() as mocked:
        mocked.get(USER_URL, payload=_api_error(code), status=status, repeat=True)
        with pytest.raises(raised) as caught:
            await client.fetch_user("act.x")
    assert getattr(caught.value, "log_id", None) == f"log-{code}"


async def test_4xx_is_not_retried(client: TikTokClient) -> None:
    """A 4xx with a definite error is answered at once: exactly one request."""
    with aioresponses() as mocked:
        mocked.get(USER_URL, payload=_api_error("scope_not_authorized"), status=401, repeat=True)
        with pytest.raises(NotAuthorized):
            await client.fetch_user("act.x")
        assert len(_user_requests(mocked)) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retried_to_success(client: TikTokClient, status: int) -> None:
    """A 5xx, then success: the caller sees only the success."""
    with aioresponses() as mocked:
        mocked.get(USER_URL, body="upstream sad", status=status)
        mocked.get(USER_URL, payload=USER_BODY)
        user = await client.fetch_user("act.x")
        assert len(_user_requests(mocked)) == 2
    assert user.display_name == "Zed"


async def test_transient_oauth_error_with_200_is_retried(client: TikTokClient) -> None:
    """temporarily_unavailable with HTTP 200 is retried like a 503."""
    with aioresponses() as mocked:
        mocked.post(TOKEN_URL, payload=_oauth_error("temporarily_unavailable"))
        mocked.post(TOKEN_URL, payload=TOKEN_BODY)
        tokens = await client.refresh_token("rft.old")
        assert len(_sent(mocked, "POST", TOKEN_URL)) == 2
    assert tokens.open_id == "open-1"


async def test_429_retry_after_is_honoured(client: TikTokClient) -> None:
    """A 429 with Retry-After waits that long (under the cap) before the next attempt."""
    with aioresponses() as mocked:
        mocked.get(
            USER_URL,
            payload=_api_error("rate_limit_exceeded"),
            status=429,
            headers={"Retry-After": "0.25"},
        )
        mocked.get(USER_URL, payload=USER_BODY)
        started = time.monotonic()
        user = await client.fetch_user("act.x")
        elapsed = time.monotonic() - started
    assert user.display_name == "Zed"
    assert elapsed >= 0.25


async def test_retry_after_beyond_the_cap_is_capped(client: TikTokClient) -> None:
    """A Retry-After of a minute is capped (0.3 s here), so the call still succeeds in budget."""
    with aioresponses() as mocked:
        mocked.get(
            USER_URL,
            payload=_api_error("rate_limit_exceeded"),
            status=429,
            headers={"Retry-After": "60"},
        )
        mocked.get(USER_URL, payload=USER_BODY)
        user = await client.fetch_user("act.x")
    assert user.display_name == "Zed"


@pytest.mark.parametrize(
    "exception",
    [
        TimeoutError(),
        aiohttp.ClientConnectionError("refused"),
        aiohttp.ServerDisconnectedError(),
    ],
    ids=["timeout", "connection", "disconnected"],
)
async def test_transport_failures_retry_then_unavailable(
    client: TikTokClient, exception: Exception
) -> None:
    """Timeouts and connection errors are retried, then UpstreamUnavailable."""
    with aioresponses() as mocked:
        mocked.get(USER_URL, exception=exception, repeat=True)
        with pytest.raises(UpstreamUnavailable):
            await client.fetch_user("act.x")
        assert len(_user_requests(mocked)) == 3


async def test_transport_failure_then_success(client: TikTokClient) -> None:
    """One dropped connection, then an answer: success."""
    with aioresponses() as mocked:
        mocked.post(TOKEN_URL, exception=aiohttp.ClientConnectionError("reset"))
        mocked.post(TOKEN_URL, payload=TOKEN_BODY)
        tokens = await client.fetch_token("code-1")
    assert tokens.open_id == "open-1"


async def test_lost_answer_then_invalid_grant_is_login_failed(client: TikTokClient) -> None:
    """A code spent on an attempt whose answer was lost: the retry meets invalid_grant."""
    with aioresponses() as mocked:
        mocked.post(TOKEN_URL, status=503, body="")
        mocked.post(TOKEN_URL, payload=_oauth_error("invalid_grant"), status=400)
        with pytest.raises(LoginFailed):
            await client.fetch_token("code-1")
        assert len(_sent(mocked, "POST", TOKEN_URL)) == 2


async def test_whole_operation_is_bounded_by_the_budget(make_client: MakeClient) -> None:
    """A Retry-After longer than the budget left is not slept through: the operation gives up
    after that one attempt, as UpstreamUnavailable, with attempts and waits still allowed."""
    async with make_client(
        budget=0.3, attempt_timeout=5, max_attempts=10, retry_after_cap=5
    ) as tiktok:
        with aioresponses() as mocked:
            mocked.get(
                USER_URL,
                status=429,
                payload=_api_error("rate_limit_exceeded"),
                headers={"Retry-After": "5"},
                repeat=True,
            )
            with pytest.raises(UpstreamUnavailable):
                # A hang guard only: a client that slept the 5 s would fail here.
                async with asyncio.timeout(2.0):
                    await tiktok.fetch_user("act.x")
            assert len(_sent(mocked, "GET", USER_URL)) == 1


@pytest.mark.parametrize("body", GARBAGE)
@pytest.mark.parametrize("status", [200, 502])
async def test_garbage_bodies_are_unavailable(client: TikTokClient, body: str, status: int) -> None:
    """HTML, null, a list, truncated JSON, nothing: retried, then UpstreamUnavailable."""
    with aioresponses() as mocked:
        mocked.post(TOKEN_URL, body=body, status=status, repeat=True)
        mocked.get(USER_URL, body=body, status=status, repeat=True)
        with pytest.raises(UpstreamUnavailable):
            await client.fetch_token("code-1")
        with pytest.raises(UpstreamUnavailable):
            await client.fetch_user("act.x")
        assert len(_sent(mocked, "POST", TOKEN_URL)) == 3


@pytest.mark.parametrize(
    "body",
    [
        {"open_id": "o"},
        {**TOKEN_BODY, "access_token": ""},
        {**TOKEN_BODY, "expires_in": "soon"},
        {"data": {"user": "nope"}, "error": {"code": "ok"}},
    ],
    ids=["missing-fields", "empty-token", "bad-expiry", "bad-user"],
)
async def test_wrong_shapes_are_unavailable(client: TikTokClient, body: dict[str, Any]) -> None:
    """JSON objects of the wrong shape are not trusted."""
    with aioresponses() as mocked:
        mocked.post(TOKEN_URL, payload=body, repeat=True)
        mocked.get(USER_URL, payload=body, repeat=True)
        call = client.fetch_user("act.x") if "data" in body else client.fetch_token("c")
        with pytest.raises(UpstreamUnavailable):
            await call


async def test_closes_only_a_session_it_opened(make_client: MakeClient) -> None:
    """A session passed in stays open after close; one the client opened is closed."""
    async with aiohttp.ClientSession() as session:
        given = make_client(session=session)
        await given.start()
        await given.close()
        await given.close()
        assert not session.closed
    own = make_client()
    await own.start()
    opened = own._session
    await own.close()
    assert opened is not None and opened.closed


async def test_no_token_code_or_secret_in_logs(
    client: TikTokClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Failure logs carry endpoint, status, code and log_id, never a token, code or secret."""
    with caplog.at_level(logging.DEBUG), aioresponses() as mocked:
        mocked.post(TOKEN_URL, payload=_oauth_error("invalid_grant"), status=400)
        mocked.get(USER_URL, payload=_api_error("access_token_invalid"), status=401)
        mocked.post(REVOKE_URL, exception=aiohttp.ClientConnectionError("x"), repeat=True)
        for call in (
            client.fetch_token("code-secret-123"),
            client.fetch_user("act.secret-access"),
            client.revoke_token("act.secret-access"),
        ):
            with pytest.raises((LoginFailed, TokenExpired, UpstreamUnavailable)):
                await call
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "log-invalid_grant" in text, "the log_id is logged for support"
    for secret in ("code-secret-123", "act.secret-access", SECRET):
        assert secret not in text
    assert SECRET not in repr(client)
