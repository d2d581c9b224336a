"""Every error code of PROTOCOL.md reached by a real client; bad input never breaks a connection."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from game import Game, run_game

from tiktok_minis import Board, Settings, TikTokMinis

INT64_MAX = 2**63 - 1

BAD_PAYLOADS: list[tuple[str, Any]] = [
    ("tiktok:login", {}),
    ("tiktok:login", {"code": ""}),
    ("tiktok:login", {"code": 12345}),
    ("tiktok:login", {"code": None}),
    ("tiktok:login", {"code": ["a"]}),
    ("tiktok:login", {"code": "x" * 50_000}),
    ("tiktok:login", "just a string"),
    ("tiktok:login", [1, 2, 3]),
    ("tiktok:login", 42),
    ("tiktok:authorize", {}),
    ("tiktok:authorize", {"granted": "yes"}),
    ("tiktok:authorize", {"granted": 1}),
    ("tiktok:authorize", {"granted": True, "code": 7}),
    ("leaderboard:join", {}),
    ("leaderboard:join", {"board": ""}),
    ("leaderboard:join", {"board": "GLOBAL"}),
    ("leaderboard:join", {"board": "g" * 65}),
    ("leaderboard:join", {"board": "../etc"}),
    ("leaderboard:leave", {"board": 3}),
    ("leaderboard:submit", {"board": "global"}),
    ("leaderboard:submit", {"board": "global", "score": "100"}),
    ("leaderboard:submit", {"board": "global", "score": 1.5}),
    ("leaderboard:submit", {"board": "global", "score": 100.0}),
    ("leaderboard:submit", {"board": "global", "score": True}),
    ("leaderboard:submit", {"board": "global", "score": INT64_MAX + 1}),
    ("leaderboard:submit", {"board": "global", "score": -(2**63) - 1}),
    ("leaderboard:submit", {"board": "global", "score": 10**40}),
    ("leaderboard:around", {"board": "global", "radius": 0}),
    ("leaderboard:around", {"board": "global", "radius": 51}),
    ("leaderboard:around", {"board": "global", "radius": 2.0}),
    ("tiktok:logout", "nope"),
]


@pytest.mark.parametrize(("event", "payload"), BAD_PAYLOADS)
async def test_bad_payload_is_invalid_payload_and_connection_survives(
    game: Game, event: str, payload: Any
) -> None:
    """A malformed payload gets invalid_payload, and the same connection keeps working."""
    client, _, _ = await game.logged_in()
    ack = await client.call(event, payload)
    assert ack["ok"] is False
    assert ack["error"]["code"] == "invalid_payload"
    assert isinstance(ack["error"]["message"], str) and ack["error"]["message"]
    assert len(ack["error"]["message"]) < 500, "the message must not echo a huge input"
    assert (await client.call("leaderboard:join", {"board": "global"}))["ok"]


async def test_frame_over_the_transport_limit_closes_only_that_connection(game: Game) -> None:
    """A frame past 64 KiB is cut off by the transport; the server goes on serving the others."""
    import socketio

    bystander = await game.client()
    flooder = await game.client()
    flooder.timeout = 2
    with pytest.raises(socketio.exceptions.TimeoutError):
        await flooder.call("tiktok:login", {"code": "x" * 100_000})
    assert not flooder.sio.connected
    assert (await bystander.call("leaderboard:join", {"board": "global"}))["ok"]


async def test_event_without_payload_gets_an_ack(game: Game) -> None:
    """An event emitted with no payload at all is answered, not dropped."""
    client = await game.client()
    ack = await client.call("leaderboard:join")
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload"
    assert (await client.call("tiktok:logout"))["ok"] is True
    assert (await client.call("tiktok:me"))["player"] is None


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("tiktok:authorize", {"granted": True}),
        ("leaderboard:submit", {"board": "global", "score": 1}),
        ("leaderboard:around", {"board": "global"}),
    ],
)
async def test_events_that_need_a_login(game: Game, event: str, payload: Any) -> None:
    """Events that need a player answer not_logged_in on an anonymous connection."""
    client = await game.client()
    ack = await client.call(event, payload)
    assert ack["ok"] is False and ack["error"]["code"] == "not_logged_in"


async def test_join_needs_no_login(game: Game) -> None:
    """Spectators may watch a board."""
    client = await game.client()
    ack = await client.call("leaderboard:join", {"board": "global"})
    assert ack == {"ok": True, "board": "global", "entries": [], "me": None}


async def test_logout_unbinds_the_connection(game: Game) -> None:
    """After logout the connection is anonymous again."""
    client, _, _ = await game.logged_in()
    assert (await client.call("tiktok:logout", {})) == {"ok": True}
    ack = await client.call("leaderboard:submit", {"board": "global", "score": 1})
    assert ack["error"]["code"] == "not_logged_in"


@pytest.mark.parametrize("code", ["never-issued", "act.looks-like-a-token"])
async def test_unknown_code_is_login_failed(game: Game, code: str) -> None:
    """A code TikTok never issued is login_failed."""
    client = await game.client()
    ack = await client.call("tiktok:login", {"code": code})
    assert ack["ok"] is False and ack["error"]["code"] == "login_failed"


async def test_used_code_is_login_failed(game: Game) -> None:
    """Codes are single use: the second exchange is login_failed."""
    user = game.sandbox.add_user()
    code = game.sandbox.login_code(user.open_id)
    first = await game.client()
    assert (await first.call("tiktok:login", {"code": code}))["ok"]
    second = await game.client()
    ack = await second.call("tiktok:login", {"code": code})
    assert ack["ok"] is False and ack["error"]["code"] == "login_failed"


async def test_unknown_board(game: Game) -> None:
    """A well-formed name of a board that does not exist is unknown_board."""
    client, _, _ = await game.logged_in()
    for event, payload in [
        ("leaderboard:join", {"board": "nope"}),
        ("leaderboard:leave", {"board": "nope"}),
        ("leaderboard:submit", {"board": "nope", "score": 1}),
        ("leaderboard:around", {"board": "nope"}),
    ]:
        ack = await client.call(event, payload)
        assert ack["error"]["code"] == "unknown_board", (event, ack)


async def test_score_rejected(game_settings: Settings) -> None:
    """A board without client scores, or whose validator refuses, answers score_rejected."""

    def boards(minis: TikTokMinis) -> None:
        minis.boards.define(Board("server_only"))
        minis.boards.define(
            Board("capped", client_scores=True, validator=lambda _open_id, score: score <= 1000)
        )

    async with run_game(game_settings, boards) as game:
        client, _, _ = await game.logged_in()
        ack = await client.call("leaderboard:submit", {"board": "server_only", "score": 1})
        assert ack["error"]["code"] == "score_rejected"
        ack = await client.call("leaderboard:submit", {"board": "capped", "score": 1001})
        assert ack["error"]["code"] == "score_rejected"
        ack = await client.call("leaderboard:submit", {"board": "capped", "score": 1000})
        assert ack["ok"] and ack["me"]["score"] == 1000
        joined = await client.call("leaderboard:join", {"board": "server_only"})
        assert joined["entries"] == []


async def test_flood_is_rate_limited_and_recovers(game_settings: Settings) -> None:
    """A flooding connection gets rate_limited acks, every event is answered, then it recovers."""
    settings = Settings(
        **{**game_settings.model_dump(), "events_per_second": 50.0, "events_burst": 10}
    )
    async with run_game(settings) as game:
        client = await game.client()
        acks = await asyncio.gather(
            *(client.call("leaderboard:join", {"board": "global"}) for _ in range(60))
        )
        codes = [ack["ok"] or ack["error"]["code"] for ack in acks]
        assert codes.count(True) >= 10
        assert "rate_limited" in codes
        assert set(codes) <= {True, "rate_limited"}
        # The bucket refills at 50 events/s: a refused event costs nothing, so a bounded series
        # of round trips reaches an accepted one within a few dozen milliseconds.
        for _ in range(5000):
            ack = await client.call("leaderboard:join", {"board": "global"})
            if ack["ok"]:
                break
            assert ack["error"]["code"] == "rate_limited"
        assert ack["ok"], "the connection never recovered from the rate limit"


async def test_unexpected_failure_is_internal_error_with_logged_reference(
    game: Game, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug becomes internal_error; its reference is in the message and the log line."""
    client = await game.client()

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(game.minis.leaderboards, "top", broken)
    with caplog.at_level(logging.ERROR, logger="tiktok_minis"):
        ack = await client.call("leaderboard:join", {"board": "global"})
    assert ack["ok"] is False and ack["error"]["code"] == "internal_error"
    reference = next(r.reference for r in caplog.records if hasattr(r, "reference"))
    assert reference in ack["error"]["message"]
    assert "boom" not in ack["error"]["message"]
    monkeypatch.undo()
    assert (await client.call("leaderboard:join", {"board": "global"}))["ok"]
