"""TikTok's revocation webhook end to end: signed deliveries over real HTTP, pushes over sockets."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from game import Game

from tiktok_minis.sandbox import SandboxUser
from tiktok_minis.sandbox.webhooks import (
    SIGNATURE_HEADER,
    authorization_removed,
    sign,
    signed_webhook,
)
from tiktok_minis.store.models import WebhookEventRow
from tiktok_minis.store.players import FetchedProfile
from tiktok_minis.store.webhooks import WebhookEventStore
from tiktok_minis.testing import GameClient
from tiktok_minis.web.webhook import (
    DEFAULT_PATH,
    MAX_BODY_BYTES,
    Verdict,
    event_digest,
    event_retention,
    verify_signature,
)

PLACEHOLDER = "TikTok Player"
Delivery = tuple[bytes, dict[str, str]]


async def post(
    http: aiohttp.ClientSession, game: Game, delivery: Delivery
) -> tuple[int, dict[str, Any]]:
    """Send a delivery to the game's webhook route: the status and the JSON answer."""
    body, headers = delivery
    async with http.post(game.url + DEFAULT_PATH, data=body, headers=headers) as response:
        return response.status, await response.json()


def removal(game: Game, user: SandboxUser, *, create_time: int | None = None) -> Delivery:
    """``authorization.removed`` for ``user``, signed now by the emulator's app."""
    now = int(time.time())
    event = authorization_removed(
        game.sandbox.client_key,
        user.open_id,
        create_time=now if create_time is None else create_time,
    )
    return signed_webhook(game.sandbox.client_secret, event, timestamp=now)


def resigned(game: Game, delivery: Delivery) -> Delivery:
    """The same body signed again with a later timestamp, as a retry by TikTok may be."""
    return signed_webhook(game.sandbox.client_secret, delivery[0], timestamp=int(time.time()) + 1)


async def authorized(game: Game, name: str) -> tuple[GameClient, SandboxUser]:
    """A player logged in, on board ``global``, who pressed Allow: shown as ``name``."""
    client, user, _ = await game.logged_in(game.sandbox.add_user(display_name=name))
    assert (await client.call("leaderboard:submit", {"board": "global", "score": 500}))["ok"]
    await authorize_again(game, client, user)
    return client, user


async def authorize_again(game: Game, client: GameClient, user: SandboxUser) -> None:
    """The player presses Allow (again): the name is stored and shown."""
    code = game.sandbox.authorize_code(user.open_id)
    ack = await client.call("tiktok:authorize", {"granted": True, "code": code})
    assert ack["ok"] and ack["player"]["display_name"] == user.display_name, ack


async def shown_name(client: GameClient) -> str:
    """The name the player's own connection sees for itself."""
    name: str = (await client.call("tiktok:me", {}))["player"]["display_name"]
    return name


def events(game: Game) -> WebhookEventStore:
    """The game's store of handled webhook events."""
    return game.minis.store.webhook_events


async def has_tokens(game: Game, user: SandboxUser) -> bool:
    """Whether the store still holds the player's tokens."""
    row = await game.minis.store.players.by_open_id(user.open_id)
    assert row is not None
    return row.access_token is not None and row.refresh_token is not None


def names(update: dict[str, Any]) -> list[str]:
    """The names a ``leaderboard:update`` shows, in rank order."""
    return [entry["player"]["display_name"] for entry in update["entries"]]


def webhook_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The webhook module's log records."""
    return [record for record in caplog.records if record.name == "tiktok_minis.webhook"]


async def test_signed_removal_reverts_player_live(
    game: Game, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A verified removal shows the placeholder to watchers and the player at once, drops the
    tokens, and logs one line with the public id and neither open_id, signature nor secret."""
    alice, user = await authorized(game, "Alice Wonder")
    watcher = await game.client()
    assert names(await watcher.call("leaderboard:join", {"board": "global"})) == ["Alice Wonder"]
    board_update = asyncio.ensure_future(
        watcher.wait_for("leaderboard:update", lambda u: names(u) == [PLACEHOLDER])
    )
    own_update = asyncio.ensure_future(
        alice.wait_for("player:update", lambda p: p["player"]["consent"] == "unknown")
    )
    game.sandbox.revoke_user(user.open_id)  # TikTok revokes the tokens before it calls
    delivery = removal(game, user)

    with caplog.at_level(logging.INFO, logger="tiktok_minis"):
        assert await post(http, game, delivery) == (200, {"ok": True})

    assert (await board_update)["entries"][0]["score"] == 500
    player = (await own_update)["player"]
    assert player["display_name"] == PLACEHOLDER and player["placeholder"] is True
    assert await shown_name(alice) == PLACEHOLDER
    assert not await has_tokens(game, user)
    assert "Alice Wonder" not in str(board_update.result())
    [line] = webhook_records(caplog)
    assert line.__dict__["event"] == "webhook_revoked"
    assert line.__dict__["player"] == player["id"]
    assert line.__dict__["reason"] == 1
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    signature = delivery[1][SIGNATURE_HEADER].partition(",s=")[2]
    for secret in (user.open_id, signature, game.sandbox.client_secret):
        assert secret not in logged


def _forged(game: Game, delivery: Delivery) -> Delivery:
    return signed_webhook("not-the-client-secret", delivery[0], timestamp=int(time.time()))


def _tampered(game: Game, delivery: Delivery) -> Delivery:
    body, headers = delivery
    tampered = body.replace(b'"reason\\": 1', b'"reason\\": 2')
    assert tampered != body
    return tampered, headers


def _unsigned(game: Game, delivery: Delivery) -> Delivery:
    return delivery[0], {"Content-Type": "application/json"}


def _stale(game: Game, delivery: Delivery) -> Delivery:
    tolerance = game.minis.settings.webhook_tolerance_seconds
    then = int(time.time()) - tolerance - 5
    return signed_webhook(game.sandbox.client_secret, delivery[0], timestamp=then)


def _future(game: Game, delivery: Delivery) -> Delivery:
    tolerance = game.minis.settings.webhook_tolerance_seconds
    later = int(time.time()) + tolerance + 5
    return signed_webhook(game.sandbox.client_secret, delivery[0], timestamp=later)


def _garbled_header(game: Game, delivery: Delivery) -> Delivery:
    body, headers = delivery
    return body, {**headers, SIGNATURE_HEADER: "t=soon,s=" + "z" * 64}


def _timestamp_moved(game: Game, delivery: Delivery) -> Delivery:
    body, headers = delivery
    signature = headers[SIGNATURE_HEADER].partition(",")[2]
    return body, {**headers, SIGNATURE_HEADER: f"t={int(time.time()) + 1},{signature}"}


@pytest.mark.parametrize(
    "mangle",
    [_forged, _tampered, _unsigned, _stale, _future, _garbled_header, _timestamp_moved],
    ids=["wrong-secret", "tampered-body", "no-header", "stale", "future", "garbled", "moved-t"],
)
async def test_unverified_request_gets_401_and_changes_nothing(
    game: Game, http: aiohttp.ClientSession, mangle: Callable[[Game, Delivery], Delivery]
) -> None:
    """A forged, tampered, unsigned or stale delivery is refused and leaves the player named."""
    alice, user = await authorized(game, "Still Here")
    bad = mangle(game, removal(game, user))

    status, answer = await post(http, game, bad)

    assert status == 401 and answer["error"]["code"] == "invalid_signature"
    assert await shown_name(alice) == "Still Here"
    assert await has_tokens(game, user)
    assert not await events(game).is_recorded(event_digest(bad[0])), "recorded only once verified"


async def test_replay_after_reauthorization_changes_nothing(
    game: Game, http: aiohttp.ClientSession
) -> None:
    """A handled removal delivered again, as is or re-signed, does not undo a new Allow."""
    alice, user = await authorized(game, "Comes Back")
    delivery = removal(game, user)
    assert await post(http, game, delivery) == (200, {"ok": True})
    assert await shown_name(alice) == PLACEHOLDER
    game.sandbox.revoke_user(user.open_id)
    named_again = asyncio.ensure_future(
        alice.wait_for("player:update", lambda p: p["player"]["consent"] == "granted")
    )
    await authorize_again(game, alice, user)
    await named_again
    pushes_before = [event for event, _ in alice.received].count("player:update")

    assert await post(http, game, delivery) == (200, {"ok": True})
    assert await post(http, game, resigned(game, delivery)) == (200, {"ok": True})

    assert await shown_name(alice) == "Comes Back"
    assert await has_tokens(game, user)
    assert [event for event, _ in alice.received].count("player:update") == pushes_before


async def test_simultaneous_duplicates_act_once(
    game: Game, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """Two deliveries of one event at once: one reverts the player, the other is a replay."""
    alice, user = await authorized(game, "Twice Sent")
    delivery = removal(game, user)

    with caplog.at_level(logging.INFO, logger="tiktok_minis.webhook"):
        answers = await asyncio.gather(
            post(http, game, delivery), post(http, game, resigned(game, delivery))
        )

    assert answers == [(200, {"ok": True})] * 2
    outcomes = sorted(record.__dict__["event"] for record in webhook_records(caplog))
    assert outcomes == ["webhook_replay", "webhook_revoked"]
    assert await shown_name(alice) == PLACEHOLDER


async def test_removal_overtaken_by_a_new_grant_changes_nothing(
    game: Game, http: aiohttp.ClientSession
) -> None:
    """A removal from before the player's latest Allow (a late delivery) leaves the name."""
    alice, user = await authorized(game, "Granted Since")
    yesterday = int(time.time()) - 86400

    assert await post(http, game, removal(game, user, create_time=yesterday)) == (
        200,
        {"ok": True},
    )

    assert await shown_name(alice) == "Granted Since"
    assert await has_tokens(game, user)


async def test_late_removal_still_reverts(game: Game, http: aiohttp.ClientSession) -> None:
    """A removal TikTok retried for a day still reverts a player who has not granted since."""
    alice, user = await authorized(game, "Left Yesterday")
    now = datetime.now(UTC)
    await game.minis.store.players.set_profile(  # the Allow was two days ago
        user.open_id,
        FetchedProfile(
            display_name="Left Yesterday",
            avatar_url=None,
            union_id=None,
            fetched_at=now - timedelta(days=2),
            refresh_at=now + timedelta(days=2),
        ),
    )
    yesterday = int(time.time()) - 86400

    assert await post(http, game, removal(game, user, create_time=yesterday)) == (
        200,
        {"ok": True},
    )

    assert await shown_name(alice) == PLACEHOLDER
    assert not await has_tokens(game, user)


async def test_failure_to_act_answers_500_and_the_retry_acts(
    game: Game, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When reverting fails the claim is released: TikTok's retry of the event reverts."""
    alice, user = await authorized(game, "Retried")
    delivery = removal(game, user)

    async def database_down(open_id: str, *, reason: str) -> None:
        raise ConnectionError("the database went away")

    with monkeypatch.context() as patch:
        patch.setattr(game.minis.players, "revoke_grant", database_down)
        status, answer = await post(http, game, delivery)
    assert status == 500 and answer["error"]["code"] == "internal_error"
    assert not await events(game).is_recorded(event_digest(delivery[0]))
    assert await shown_name(alice) == "Retried"

    assert await post(http, game, resigned(game, delivery)) == (200, {"ok": True})
    assert await shown_name(alice) == PLACEHOLDER


async def test_event_for_another_app_is_ignored(game: Game, http: aiohttp.ClientSession) -> None:
    """A signed event naming another client_key is answered 200 and not acted on."""
    alice, user = await authorized(game, "Other App")
    event = authorization_removed("another_client_key", user.open_id, create_time=int(time.time()))
    delivery = signed_webhook(game.sandbox.client_secret, event, timestamp=int(time.time()))

    assert await post(http, game, delivery) == (200, {"ok": True})

    assert await shown_name(alice) == "Other App"
    assert not await events(game).is_recorded(event_digest(delivery[0]))


async def test_other_events_and_unknown_players_are_acknowledged(
    game: Game, http: aiohttp.ClientSession
) -> None:
    """Events not acted on still get 200, or TikTok would retry them for three days."""
    now = int(time.time())
    stranger = game.sandbox.add_user()  # never logged in to this game
    other_event = {
        "client_key": game.sandbox.client_key,
        "event": "video.publish.completed",
        "create_time": now,
        "user_openid": stranger.open_id,
        "content": '{"share_id": "video.1"}',
    }
    secret = game.sandbox.client_secret

    assert await post(http, game, signed_webhook(secret, other_event, timestamp=now)) == (
        200,
        {"ok": True},
    )
    assert await post(http, game, removal(game, stranger)) == (200, {"ok": True})
    assert await game.minis.players.get(stranger.open_id) is None


def _event(**changes: Any) -> dict[str, Any]:
    event = authorization_removed("sbx_client_key", "some-open-id", create_time=int(time.time()))
    return {key: value for key, value in {**event, **changes}.items() if value is not None}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe{}",
        b"[]",
        b'"authorization.removed"',
        b"[" * 5000 + b"]" * 5000,
        _event(client_key=None),
        _event(event=7),
        _event(create_time="1615338610"),
        _event(create_time=True),
        _event(user_openid=None),
        _event(user_openid=""),
        _event(create_time=None),
    ],
    ids=[
        "empty",
        "text",
        "not-utf8",
        "array",
        "string",
        "deep",
        "no-client-key",
        "numeric-event",
        "string-time",
        "bool-time",
        "no-openid",
        "empty-openid",
        "no-time",
    ],
)
async def test_signed_garbage_gets_400(
    game: Game, http: aiohttp.ClientSession, body: bytes | dict[str, Any]
) -> None:
    """A correctly signed body that is not a documented event is refused with 400."""
    delivery = signed_webhook(game.sandbox.client_secret, body, timestamp=int(time.time()))

    status, answer = await post(http, game, delivery)

    assert status == 400 and answer["error"]["code"] == "invalid_payload"
    assert not await events(game).is_recorded(event_digest(delivery[0]))


async def test_unreadable_content_does_not_stop_the_removal(
    game: Game, http: aiohttp.ClientSession
) -> None:
    """``content`` only says why: a removal whose content is garbled still reverts the player."""
    alice, user = await authorized(game, "Odd Content")
    event = {
        **authorization_removed(
            game.sandbox.client_key, user.open_id, create_time=int(time.time())
        ),
        "content": "{not json",
    }
    delivery = signed_webhook(game.sandbox.client_secret, event, timestamp=int(time.time()))

    assert await post(http, game, delivery) == (200, {"ok": True})

    assert await shown_name(alice) == PLACEHOLDER


async def test_huge_body_gets_413(game: Game, http: aiohttp.ClientSession) -> None:
    """A body past the limit is refused before anything else, declared or streamed."""
    body = b" " * (MAX_BODY_BYTES + 1)
    delivery = signed_webhook(game.sandbox.client_secret, body, timestamp=int(time.time()))
    status, answer = await post(http, game, delivery)
    assert status == 413 and answer["error"]["code"] == "payload_too_large"

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b" " * 1024

    url = game.url + DEFAULT_PATH
    async with http.post(url, data=stream(), headers=delivery[1]) as response:
        assert response.status == 413  # chunked: no Content-Length to refuse up front


async def test_login_and_authorize_work_after_a_webhook_revocation(
    game: Game, http: aiohttp.ClientSession
) -> None:
    """After the removal the player logs in again as anyone does, and Allow brings the name back."""
    alice, user = await authorized(game, "Second Wind")
    public_id = (await alice.call("tiktok:me", {}))["player"]["id"]
    game.sandbox.revoke_user(user.open_id)
    assert await post(http, game, removal(game, user)) == (200, {"ok": True})

    again, _, ack = await game.logged_in(user)

    assert ack["player"]["id"] == public_id
    assert ack["player"]["display_name"] == PLACEHOLDER and ack["player"]["consent"] == "unknown"
    assert await has_tokens(game, user)
    await authorize_again(game, again, user)
    joined = await again.call("leaderboard:join", {"board": "global"})
    assert names(joined) == ["Second Wind"]


async def test_housekeeping_deletes_only_events_past_the_retention(
    game: Game, http: aiohttp.ClientSession
) -> None:
    """Handled events are kept through TikTok's retry window, then deleted."""
    _, user = await authorized(game, "Kept A While")
    delivery = removal(game, user)
    assert await post(http, game, delivery) == (200, {"ok": True})
    digest = event_digest(delivery[0])
    keep = event_retention(game.minis.settings.webhook_tolerance_seconds)
    assert keep > timedelta(hours=72)

    assert await events(game).delete_older_than(keep) == 0
    assert await events(game).is_recorded(digest)
    later = datetime.now(UTC) + keep + timedelta(minutes=1)
    assert await events(game).delete_older_than(keep, now=later) == 1
    assert not await events(game).is_recorded(digest)


# -- verify_signature on its own ----------------------------------------------------------------

SECRET = "test-client-secret"
BODY = b'{"event":"authorization.removed"}'
NOW = 1_700_000_000


@pytest.mark.parametrize(
    ("header", "verdict"),
    [
        (f"t={NOW},s={sign(SECRET, NOW, BODY)}", Verdict.VALID),
        (f" s={sign(SECRET, NOW, BODY).upper()} , t={NOW} ", Verdict.VALID),
        (f"t={NOW},s={'0' * 64},s={sign(SECRET, NOW, BODY)}", Verdict.VALID),
        (f"t={NOW},s={sign(SECRET, NOW, BODY)},v=2", Verdict.VALID),
        (None, Verdict.MISSING),
        ("", Verdict.MISSING),
        (f"s={sign(SECRET, NOW, BODY)}", Verdict.MALFORMED),
        (f"t={NOW},t={NOW},s={sign(SECRET, NOW, BODY)}", Verdict.MALFORMED),
        (f"t=-{NOW},s={sign(SECRET, NOW, BODY)}", Verdict.MALFORMED),
        (f"t=\u0661\u0667\u0660\u0660,s={sign(SECRET, NOW, BODY)}", Verdict.MALFORMED),
        (f"t={NOW}", Verdict.MALFORMED),
        (f"t={NOW},s={sign(SECRET, NOW, BODY)[:-2]}", Verdict.MALFORMED),
        (f"t={NOW},s={sign(SECRET, NOW, BODY)}," + "x" * 1024, Verdict.MALFORMED),
        (f"t={NOW},s={sign('other', NOW, BODY)}", Verdict.MISMATCH),
        (f"t={NOW + 1},s={sign(SECRET, NOW, BODY)}", Verdict.MISMATCH),
        (f"t={NOW - 301},s={sign(SECRET, NOW - 301, BODY)}", Verdict.EXPIRED),
        (f"t={NOW + 301},s={sign(SECRET, NOW + 301, BODY)}", Verdict.EXPIRED),
        (f"t={NOW - 300},s={sign(SECRET, NOW - 300, BODY)}", Verdict.VALID),
    ],
)
def test_verify_signature(header: str | None, verdict: Verdict) -> None:
    """The header is parsed as TikTok documents it; the tolerance holds on both sides."""
    found = verify_signature(header, BODY, client_secret=SECRET, tolerance_seconds=300, now=NOW)
    assert found is verdict


async def test_removing_the_game_in_the_sandbox_reverts_the_player_live(
    game: Game, http: aiohttp.ClientSession
) -> None:
    """The demo's "Remove the game in TikTok" calls the game's webhook, signed, as TikTok does."""
    async with http.post(game.url + "/ttminis/sandbox/login", json={"device": "d-1"}) as answer:
        login_code = (await answer.json())["code"]
    async with http.post(game.url + "/ttminis/sandbox/authorize", json={"device": "d-1"}) as answer:
        authorize_code = (await answer.json())["code"]
    player = await game.client()
    assert (await player.call("tiktok:login", {"code": login_code}))["ok"]
    ack = await player.call("tiktok:authorize", {"granted": True, "code": authorize_code})
    assert ack["player"]["placeholder"] is False
    await player.call("leaderboard:submit", {"board": "global", "score": 8})
    watcher = await game.client()
    await watcher.call("leaderboard:join", {"board": "global"})

    async with http.post(game.url + "/ttminis/sandbox/revoke", json={"device": "d-1"}) as answer:
        assert await answer.json() == {"webhook_status": 200}
    update = await watcher.wait_for(
        "leaderboard:update", lambda data: data["entries"][0]["player"]["placeholder"]
    )
    assert update["entries"][0]["player"]["display_name"] == "TikTok Player"


async def test_housekeeping_drops_digests_past_tiktoks_retry_window(game: Game) -> None:
    """Handled events are kept for 72 h plus the tolerance, then deleted."""
    await WebhookEventRow.create(digest="a" * 64, event="authorization.removed")
    old = await WebhookEventRow.create(digest="b" * 64, event="authorization.removed")
    await WebhookEventRow.filter(digest=old.digest).update(
        received_at=datetime.now(UTC) - timedelta(hours=73)
    )
    assert await game.minis.housekeeping() == 1
    assert [row.digest for row in await WebhookEventRow.all()] == ["a" * 64]
