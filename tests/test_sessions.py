"""Sessions that end: logout, logout everywhere, forget, on this process and on others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import socketio
from game import FAST_UPSTREAM, Game, forget_from_the_shell, run_game

from tiktok_minis import Settings
from tiktok_minis.sandbox import SandboxServer
from tiktok_minis.testing import GameClient

# Other processes notice an end within one poll; the tests poll fast and wait on the push.
FAST_POLL = {"session_poll_seconds": 0.05}


def _settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {**FAST_UPSTREAM, **FAST_POLL, **overrides}
    return Settings(sandbox=True, database_url=database_url, **values)


@pytest.fixture
async def fast_game(sqlite_url: str) -> AsyncIterator[Game]:
    """The example game, following session ends every 50 ms."""
    async with run_game(_settings(sqlite_url)) as game:
        yield game


async def _refused(game: Game, session: str) -> dict[str, Any]:
    """The connect_error data of a connect that resumes ``session``; fails if it was accepted."""
    client = GameClient(game.url, session=session)
    refusals: asyncio.Queue[Any] = asyncio.Queue()

    async def on_refusal(data: Any) -> None:
        await refusals.put(data)

    client.sio.on("connect_error", on_refusal)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect()
    data: dict[str, Any] = await asyncio.wait_for(refusals.get(), 5)
    return data


async def _ended(client: GameClient) -> Any:
    """The ``session:ended`` push the client got: already received, or the next one."""
    for name, data in client.received:
        if name == "session:ended":
            return data
    return await client.wait_for("session:ended", within=5)


async def test_logout_ends_the_session_it_was_given(fast_game: Game) -> None:
    """After tiktok:logout the connection is a spectator and its session string is refused."""
    game = fast_game
    client, user, ack = await game.logged_in()
    other_device = await game.client()
    other = await other_device.call("tiktok:login", {"code": game.sandbox.login_code(user.open_id)})

    assert await client.call("tiktok:logout", {}) == {"ok": True}
    assert await client.call("tiktok:me") == {"ok": True, "player": None}
    submit = await client.call("leaderboard:submit", {"board": "global", "score": 1})
    assert submit["error"]["code"] == "not_logged_in"
    refusal = await _refused(game, ack["session"])
    assert refusal["data"] == {"code": "invalid_session"}
    # Only that session ended: the player's other device and its session go on.
    assert (await other_device.call("tiktok:me"))["player"]["id"] == ack["player"]["id"]
    resumed = await game.client(session=other["session"])
    assert (await resumed.call("tiktok:me"))["player"]["id"] == ack["player"]["id"]
    assert not any(name == "session:ended" for name, _ in other_device.received)


async def test_logout_without_a_login_changes_nothing(fast_game: Game) -> None:
    """A spectator's logout, of either kind, is acked and leaves it a spectator."""
    client = await fast_game.client()
    for payload in ({}, {"everywhere": True}, None):
        assert await client.call("tiktok:logout", payload) == {"ok": True}
    assert await client.call("tiktok:me") == {"ok": True, "player": None}


async def test_logout_payload_is_validated(fast_game: Game) -> None:
    """``everywhere`` must be a bool: anything else is invalid_payload and logs nobody out."""
    client, _, _ = await fast_game.logged_in()
    for everywhere in ("yes", 1, None, [True]):
        ack = await client.call("tiktok:logout", {"everywhere": everywhere})
        assert ack["error"]["code"] == "invalid_payload", everywhere
    assert (await client.call("tiktok:me"))["player"] is not None


async def test_logout_everywhere_ends_every_session_of_the_player(fast_game: Game) -> None:
    """Every device is unbound and told, every old session refused; a new login works again."""
    game = fast_game
    phone, user, first = await game.logged_in()
    tablet = await game.client()
    second = await tablet.call("tiktok:login", {"code": game.sandbox.login_code(user.open_id)})
    resumed = await game.client(session=first["session"])
    stranger, _, _ = await game.logged_in()

    assert await phone.call("tiktok:logout", {"everywhere": True}) == {"ok": True}
    for device in (tablet, resumed):
        assert await _ended(device) == {"reason": "logout"}
        ack = await device.call("leaderboard:submit", {"board": "global", "score": 3})
        assert ack["error"]["code"] == "not_logged_in"
    assert not any(name == "session:ended" for name, _ in phone.received)
    assert not any(name == "session:ended" for name, _ in stranger.received)
    assert (await stranger.call("tiktok:me"))["player"] is not None
    for session in (first["session"], second["session"]):
        assert (await _refused(game, session))["data"] == {"code": "invalid_session"}

    again = await phone.call("tiktok:login", {"code": game.sandbox.login_code(user.open_id)})
    assert again["ok"] and again["player"]["id"] == first["player"]["id"]
    back = await game.client(session=again["session"])
    assert (await back.call("tiktok:me"))["player"]["id"] == first["player"]["id"]


async def test_logout_everywhere_reaches_the_other_processes(sqlite_url: str) -> None:
    """A logout everywhere on one server unbinds the player's connections on another."""
    async with (
        run_game(_settings(sqlite_url)) as first,
        run_game(_settings(sqlite_url)) as second,
    ):
        user = first.sandbox.add_user()
        here = await first.client()
        ack = await here.call("tiktok:login", {"code": first.sandbox.login_code(user.open_id)})
        # The second server's emulator knows nobody: the player resumes there with a session.
        there = await second.client(session=ack["session"])
        assert (await there.call("tiktok:me"))["player"]["id"] == ack["player"]["id"]

        assert await here.call("tiktok:logout", {"everywhere": True}) == {"ok": True}
        assert await _ended(there) == {"reason": "logout"}
        assert (await there.call("tiktok:me"))["player"] is None


async def test_forget_from_the_shell_ends_the_sessions_of_a_live_server(
    tmp_path: Path, fast_game: Game
) -> None:
    """``python -m tiktok_minis forget`` in another process: the player's socket is told and
    answers not_logged_in (never internal_error), and the session no longer resumes."""
    game = fast_game
    client, user, ack = await game.logged_in()
    code = game.sandbox.authorize_code(user.open_id)
    assert (await client.call("tiktok:authorize", {"granted": True, "code": code}))["ok"]

    answer = await forget_from_the_shell(game.minis.settings.database_url, user.open_id)
    assert answer["forgotten"] == ack["player"]["id"]

    assert await _ended(client) == {"reason": "forgotten"}
    for event, payload in (
        ("leaderboard:submit", {"board": "global", "score": 5}),
        ("tiktok:authorize", {"granted": True}),
        ("leaderboard:around", {"board": "global"}),
    ):
        assert (await client.call(event, payload))["error"]["code"] == "not_logged_in", event
    assert (await _refused(game, ack["session"]))["data"] == {"code": "invalid_session"}


async def test_a_player_gone_before_the_poll_answers_not_logged_in(sqlite_url: str) -> None:
    """Deleted behind the plugin's back and before any poll: every event is not_logged_in."""
    settings = _settings(sqlite_url, session_poll_seconds=60)
    async with run_game(settings) as game:
        client, user, _ = await game.logged_in()
        await game.minis.store.players.forget(
            user.open_id,
            anonymise_scores=False,
            now=datetime.fromtimestamp(game.minis.clock(), UTC),
        )
        for event, payload in (
            ("leaderboard:submit", {"board": "global", "score": 5}),
            ("tiktok:authorize", {"granted": True}),
            ("tiktok:authorize", {"granted": False}),
            ("tiktok:logout", {"everywhere": True}),
        ):
            ack = await client.call(event, payload)
            assert ack == {"ok": True} or ack["error"]["code"] == "not_logged_in", (event, ack)
        assert await client.call("tiktok:me") == {"ok": True, "player": None}


async def test_a_restarted_plugin_still_pushes_boards(fast_game: Game) -> None:
    """close() then start() on the plugin: board pushes and session ends work as before."""
    game = fast_game
    await game.minis.close()
    await game.minis.start()
    watcher = await game.client()
    await watcher.call("leaderboard:join", {"board": "global"})
    player, user, _ = await game.logged_in()
    assert (await player.call("leaderboard:submit", {"board": "global", "score": 42}))["ok"]
    update = await watcher.wait_for(
        "leaderboard:update", lambda data: data["entries"][:1] != [], within=5
    )
    assert update["entries"][0]["score"] == 42
    other = await game.client()
    ack = await other.call("tiktok:login", {"code": game.sandbox.login_code(user.open_id)})
    assert ack["ok"]
    assert await player.call("tiktok:logout", {"everywhere": True}) == {"ok": True}
    assert await _ended(other) == {"reason": "logout"}


async def test_a_failed_start_closes_what_it_opened(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start that fails half-way leaves neither the database nor the emulator open."""
    from tiktok_minis import TikTokMinis

    addresses: list[tuple[str, int]] = []
    original = SandboxServer.start

    async def recorded_start(self: SandboxServer) -> None:
        await original(self)
        parts = urlsplit(self.url)
        addresses.append((parts.hostname or "", parts.port or 0))

    monkeypatch.setattr(SandboxServer, "start", recorded_start)
    minis = TikTokMinis(_settings(sqlite_url))

    async def broken() -> None:
        raise OSError("the avatar store could not start")

    monkeypatch.setattr(minis.avatars, "start", broken)
    with pytest.raises(OSError, match="avatar store"):
        await minis.start()
    assert not await minis.database.ping()
    assert len(addresses) == 1
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*addresses[0])
    # Nothing half-open stands in the way of a start that works.
    monkeypatch.undo()
    await minis.start()
    try:
        assert await minis.healthy()
    finally:
        await minis.close()
