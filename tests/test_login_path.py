"""The login path: one statement stores the tokens and returns the player, new or returning."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tiktok_minis.store import Store
from tiktok_minis.store.database import Database, connection
from tiktok_minis.store.logins import LoginWriter
from tiktok_minis.store.models import PlayerRow
from tiktok_minis.store.players import EncryptedTokens, FetchedProfile, new_public_id

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


def _tokens(n: int) -> EncryptedTokens:
    return EncryptedTokens(
        access_token=f"enc-access-{n}",
        access_expires_at=NOW + timedelta(hours=2),
        refresh_token=f"enc-refresh-{n}",
        refresh_expires_at=NOW + timedelta(days=180),
        scopes="user.info.open_id",
    )


@pytest.fixture
def store(db: Database) -> Store:
    """The queries on the test database."""
    return Store(db)


@pytest.fixture
def statements(db: Database) -> Iterator[list[str]]:
    """Every statement the plugin's connection runs while the test body runs."""
    client = type(connection())
    seen: list[str] = []
    originals = {name: getattr(client, name) for name in ("execute_query", "execute_query_dict")}

    def spy(name: str) -> Any:
        async def run(self: Any, query: str, values: Any = None) -> Any:
            seen.append(query)
            return await originals[name](self, query, values)

        return run

    for name in originals:
        setattr(client, name, spy(name))
    try:
        yield seen
    finally:
        for name, original in originals.items():
            setattr(client, name, original)


async def _log_in(
    writer: LoginWriter, open_id: str, n: int, at: datetime = NOW
) -> tuple[PlayerRow, bool]:
    return await writer.log_in(open_id, new_public_id(), _tokens(n), at)


async def test_a_login_is_one_statement(statements: list[str], store: Store) -> None:
    """New or returning, a login writes the tokens and reads the player back in one statement."""
    writer = store.logins
    row, created = await _log_in(writer, "open-1", 1)
    assert created and row.open_id == "open-1" and len(statements) == 1
    again, created = await _log_in(writer, "open-1", 2, NOW + timedelta(minutes=1))
    assert not created and len(statements) == 2
    assert again.public_id == row.public_id
    stored = await store.players.by_open_id("open-1")
    assert stored is not None
    assert stored.refresh_token == "enc-refresh-2" and stored.access_token == "enc-access-2"
    assert stored.access_expires_at == NOW + timedelta(hours=2)
    assert stored.created_at == NOW and stored.updated_at == NOW + timedelta(minutes=1)


async def test_logins_that_arrive_together_are_one_statement(
    statements: list[str], store: Store
) -> None:
    """Fifty logins at once, two of them the same player's, take one statement; each caller
    gets its own player, and the player's later tokens are kept."""
    writer = store.logins
    open_ids = [f"open-{n}" for n in range(49)] + ["open-7"]
    results = await asyncio.gather(
        *(_log_in(writer, open_id, n) for n, open_id in enumerate(open_ids))
    )
    assert len(statements) == 1
    assert [row.open_id for row, _ in results] == open_ids
    assert sum(created for _, created in results) == 49
    assert results[7][0].public_id == results[49][0].public_id
    stored = await store.players.by_open_id("open-7")
    assert stored is not None and stored.refresh_token == "enc-refresh-49"


async def test_a_failed_statement_fails_every_login_in_it(db: Database) -> None:
    """When the write fails, each login waiting on it gets the error (none hangs)."""
    writer = LoginWriter(db)
    await db.close()
    try:
        outcomes = await asyncio.gather(
            *(_log_in(writer, f"open-{n}", n) for n in range(3)), return_exceptions=True
        )
    finally:
        await db.open()
    assert all(isinstance(outcome, Exception) for outcome in outcomes)


async def test_a_returning_login_keeps_the_profile_and_consent(store: Store) -> None:
    """A login stores fresh tokens and leaves the profile, the consent and the epoch alone."""
    writer = store.logins
    await _log_in(writer, "open-2", 1)
    await store.players.set_profile(
        "open-2",
        FetchedProfile(
            display_name="Ada",
            avatar_url="/a.png",
            union_id="u-2",
            fetched_at=NOW,
            refresh_at=NOW + timedelta(days=4),
        ),
    )
    row, created = await _log_in(writer, "open-2", 3, NOW + timedelta(hours=1))
    assert not created
    assert (row.display_name, row.avatar_url, row.consent.value) == ("Ada", "/a.png", "granted")
    assert row.session_epoch == 0
    stored = await store.players.by_open_id("open-2")
    assert stored is not None and stored.refresh_token == "enc-refresh-3"
    assert stored.profile_refresh_at == NOW + timedelta(days=4)
    assert stored.refresh_failures == 0


@pytest.mark.parametrize(
    ("query", "synchronous"), [("", 1), ("?synchronous=FULL", 2), ("?busy_timeout=100", 1)]
)
async def test_sqlite_is_tuned_for_a_server(tmp_path: Any, query: str, synchronous: int) -> None:
    """WAL, synchronous=NORMAL and a busy timeout, unless the URL names its own."""
    database = Database(f"sqlite:///{tmp_path}/tuned.sqlite3{query}")
    await database.open()
    try:
        pragmas = {
            name: (await connection().execute_query(f"PRAGMA {name}"))[1][0][0]
            for name in ("journal_mode", "synchronous", "busy_timeout")
        }
    finally:
        await database.close()
    busy = 100 if "busy_timeout" in query else 5000
    assert pragmas == {"journal_mode": "wal", "synchronous": synchronous, "busy_timeout": busy}
