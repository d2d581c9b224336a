"""The profile and token lifecycle: background refresh, revocation, forgetting, the upstream budget.

Days pass on a clock the tests move by hand (the emulator shares it); nothing sleeps for them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from game import FAST_UPSTREAM, Game, issued_tokens, run_game

from tiktok_minis import Settings, UnknownPlayer
from tiktok_minis.sandbox import ManualClock, SandboxUser
from tiktok_minis.services.players import Players
from tiktok_minis.services.profile import Placeholder
from tiktok_minis.services.refresher import FIRST_BACKOFF, Refresher, backoff
from tiktok_minis.store import Store
from tiktok_minis.store.crypto import TokenCipher
from tiktok_minis.store.models import AvatarRow, PlayerRow, ScoreRow
from tiktok_minis.testing import GameClient, tiktok_client_of

DAY = 86400.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "sandbox": True,
        "database_url": database_url,
        "refresher_enabled": False,  # the tests run passes by hand, except the loop's own test
        **FAST_UPSTREAM,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def lifecycle_game(database_url: str, clock: ManualClock) -> AsyncIterator[Game]:
    """The example game on SQLite and PostgreSQL, with the hand-moved clock."""
    async with run_game(_settings(database_url), clock=clock) as game:
        await _empty(game)
        yield game


async def _empty(game: Game) -> None:
    await ScoreRow.all().delete()
    await PlayerRow.all().delete()
    await AvatarRow.all().delete()


async def _pushed(
    client: GameClient, event: str, predicate: Any = lambda _: True, within: float | None = None
) -> Any:
    """A push of ``event`` matching ``predicate``: one already received, or the next one."""
    for name, data in client.received:
        if name == event and predicate(data):
            return data
    return await client.wait_for(event, predicate, within)


async def _authorized(game: Game, name: str | None = None) -> tuple[GameClient, SandboxUser]:
    """A logged-in client whose player allowed the profile; a new sandbox user by default."""
    client, user, _ = await game.logged_in(game.sandbox.add_user(display_name=name))
    code = game.sandbox.authorize_code(user.open_id)
    ack = await client.call("tiktok:authorize", {"granted": True, "code": code})
    assert ack["ok"] and ack["player"]["placeholder"] is False, ack
    return client, user


async def test_a_renamed_player_reaches_watchers_after_a_refresh(
    lifecycle_game: Game, clock: ManualClock
) -> None:
    """Renamed on TikTok: nothing changes before the refresh is due, then watchers see it live."""
    game = lifecycle_game
    player, user = await _authorized(game, "Old Name")
    assert (await player.call("leaderboard:submit", {"board": "global", "score": 10}))["ok"]
    watcher = await game.client()
    await watcher.call("leaderboard:join", {"board": "global"})
    game.sandbox.set_profile(user.open_id, display_name="New Name")

    clock.advance(2.9 * DAY)  # not due yet: 3 days at the earliest
    assert (await game.minis.refresher.run_once()).claimed == 0
    user_info_calls = game.sandbox.calls["user_info"]

    clock.advance(4.2 * DAY)  # 7.1 days: due whatever the draw
    done = await game.minis.refresher.run_once()
    assert (done.claimed, done.changed) == (1, 1)
    assert game.sandbox.calls["user_info"] == user_info_calls + 1
    update = await _pushed(
        watcher,
        "leaderboard:update",
        lambda data: data["entries"][0]["player"]["display_name"] == "New Name",
    )
    assert update["board"] == "global"
    mine = await _pushed(
        player, "player:update", lambda data: data["player"]["display_name"] == "New Name"
    )
    assert mine["player"]["placeholder"] is False
    # The access token had expired (24 h): it was refreshed before the user-info call.
    assert game.sandbox.calls["token"] >= 2

    assert (await game.minis.refresher.run_once()).claimed == 0  # next one days away


async def test_next_refresh_times_spread_over_three_to_seven_days(
    lifecycle_game: Game, clock: ManualClock
) -> None:
    """Each fetch draws its own next time within TTMINIS_PROFILE_REFRESH_DAYS: no stampede."""
    game = lifecycle_game
    open_ids = []
    for _ in range(30):
        user = game.sandbox.add_user()
        open_ids.append(user.open_id)
        await game.minis.players.login(game.sandbox.login_code(user.open_id))
        await game.minis.players.authorize(
            user.open_id, True, game.sandbox.authorize_code(user.open_id)
        )
    rows = await PlayerRow.filter(open_id__in=open_ids)
    fetched = datetime.fromtimestamp(clock(), UTC)
    offsets = sorted(
        (row.profile_refresh_at - fetched).total_seconds() / DAY
        for row in rows
        if row.profile_refresh_at is not None
    )
    assert len(offsets) == 30
    assert offsets[0] >= 3.0 and offsets[-1] <= 7.0
    assert offsets[-1] - offsets[0] > 1.5  # spread out, not one instant


async def test_a_revoked_player_returns_to_the_placeholder_live(
    lifecycle_game: Game, clock: ManualClock
) -> None:
    """Removed from TikTok: the next refresh shows the placeholder, pushed; next login works."""
    game = lifecycle_game
    player, user = await _authorized(game, "Soon Gone")
    await player.call("leaderboard:submit", {"board": "global", "score": 5})
    watcher = await game.client()
    await watcher.call("leaderboard:join", {"board": "global"})
    game.sandbox.revoke_user(user.open_id)

    clock.advance(7.1 * DAY)
    done = await game.minis.refresher.run_once()
    assert done.revoked == 1
    update = await _pushed(
        watcher, "leaderboard:update", lambda data: data["entries"][0]["player"]["placeholder"]
    )
    assert update["entries"][0]["player"]["display_name"] == "TikTok Player"
    mine = await _pushed(player, "player:update", lambda data: data["player"]["placeholder"])
    assert mine["player"]["consent"] == "unknown"
    row = await game.minis.store.players.by_open_id(user.open_id)
    assert row is not None and row.access_token is None and row.refresh_token is None
    assert (await game.minis.refresher.run_once()).claimed == 0  # no longer refreshed

    again = await game.client()
    ack = await again.call("tiktok:login", {"code": game.sandbox.login_code(user.open_id)})
    assert ack["ok"] and ack["player"]["consent"] == "unknown"


async def test_an_upstream_failure_is_postponed_with_backoff_not_lost(
    lifecycle_game: Game, clock: ManualClock
) -> None:
    """TikTok answers 500 for the whole budget: retried later, then refreshed once it is back."""
    game = lifecycle_game
    _, user = await _authorized(game, "Patient")
    game.sandbox.set_profile(user.open_id, display_name="Patient Two")
    clock.advance(7.1 * DAY)
    game.sandbox.inject("user_info", status=500, times=None)
    done = await game.minis.refresher.run_once()
    assert (done.postponed, done.failures) == (1, ["upstream_unavailable"])
    row = await game.minis.store.players.by_open_id(user.open_id)
    assert row is not None and row.refresh_failures == 1 and row.refresh_claimed_until is None
    assert row.profile_refresh_at is not None
    wait = row.profile_refresh_at - datetime.fromtimestamp(clock(), UTC)
    assert FIRST_BACKOFF / 2 <= wait <= FIRST_BACKOFF
    assert (await game.minis.refresher.run_once()).claimed == 0  # not before the backoff

    game.sandbox.clear_faults()
    clock.advance(FIRST_BACKOFF.total_seconds())
    done = await game.minis.refresher.run_once()
    assert done.changed == 1
    player = await game.minis.players.get(user.open_id)
    assert player is not None and player.display_name == "Patient Two"
    row = await game.minis.store.players.by_open_id(user.open_id)
    assert row is not None and row.refresh_failures == 0


def test_backoff_doubles_up_to_a_day() -> None:
    """15 min, 30 min, 1 h ... capped at one day; never less than half the step."""
    for failures, step in ((1, FIRST_BACKOFF), (2, FIRST_BACKOFF * 2), (3, FIRST_BACKOFF * 4)):
        for _ in range(20):
            assert step / 2 <= backoff(failures) <= step
    assert timedelta(hours=12) <= backoff(40) <= timedelta(days=1)


@pytest.mark.postgres
async def test_two_refreshers_over_one_postgres_refresh_each_player_once(
    postgres_url: str, clock: ManualClock
) -> None:
    """Two refresher instances (own services, own locks) claim disjoint players: one call each."""
    async with run_game(_settings(postgres_url), clock=clock) as game:
        await _empty(game)
        minis = game.minis
        users = []
        for _ in range(40):
            user = game.sandbox.add_user()
            await minis.players.login(game.sandbox.login_code(user.open_id))
            await minis.players.authorize(
                user.open_id, True, game.sandbox.authorize_code(user.open_id)
            )
            users.append(user)
        clock.advance(7.1 * DAY)
        # Another process's view: its own player service (own single-flight and token locks).
        other_players = Players(
            Store(minis.database),
            tiktok_client_of(minis),  # the same TikTok app, over the same emulator
            TokenCipher(minis.settings.secret_keys),
            Placeholder(),
            clock=lambda: datetime.fromtimestamp(clock(), UTC),
        )
        refreshers = [
            Refresher(
                minis.store,
                players,
                clock=lambda: datetime.fromtimestamp(clock(), UTC),
                batch_size=7,
                concurrency=4,
            )
            for players in (minis.players, other_players)
        ]
        before = game.sandbox.calls["user_info"]
        claimed = 0
        while True:
            rounds = await asyncio.gather(*(refresher.run_once() for refresher in refreshers))
            if not any(done.claimed for done in rounds):
                break
            claimed += sum(done.claimed for done in rounds)
        assert claimed == 40
        assert game.sandbox.calls["user_info"] - before == 40
        now = datetime.fromtimestamp(clock(), UTC)
        for row in await PlayerRow.all():
            assert row.profile_fetched_at == now  # every one refreshed
        await _empty(game)


@pytest.mark.parametrize(
    ("limits", "storm", "rate"),
    [
        ({"upstream_rate_per_second": 5.0}, "*", 5.0),
        ({"upstream_rate_per_second": 100.0, "user_info_rate_per_second": 3.0}, "user_info", 3.0),
    ],
    ids=["all-endpoints", "user-info"],
)
async def test_a_429_storm_stays_within_the_upstream_rate(
    sqlite_url: str,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    limits: dict[str, float],
    storm: str,
    rate: float,
) -> None:
    """TikTok answers 429 to everything: attempts at the emulator never beat the configured rate."""
    # Attempts are paced (no burst): 3 s of budget gives each refresh enough to count.
    settings = _settings(sqlite_url, upstream_budget_seconds=3.0, **limits)
    async with run_game(settings, clock=clock) as game:
        for _ in range(12):
            user = game.sandbox.add_user()
            await game.minis.players.login(game.sandbox.login_code(user.open_id))
            await game.minis.players.authorize(
                user.open_id, True, game.sandbox.authorize_code(user.open_id)
            )
        clock.advance(7.1 * DAY)
        arrivals: list[float] = []
        record = game.sandbox.record_call

        def timed(endpoint: str) -> None:
            if storm in ("*", endpoint):
                arrivals.append(time.monotonic())
            record(endpoint)

        monkeypatch.setattr(game.sandbox, "record_call", timed)
        game.sandbox.inject(storm, status=429, retry_after=0.2, times=None)
        done = await game.minis.refresher.run_once()
        assert done.postponed == 12  # every one retried later, none lost
        assert len(arrivals) >= 6
        throttle = tiktok_client_of(game.minis).throttle
        assert throttle is not None and throttle.rate_limited >= 1
        # Over any window of t seconds at most rate * t + 1 attempts start; the emulator sees
        # them through the network's jitter, so allow it up to a second's worth more.
        for first, start in enumerate(arrivals):
            for last in range(first, len(arrivals)):
                window = arrivals[last] - start
                assert last - first + 1 <= rate * (window + 1) + 1e-9


async def test_forget_revokes_and_removes_every_trace(
    lifecycle_game: Game, caplog: pytest.LogCaptureFixture
) -> None:
    """Forget: revoke called at TikTok, tokens/profile/scores gone, boards and sessions follow."""
    game = lifecycle_game
    player, user = await _authorized(game, "Forget Me")
    login = await game.client()
    session = (await login.call("tiktok:login", {"code": game.sandbox.login_code(user.open_id)}))[
        "session"
    ]
    await player.call("leaderboard:submit", {"board": "global", "score": 42})
    watcher = await game.client()
    await watcher.call("leaderboard:join", {"board": "global"})
    tokens = issued_tokens(game.sandbox, user.open_id)
    assert tokens
    revokes = game.sandbox.calls["revoke"]

    assert await AvatarRow.all().count() == 1  # the kept picture
    caplog.set_level(logging.INFO)
    forgotten = await game.minis.players.forget(user.open_id)
    assert forgotten.revoked_at_tiktok and forgotten.scores == 1
    assert game.sandbox.calls["revoke"] == revokes + 1
    assert issued_tokens(game.sandbox, user.open_id) == []  # revoked at TikTok's side
    assert await PlayerRow.filter(open_id=user.open_id).count() == 0
    assert await ScoreRow.all().count() == 0
    assert await AvatarRow.all().count() == 0  # the only player with that picture is gone
    update = await _pushed(watcher, "leaderboard:update", lambda data: data["entries"] == [])
    assert update["board"] == "global"
    with pytest.raises(UnknownPlayer):
        await game.minis.players.forget(user.open_id)
    for token in tokens:
        assert token not in caplog.text

    refused = GameClient(game.url, session=session)
    with pytest.raises(Exception, match="failed to connect"):
        await refused.connect()
    ack = await (await game.client()).call(
        "tiktok:login", {"code": game.sandbox.login_code(user.open_id)}
    )
    assert ack["ok"] and ack["player"]["placeholder"] is True  # a new player


async def test_forget_can_keep_scores_anonymised(lifecycle_game: Game) -> None:
    """anonymise_scores: the board keeps the score, shown as the placeholder under a new id."""
    game = lifecycle_game
    player, user = await _authorized(game, "Keep My Score")
    ack = await player.call("leaderboard:submit", {"board": "global", "score": 77})
    old_id = ack["me"]["player"]["id"]
    watcher = await game.client()
    await watcher.call("leaderboard:join", {"board": "global"})

    forgotten = await game.minis.players.forget(user.open_id, anonymise_scores=True)
    assert forgotten.scores == 1 and forgotten.scores_anonymised
    update = await _pushed(
        watcher, "leaderboard:update", lambda data: data["entries"][0]["player"]["id"] != old_id
    )
    entry = update["entries"][0]
    assert entry["score"] == 77 and entry["player"]["display_name"] == "TikTok Player"
    assert await PlayerRow.filter(open_id=user.open_id).count() == 0
    assert await PlayerRow.filter(display_name__not_isnull=True).count() == 0
    # The forgotten player's own connection is told, and is no longer logged in.
    ended = await _pushed(player, "session:ended", lambda _: True)
    assert ended == {"reason": "forgotten"}
    assert await player.call("tiktok:me") == {"ok": True, "player": None}
    refused = await player.call("leaderboard:submit", {"board": "global", "score": 78})
    assert refused["error"]["code"] == "not_logged_in"


async def test_the_background_loop_refreshes_on_its_own(
    sqlite_url: str, clock: ManualClock
) -> None:
    """Started with the app, the refresher finds due players by itself and pushes the change."""
    settings = _settings(sqlite_url, refresher_enabled=True, refresher_interval_seconds=0.05)
    async with run_game(settings, clock=clock) as game:
        player, user = await _authorized(game, "Loop Before")
        game.sandbox.set_profile(user.open_id, display_name="Loop After")
        clock.advance(7.1 * DAY)
        update = await _pushed(
            player,
            "player:update",
            lambda data: data["player"]["display_name"] == "Loop After",
            within=5.0,
        )
        assert update["player"]["display_name"] == "Loop After"


async def test_avatars_are_served_from_the_games_domain_after_tiktoks_link_expired(
    lifecycle_game: Game, clock: ManualClock
) -> None:
    """Every avatar_url the plugin sends is its own copy, which outlives TikTok's signed link."""
    game = lifecycle_game
    player, user = await _authorized(game, "Pictured")
    me = (await player.call("tiktok:me"))["player"]
    assert me["avatar_url"].startswith("/ttminis/avatars/")
    board = await player.call("leaderboard:submit", {"board": "global", "score": 1})
    assert board["me"]["player"]["avatar_url"] == me["avatar_url"]

    tiktoks_link = game.sandbox.avatar_link(user.open_id)
    clock.advance(2 * DAY)  # the emulator's links live hours, like TikTok's
    async with aiohttp.ClientSession() as http:
        async with http.get(tiktoks_link) as expired:
            assert expired.status == 403
        async with http.get(game.url + me["avatar_url"]) as kept:
            assert kept.status == 200
            assert kept.headers["Content-Type"].startswith("image/svg+xml")
            assert "immutable" in kept.headers["Cache-Control"]
            assert b"<svg" in await kept.read()
