"""Upstream calls in one simulated day of background profile refreshes, for 100,000 players.

Run: ``python -m bench lifecycle_day [--players 100000] [--step-minutes 60] [--seed 1]``
(``--players 2000`` is a quick run of a few seconds; the full one takes a few minutes).

It starts the plugin in sandbox mode on a temporary SQLite file, with a hand-moved clock that the
emulator shares, and stores N players as a long-running game has them: consent granted, a name
and an avatar, tokens valid at the emulator and stored encrypted, and a profile fetched some days
ago whose next refresh is due 3 to 7 days (``TTMINIS_PROFILE_REFRESH_DAYS``) after that fetch.
Then one day passes in steps; at each step the refresher runs (``run_once``) until nothing is
due, and the emulator counts the requests that reach it, per endpoint.

How to read it: the baseline, in the same run, is the policy the refresher replaces, fetching
the profile on every launch, under the assumption that every player launches once a day: N
user-info calls a day. The refresher should make about N / 5 (one fetch per mean interval of
5 days), spread evenly over the hours of the day. Token calls are the access tokens renewed first:
the emulator's access tokens live 24 hours and a refresh comes 3 to 7 days after the last
activity this bench stores, so each refresh renews one (the most that can happen; logins in
between would save some). Each refresh also downloads the avatar from the emulator's stand-in
CDN, which is not an Open API call and is not counted. Setup time is shown apart and is not part
of the figures. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tortoise.transactions import in_transaction

from tiktok_minis import Settings
from tiktok_minis.minis import TikTokMinis
from tiktok_minis.sandbox import ManualClock, Sandbox
from tiktok_minis.sandbox.identity import avatar_svg
from tiktok_minis.sandbox.state import BASIC_SCOPE, OPEN_ID_SCOPE
from tiktok_minis.services.refresher import RefreshRound
from tiktok_minis.store.avatars import digest_of
from tiktok_minis.store.crypto import TokenCipher
from tiktok_minis.store.database import connection
from tiktok_minis.store.models import AvatarRow, Consent, PlayerRow
from tiktok_minis.store.players import new_public_id

DAY = 86400.0
#: The refresh interval drawn after each fetch, in days: the plugin's default, set explicitly.
LOW, HIGH = 3.0, 7.0
#: Rows written per INSERT statement while loading; all in one transaction.
LOAD_BATCH = 2000
ENDPOINTS = ("user_info", "token", "revoke")


@dataclass
class Day:
    """What one simulated day did upstream and in the refresher."""

    calls: Counter[str] = field(default_factory=Counter)
    user_info_per_step: list[int] = field(default_factory=list)
    done: RefreshRound = field(default_factory=RefreshRound)
    passes: int = 0
    seconds: float = 0.0


def _steady_state_schedule(rng: random.Random, now: datetime) -> tuple[datetime, datetime]:
    """A (fetched, next refresh) pair drawn from the stationary state of the refresh schedule.

    Each player's fetches form a renewal process whose intervals are uniform on [LOW, HIGH] days.
    Looked at a random instant long after the game launched, the interval in progress is not
    uniform: longer intervals are more likely to cover the instant (length-biased sampling), so
    its length d has density proportional to d on [LOW, HIGH], and the instant falls uniformly
    within it. Drawing d that way (inverse CDF of d^2) and a uniform phase u gives the stationary
    population: fetched = now - u*d, next refresh = fetched + d. Then exactly 1/mean = 1/5 of the
    players fall due per day on average (drawing d uniformly instead would give about 0.212).
    """
    days = math.sqrt(LOW**2 + (HIGH**2 - LOW**2) * rng.random())
    fetched = now - timedelta(days=days * rng.random())
    return fetched, fetched + timedelta(days=days)


def _avatar_url(minis: TikTokMinis, open_id: str, display_name: str) -> tuple[str, bytes]:
    """The lasting URL a fetch of the generated avatar stores, and the picture's bytes."""
    data = avatar_svg(open_id, display_name).encode()
    return minis.avatars.url_for(hashlib.sha256(data).hexdigest()), data


async def _populate(
    minis: TikTokMinis, sandbox: Sandbox, clock: ManualClock, count: int, rng: random.Random
) -> None:
    """Store ``count`` granted players in the steady state, in bulk (logins would take minutes).

    The emulator issues the tokens at the clock's start; the clock then moves a week on, so every
    profile was fetched after its tokens were issued and every access token (24 h) has expired,
    as it has for a player who last played when the profile was fetched. The refresh tokens
    (a year) stay valid.
    """
    cipher = TokenCipher(minis.settings.secret_keys)
    players: list[PlayerRow] = []
    avatars: dict[str, AvatarRow] = {}  # content-addressed: players may share a picture
    issued = datetime.fromtimestamp(clock(), UTC)
    for _ in range(count):
        user = sandbox.add_user()
        # The user pressed Allow long ago (the field Sandbox.authorize_code sets, minus a code).
        user.granted_scopes.add(BASIC_SCOPE)
        tokens = sandbox.issue_tokens(user.open_id, frozenset({OPEN_ID_SCOPE, BASIC_SCOPE}), None)
        avatar_url, picture = _avatar_url(minis, user.open_id, user.display_name)
        players.append(
            PlayerRow(
                open_id=user.open_id,
                public_id=new_public_id(),
                consent=Consent.GRANTED,
                display_name=user.display_name,
                avatar_url=avatar_url,
                union_id=user.union_id,
                scopes=tokens["scope"],
                # Encrypted as the player service stores them (Players._encrypt).
                access_token=cipher.encrypt(tokens["access_token"]),
                access_expires_at=issued + timedelta(seconds=tokens["expires_in"]),
                refresh_token=cipher.encrypt(tokens["refresh_token"]),
                refresh_expires_at=issued + timedelta(seconds=tokens["refresh_expires_in"]),
            )
        )
        digest = digest_of(avatar_url)
        assert digest is not None, avatar_url
        avatars[digest] = AvatarRow(digest=digest, content_type="image/svg+xml", data=picture)
    clock.advance(HIGH * DAY + 1)
    now = datetime.fromtimestamp(clock(), UTC)
    for row in players:
        row.profile_fetched_at, row.profile_refresh_at = _steady_state_schedule(rng, now)
    # One transaction: SQLite commits (and syncs) once rather than once per row.
    async with in_transaction(connection().connection_name) as transaction:
        await PlayerRow.bulk_create(players, batch_size=LOAD_BATCH, using_db=transaction)
        await AvatarRow.bulk_create(
            list(avatars.values()), batch_size=LOAD_BATCH, using_db=transaction
        )


async def _one_day(minis: TikTokMinis, sandbox: Sandbox, clock: ManualClock, step: float) -> Day:
    """Move the clock through one day by ``step`` seconds, refreshing whatever falls due."""
    day = Day()
    start = Counter(sandbox.calls)
    for _ in range(round(DAY / step)):
        clock.advance(step)
        before = sandbox.calls["user_info"]
        started = time.perf_counter()
        while True:
            done = await minis.refresher.run_once()
            day.passes += 1
            if not done.claimed:
                break
            day.done.merge(done)
        day.seconds += time.perf_counter() - started
        day.user_info_per_step.append(sandbox.calls["user_info"] - before)
    day.calls = Counter({name: sandbox.calls[name] - start[name] for name in ENDPOINTS})
    return day


def _report(players: int, step_minutes: int, setup: float, day: Day) -> None:
    user_info, tokens, revokes = (day.calls[name] for name in ENDPOINTS)
    baseline = players  # every player launches once a day, and each launch fetches the profile
    expected = players / 5
    spread = math.sqrt(players * 0.2 * 0.8)  # binomial: each player is due today with p = 1/5
    per_step = day.user_info_per_step
    step_expected = expected * step_minutes / (24 * 60)
    done = day.done
    print(f"players: {players:,}  (granted, refreshed {LOW:g} to {HIGH:g} days after each fetch)")
    print(f"setup: {setup:.1f} s (emulator users and tokens, bulk insert; not measured below)")
    print(f"one day in {len(per_step)} steps of {step_minutes} min, run_once until nothing is due:")
    print(
        f"  baseline: profile fetched on every launch, one launch per player a day:"
        f" {baseline:,} user-info calls"
    )
    print(
        f"  user-info calls:  {user_info:8,}   {user_info / players:.4f} x players"
        f"   {user_info / expected:.4f} x players/5 (expected {expected:,.0f} +- {spread:,.0f})"
        f"   {user_info / baseline:.4f} x baseline"
    )
    per_fetch = f"{tokens / user_info:.3f}" if user_info else "-"
    print(f"  token calls:      {tokens:8,}   (access tokens renewed first: {per_fetch} a fetch)")
    print(f"  revoke calls:     {revokes:8,}")
    print(
        f"  refreshes: claimed {done.claimed:,}, unchanged {done.unchanged:,},"
        f" changed {done.changed:,}, revoked {done.revoked:,}, postponed {done.postponed:,}"
    )
    if per_step:
        print(
            f"  user-info calls per {step_minutes}-min step: min {min(per_step):,}"
            f"  max {max(per_step):,}  mean {statistics.fmean(per_step):,.1f}"
            f"  expected {step_expected:,.1f}   max/expected {max(per_step) / step_expected:.3f}"
        )
    rate = done.claimed / day.seconds if day.seconds else 0.0
    print(
        f"  wall time of the day's passes: {day.seconds:.1f} s in {day.passes} run_once calls"
        f"   ({rate:,.0f} refreshes/s)"
    )


async def _run(players: int, step_minutes: int, seed: int) -> None:
    rng = random.Random(seed)
    # Python's own random draws each next refresh time inside the plugin: seed it too.
    random.seed(seed)
    clock = ManualClock()
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            sandbox=True,
            database_url=f"sqlite:///{Path(folder) / 'bench.sqlite3'}",
            profile_refresh_days=(LOW, HIGH),
            refresher_enabled=False,  # the bench runs the passes itself, on the moved clock
            # This bench counts calls, not pace: a limit far above what loopback reaches keeps
            # the throttle out of the wall time (production keeps TikTok's 600 a minute).
            upstream_rate_per_second=100_000,
            refresher_batch_size=1000,
            refresher_concurrency=32,
        )
        minis = TikTokMinis(settings, clock=clock)
        await minis.start()
        try:
            sandbox = minis.sandbox
            assert sandbox is not None  # no client key: sandbox mode
            started = time.perf_counter()
            await _populate(minis, sandbox, clock, players, rng)
            setup = time.perf_counter() - started
            day = await _one_day(minis, sandbox, clock, step_minutes * 60.0)
        finally:
            await minis.close()
    _report(players, step_minutes, setup, day)


def main(argv: list[str]) -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench lifecycle_day", description=__doc__)
    parser.add_argument("--players", type=int, default=100_000, help="players stored (100000)")
    parser.add_argument(
        "--step-minutes", type=int, default=60, help="minutes the clock moves per step (60)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    args = parser.parse_args(argv)
    if args.players < 1:
        parser.error("--players must be at least 1")
    if args.step_minutes < 1 or (24 * 60) % args.step_minutes:
        parser.error("--step-minutes must divide a day (1440 minutes), like 15, 60 or 120")
    asyncio.run(_run(args.players, args.step_minutes, args.seed))
