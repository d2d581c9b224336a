"""A dead, slow or rate-limiting TikTok; and no secret ever leaks to a client or the disk."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest
from game import Game, issued_tokens

from tiktok_minis import Settings
from tiktok_minis.settings import SANDBOX_CLIENT_SECRET


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_dead_tiktok_is_upstream_unavailable_within_budget(game: Game, status: int) -> None:
    """A TikTok that only fails: upstream_unavailable within the budget; a retry works later."""
    sandbox = game.sandbox
    user = sandbox.add_user()
    client = await game.client()
    sandbox.inject("token", status=status, times=1000)
    # The answer comes within the budget (a second of grace), not at the client's ack timeout.
    async with asyncio.timeout(game.minis.settings.upstream_budget_seconds + 1.0):
        ack = await client.call("tiktok:login", {"code": sandbox.login_code(user.open_id)})
    assert ack["ok"] is False and ack["error"]["code"] == "upstream_unavailable"
    assert sandbox.calls["token"] >= 2, "5xx is retried"
    sandbox.clear_faults()
    ack = await client.call("tiktok:login", {"code": sandbox.login_code(user.open_id)})
    assert ack["ok"], "nothing was lost: a fresh code works once TikTok is back"


async def test_slow_tiktok_times_out_as_upstream_unavailable(game: Game) -> None:
    """A TikTok slower than the attempt timeout on every attempt ends as upstream_unavailable."""
    sandbox = game.sandbox
    user = sandbox.add_user()
    client = await game.client()
    sandbox.inject("token", delay=5.0, times=1000)
    ack = await client.call("tiktok:login", {"code": sandbox.login_code(user.open_id)})
    assert ack["ok"] is False and ack["error"]["code"] == "upstream_unavailable"


async def test_transient_failures_are_retried_to_success(game: Game) -> None:
    """One 503 and one 429 with Retry-After, then success: the player never notices."""
    sandbox = game.sandbox
    user = sandbox.add_user(display_name="Patient")
    client, _, _ = await game.logged_in(user)
    code = sandbox.authorize_code(user.open_id)
    sandbox.inject("user_info", status=429, retry_after=0.1, times=1)
    ack = await client.call("tiktok:authorize", {"granted": True, "code": code})
    assert ack["ok"], ack
    assert ack["player"]["display_name"] == "Patient"
    assert sandbox.calls["user_info"] == 2


async def test_rate_limiting_tiktok_is_upstream_unavailable(game: Game) -> None:
    """A TikTok that answers 429 on every try ends as upstream_unavailable, and nothing changes."""
    sandbox = game.sandbox
    user = sandbox.add_user(display_name="Throttled")
    client, _, _ = await game.logged_in(user)
    code = sandbox.authorize_code(user.open_id)
    sandbox.inject("user_info", status=429, retry_after=0.05, times=1000)
    ack = await client.call("tiktok:authorize", {"granted": True, "code": code})
    assert ack["ok"] is False and ack["error"]["code"] == "upstream_unavailable"
    me = await client.call("tiktok:me", {})
    assert me["player"]["placeholder"] is True


async def test_garbage_from_tiktok_is_upstream_unavailable(game: Game) -> None:
    """HTML instead of JSON, on every try, is upstream_unavailable, not a crash."""
    sandbox = game.sandbox
    user = sandbox.add_user()
    client = await game.client()
    sandbox.inject("token", status=200, body="<html>proxy error</html>", times=1000)
    ack = await client.call("tiktok:login", {"code": sandbox.login_code(user.open_id)})
    assert ack["ok"] is False and ack["error"]["code"] == "upstream_unavailable"


async def test_nothing_secret_reaches_any_client(game: Game) -> None:
    """No token, client secret, or other player's open_id is in anything a client receives."""
    sandbox = game.sandbox
    users = [sandbox.add_user(display_name=f"Leaky {n}") for n in range(3)]
    clients = []
    for user in users:
        client, _, _ = await game.logged_in(user)
        await client.call(
            "tiktok:authorize", {"granted": True, "code": sandbox.authorize_code(user.open_id)}
        )
        await client.call("leaderboard:submit", {"board": "global", "score": len(clients) + 1})
        await client.call("leaderboard:join", {"board": "global"})
        await client.call("leaderboard:around", {"board": "global", "radius": 5})
        clients.append((client, user))
    watcher = await game.client()
    await watcher.call("leaderboard:join", {"board": "global"})
    await clients[-1][0].call("leaderboard:submit", {"board": "global", "score": 100})
    await watcher.wait_for("leaderboard:update", lambda u: u["entries"][0]["score"] == 100)

    everything = game.all_received()
    assert not re.search(r"\b(act|rft)\.[A-Za-z0-9_-]{8,}", everything), "a token leaked"
    assert SANDBOX_CLIENT_SECRET not in everything
    assert "open_id" in everything  # each player does receive its own Player shape
    for client, user in clients:
        received = client.received_text()
        for _, other in clients:
            if other.open_id != user.open_id:
                assert other.open_id not in received
    for _, user in clients:
        assert user.open_id not in watcher.received_text()


async def test_tokens_are_not_in_clear_in_the_database(game: Game, game_settings: Settings) -> None:
    """The SQLite file holds ciphertexts, never an access or refresh token."""
    sandbox = game.sandbox
    user = sandbox.add_user()
    client, _, _ = await game.logged_in(user)
    await client.call(
        "tiktok:authorize", {"granted": True, "code": sandbox.authorize_code(user.open_id)}
    )
    tokens = issued_tokens(sandbox, user.open_id)
    assert tokens, "the emulator issued tokens"
    path = Path(game_settings.database_url.removeprefix("sqlite://"))
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert user.open_id.encode() in raw, "the file is the one the game writes"
    for token in tokens:
        assert token.encode() not in raw


async def test_no_token_in_logs(game: Game, caplog: pytest.LogCaptureFixture) -> None:
    """Log lines of a whole flow, failures included, never carry a token or the secret."""
    sandbox = game.sandbox
    user = sandbox.add_user()
    with caplog.at_level(logging.DEBUG):
        client, _, _ = await game.logged_in(user)
        sandbox.inject("user_info", status=500, times=1)
        await client.call(
            "tiktok:authorize", {"granted": True, "code": sandbox.authorize_code(user.open_id)}
        )
        await client.call("tiktok:login", {"code": "bogus-code"})
    text = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    for token in issued_tokens(sandbox, user.open_id):
        assert token not in text
    assert SANDBOX_CLIENT_SECRET not in text
