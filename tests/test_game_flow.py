"""End to end: the seed's whole flow over real sockets, against the sandbox over real HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from game import FAST_UPSTREAM, Game, run_game

from tiktok_minis import Settings


def _names(update: dict[str, Any]) -> list[str]:
    return [entry["player"]["display_name"] for entry in update["entries"]]


async def test_seed_flow_deny_then_allow_pushes_name_live(game: Game) -> None:
    """Login, deny, login again (still denied), allow: the name reaches a watcher live."""
    sandbox = game.sandbox
    alice, user, ack = await game.logged_in(sandbox.add_user(display_name="Alice Wonder"))
    assert ack["player"]["placeholder"] is True
    assert ack["player"]["display_name"] == "TikTok Player"
    assert ack["player"]["consent"] == "unknown"
    assert ack["session"]
    assert sandbox.calls["user_info"] == 0

    submitted = await alice.call("leaderboard:submit", {"board": "global", "score": 1200})
    assert submitted["ok"] and submitted["me"]["rank"] == 1 and submitted["me"]["score"] == 1200

    watcher = await game.client()
    joined = await watcher.call("leaderboard:join", {"board": "global"})
    assert joined["ok"] and joined["me"] is None
    assert _names(joined) == ["TikTok Player"]

    sandbox.deny(user.open_id)
    denied = await alice.call("tiktok:authorize", {"granted": False})
    assert denied == {"ok": True, "player": denied["player"]}
    assert denied["player"]["consent"] == "denied" and denied["player"]["placeholder"]
    assert sandbox.calls["user_info"] == 0

    again = await game.client()
    relogin = await again.call("tiktok:login", {"code": sandbox.login_code(user.open_id)})
    assert relogin["player"]["consent"] == "denied", "a denial is remembered: do not re-prompt"
    assert relogin["player"]["id"] == ack["player"]["id"]

    code = sandbox.authorize_code(user.open_id)
    renamed = asyncio.ensure_future(
        watcher.wait_for("leaderboard:update", lambda u: "Alice Wonder" in _names(u))
    )
    own_update = asyncio.ensure_future(
        again.wait_for("player:update", lambda p: p["player"]["display_name"] == "Alice Wonder")
    )
    allowed = await alice.call("tiktok:authorize", {"granted": True, "code": code})
    assert allowed["ok"], allowed
    assert allowed["player"]["display_name"] == "Alice Wonder"
    assert allowed["player"]["placeholder"] is False
    assert allowed["player"]["consent"] == "granted"
    assert allowed["player"]["avatar_url"]
    update = await renamed
    assert update["board"] == "global" and update["entries"][0]["score"] == 1200
    assert (await own_update)["player"]["consent"] == "granted"

    calls_before = sandbox.calls["user_info"]
    returning = await game.client()
    back = await returning.call("tiktok:login", {"code": sandbox.login_code(user.open_id)})
    assert back["player"]["display_name"] == "Alice Wonder"
    assert sandbox.calls["user_info"] == calls_before, "a returning login reads the store only"


async def test_authorize_without_code_uses_stored_token(game: Game) -> None:
    """After consent elsewhere, authorize with no code reads the profile with the stored token."""
    sandbox = game.sandbox
    user = sandbox.add_user(display_name="Stored Token")
    sandbox.authorize_code(user.open_id)  # granted earlier; TikTok remembers the grant
    client, _, _ = await game.logged_in(user)
    ack = await client.call("tiktok:authorize", {"granted": True})
    assert ack["ok"] and ack["player"]["display_name"] == "Stored Token"


async def test_silent_login_token_alone_is_not_authorized(game: Game) -> None:
    """Granted without a code and no grant at TikTok: not_authorized, with the placeholder."""
    client, _, _ = await game.logged_in()
    ack = await client.call("tiktok:authorize", {"granted": True})
    assert ack["ok"] is False
    assert ack["error"]["code"] == "not_authorized"
    assert ack["player"]["placeholder"] is True
    assert ack["player"]["display_name"] == "TikTok Player"


async def test_code_of_another_player_is_refused_and_changes_nothing(game: Game) -> None:
    """An authorize code of another open_id ends as login_failed; nothing is stored."""
    sandbox = game.sandbox
    client, _, _ = await game.logged_in(sandbox.add_user(display_name="Mallory"))
    victim = sandbox.add_user(display_name="Victim")
    ack = await client.call(
        "tiktok:authorize", {"granted": True, "code": sandbox.authorize_code(victim.open_id)}
    )
    assert ack["ok"] is False and ack["error"]["code"] == "login_failed"
    me = await client.call("tiktok:me", {})
    assert me["player"]["placeholder"] is True and me["player"]["consent"] == "unknown"
    assert "Victim" not in client.received_text()


async def test_concurrent_authorizations_share_one_user_info_call(game: Game) -> None:
    """Five authorizations at once of one player make one user-info call."""
    sandbox = game.sandbox
    user = sandbox.add_user(display_name="Many Taps")
    sandbox.authorize_code(user.open_id)
    client, _, _ = await game.logged_in(user)
    others = [await game.client(session=None) for _ in range(4)]
    for other in others:
        assert (await other.call("tiktok:login", {"code": sandbox.login_code(user.open_id)}))["ok"]
    acks = await asyncio.gather(
        *(c.call("tiktok:authorize", {"granted": True}) for c in [client, *others])
    )
    assert all(ack["ok"] and ack["player"]["display_name"] == "Many Taps" for ack in acks)
    assert sandbox.calls["user_info"] == 1


async def test_expired_access_token_is_refreshed_before_use(game: Game) -> None:
    """An expired access token is refreshed (the rotated refresh token kept) before user info."""
    sandbox = game.sandbox
    user = sandbox.add_user(display_name="Refreshing")
    client, _, _ = await game.logged_in(user)
    assert (
        await client.call(
            "tiktok:authorize", {"granted": True, "code": sandbox.authorize_code(user.open_id)}
        )
    )["ok"]
    for _ in range(2):  # twice: the second refresh needs the rotated refresh token
        sandbox.expire_access_tokens(user.open_id)
        tokens_before = sandbox.calls["token"]
        sandbox.set_profile(user.open_id, display_name=f"Refreshed {tokens_before}")
        ack = await client.call("tiktok:authorize", {"granted": True})
        assert ack["ok"], ack
        assert ack["player"]["display_name"] == f"Refreshed {tokens_before}"
        assert sandbox.calls["token"] == tokens_before + 1


async def test_revoked_grant_returns_to_placeholder(game: Game) -> None:
    """When TikTok revoked everything, authorize falls back to the placeholder, consent unknown."""
    sandbox = game.sandbox
    user = sandbox.add_user(display_name="Leaving Soon")
    client, _, _ = await game.logged_in(user)
    code = sandbox.authorize_code(user.open_id)
    assert (await client.call("tiktok:authorize", {"granted": True, "code": code}))["ok"]
    sandbox.revoke_user(user.open_id)
    ack = await client.call("tiktok:authorize", {"granted": True})
    assert ack["ok"] is False and ack["error"]["code"] == "not_authorized"
    assert ack["player"]["placeholder"] is True and ack["player"]["consent"] == "unknown"
    assert "Leaving Soon" not in str(ack)


async def test_session_resumes_on_a_new_connection(game: Game) -> None:
    """The session from the login ack binds a new connection with no new code."""
    _, _, ack = await game.logged_in()
    codes_before = game.sandbox.calls["token"]
    resumed = await game.client(session=ack["session"])
    me = await resumed.call("tiktok:me", {})
    assert me["player"]["id"] == ack["player"]["id"]
    submitted = await resumed.call("leaderboard:submit", {"board": "global", "score": 7})
    assert submitted["ok"] and submitted["me"]["player"]["id"] == ack["player"]["id"]
    assert game.sandbox.calls["token"] == codes_before


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-4] + ("AAAA" if not s.endswith("AAAA") else "BBBB"),
        lambda s: s[::-1],
        lambda s: "x" * 5000,
        lambda s: "",
    ],
    ids=["tampered", "reversed", "huge", "empty"],
)
async def test_bad_session_is_refused_at_connect(game: Game, mangle: Any) -> None:
    """A tampered, foreign or malformed session gets connect_error, not a bound connection."""
    import socketio

    _, _, ack = await game.logged_in()
    bad = mangle(ack["session"])
    if not bad:
        anonymous = await game.client(session=None)
        assert (await anonymous.call("tiktok:me", {}))["player"] is None
        return
    with pytest.raises(socketio.exceptions.ConnectionError):
        await game.client(session=bad)


async def test_session_from_another_secret_is_refused(game_settings: Settings) -> None:
    """A session signed under another secret key does not open this server."""
    import socketio

    async with run_game(game_settings) as first:
        _, _, ack = await first.logged_in()
    other = Settings(
        **{**game_settings.model_dump(), "secret_key": "another-secret-key-of-at-least-32-chars!"}
    )
    async with run_game(other) as second:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await second.client(session=ack["session"])


async def test_scores_survive_a_restart(game_settings: Settings) -> None:
    """Scores and profiles are in the database: a restarted server shows them."""
    async with run_game(game_settings) as first:
        sandbox = first.sandbox
        user = sandbox.add_user(display_name="Persistent")
        client, _, ack = await first.logged_in(user)
        await client.call(
            "tiktok:authorize", {"granted": True, "code": sandbox.authorize_code(user.open_id)}
        )
        assert (await client.call("leaderboard:submit", {"board": "global", "score": 99}))["ok"]
    async with run_game(game_settings) as second:
        watcher = await second.client(session=ack["session"])
        joined = await watcher.call("leaderboard:join", {"board": "global"})
        assert joined["entries"][0]["score"] == 99
        assert joined["entries"][0]["player"]["display_name"] == "Persistent"
        assert joined["me"]["rank"] == 1


async def test_flow_on_postgres(postgres_url: str) -> None:
    """The login, submit and authorize flow works on PostgreSQL too."""
    from tiktok_minis.store.database import connection

    settings = Settings(sandbox=True, database_url=postgres_url, **FAST_UPSTREAM)
    async with run_game(settings) as game:
        await connection().execute_script("TRUNCATE ttminis_score, ttminis_player CASCADE")
        sandbox = game.sandbox
        user = sandbox.add_user(display_name="Postgres Pat")
        client, _, _ = await game.logged_in(user)
        assert (await client.call("leaderboard:submit", {"board": "global", "score": 5}))["ok"]
        ack = await client.call(
            "tiktok:authorize", {"granted": True, "code": sandbox.authorize_code(user.open_id)}
        )
        assert ack["player"]["display_name"] == "Postgres Pat"
        joined = await client.call("leaderboard:join", {"board": "global"})
        assert joined["me"]["player"]["display_name"] == "Postgres Pat"
        await connection().execute_script("TRUNCATE ttminis_score, ttminis_player CASCADE")
