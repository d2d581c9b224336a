"""Schema migrations: empty databases, deployments from before migrations, repeats, races.

Each test works on its own database: a SQLite file, or the PostgreSQL database
``ttminis_migrations`` (created here, emptied before each test), never the shared ``test`` one.
The database is read and written here with aiosqlite or asyncpg directly, not through the code
under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiosqlite
import asyncpg
import pytest
from conftest import POSTGRES_URL, require_service
from tortoise import Tortoise
from tortoise.context import TortoiseContext
from tortoise.exceptions import OperationalError
from tortoise.migrations.api import migrate as tortoise_migrate
from tortoise.migrations.autodetector import MigrationAutodetector

from tiktok_minis.store.database import Database, migrate
from tiktok_minis.store.models import (
    AvatarRow,
    PlayerRow,
    ScoreRemovalRow,
    ScoreRow,
    SessionEndRow,
    WebhookEventRow,
)
from tiktok_minis.store.schema import APP, TORTOISE_ORM, tortoise_config

ALL = ["0001_initial", "0002_lifecycle", "0003_sessions", "0004_rank_index"]
MODELS = (PlayerRow, ScoreRow, AvatarRow, WebhookEventRow, SessionEndRow, ScoreRemovalRow)
MIGRATIONS_DB = "ttminis_migrations"

# The tables as the last release's generate_schemas made them (tortoise 1.1, less the comments):
# what a deployment from before migrations holds.
RELEASE_SCHEMA = """
CREATE TABLE "ttminis_player" (
    "open_id" VARCHAR(128) NOT NULL PRIMARY KEY,
    "public_id" VARCHAR(32) NOT NULL UNIQUE,
    "consent" VARCHAR(16) NOT NULL,
    "display_name" VARCHAR(256),
    "avatar_url" TEXT,
    "union_id" VARCHAR(128),
    "profile_fetched_at" {ts},
    "profile_refresh_at" {ts},
    "scopes" VARCHAR(512) NOT NULL,
    "access_token" TEXT,
    "access_expires_at" {ts},
    "refresh_token" TEXT,
    "refresh_expires_at" {ts},
    "session_epoch" INT NOT NULL,
    "created_at" {ts} NOT NULL,
    "updated_at" {ts} NOT NULL
);
CREATE INDEX "idx_ttminis_pla_profile_bb6c16" ON "ttminis_player" ("profile_refresh_at");
CREATE TABLE "ttminis_score" (
    "id" {id},
    "board" VARCHAR(64) NOT NULL,
    "period" VARCHAR(16) NOT NULL,
    "score" BIGINT NOT NULL,
    "reached_at" {ts} NOT NULL,
    "updated_at" {ts} NOT NULL,
    "player_id" VARCHAR(128) NOT NULL REFERENCES "ttminis_player" ("open_id") ON DELETE CASCADE,
    CONSTRAINT "uid_ttminis_sco_board_739a68" UNIQUE ("board", "period", "player_id")
);
CREATE INDEX "idx_ttminis_sco_board_95e31d"
    ON "ttminis_score" ("board", "period", "score", "reached_at");
CREATE INDEX "idx_ttminis_sco_player__d9be7f" ON "ttminis_score" ("player_id");
"""
DIALECT_TYPES = {
    "sqlite": {"ts": "TIMESTAMP", "id": "INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL"},
    "postgres": {"ts": "TIMESTAMPTZ", "id": "BIGSERIAL NOT NULL PRIMARY KEY"},
}
SEEN = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)

Columns = dict[str, dict[str, tuple[str, bool]]]
"""Table -> column -> (type, nullable)."""


class Raw:
    """The database as SQL sees it, opened beside the code under test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgres"

    async def script(self, sql: str) -> None:
        """Run statements, committed."""
        if self.dialect == "sqlite":
            async with aiosqlite.connect(self.url.removeprefix("sqlite://")) as conn:
                await conn.executescript(sql)
                await conn.commit()
            return
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def rows(self, sql: str) -> list[dict[str, Any]]:
        """The rows of one query, as dicts."""
        if self.dialect == "sqlite":
            async with aiosqlite.connect(self.url.removeprefix("sqlite://")) as conn:
                conn.row_factory = aiosqlite.Row
                return [dict(row) for row in await conn.execute_fetchall(sql)]
        conn = await asyncpg.connect(self.url)
        try:
            return [dict(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    async def history(self) -> list[str]:
        """The plugin's migrations recorded as applied, in name order."""
        rows = await self.rows(
            "SELECT name FROM tortoise_migrations WHERE app = 'ttminis' ORDER BY name"
        )
        return [row["name"] for row in rows]

    async def columns(self) -> Columns:
        """Every plugin table's columns with their types and nullability."""
        if self.dialect == "postgres":
            rows = await self.rows(
                "SELECT table_name, column_name, data_type, is_nullable"
                " FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name LIKE 'ttminis%'"
            )
            found: Columns = {}
            for row in rows:
                found.setdefault(row["table_name"], {})[row["column_name"]] = (
                    row["data_type"],
                    row["is_nullable"] == "YES",
                )
            return found
        tables = await self.rows(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ttminis%'"
        )
        found = {}
        for table in tables:
            info = await self.rows(f'PRAGMA table_info("{table["name"]}")')
            found[table["name"]] = {
                row["name"]: (row["type"], not row["notnull"] and not row["pk"]) for row in info
            }
        return found

    async def indexes(self) -> set[tuple[str, str]]:
        """(table, index) for every named index on a plugin table."""
        if self.dialect == "postgres":
            rows = await self.rows(
                "SELECT tablename AS t, indexname AS i FROM pg_indexes"
                " WHERE schemaname = current_schema() AND tablename LIKE 'ttminis%'"
            )
        else:
            rows = await self.rows(
                "SELECT tbl_name AS t, name AS i FROM sqlite_master WHERE type = 'index'"
                " AND tbl_name LIKE 'ttminis%' AND name NOT LIKE 'sqlite_autoindex%'"
            )
        return {(row["t"], row["i"]) for row in rows}

    async def release_deployment(self) -> None:
        """The last release's tables, holding one player with one score, and no history."""
        await self.script(RELEASE_SCHEMA.format(**DIALECT_TYPES[self.dialect]))
        await self.insert_player_and_score()

    async def insert_player_and_score(self) -> None:
        """One consented player with a score, written as the last release wrote them."""
        # Both databases read this text as the timestamp (PostgreSQL casts it to the column's type).
        await self.script(
            "INSERT INTO ttminis_player (open_id, public_id, consent, display_name, scopes,"
            " session_epoch, created_at, updated_at) VALUES ('open-1', 'pub-1', 'granted',"
            " 'Ada', 'user.info.basic', 3, '2026-11-01 09:30:00+00:00',"
            " '2026-11-01 09:30:00+00:00');"
            "INSERT INTO ttminis_score (board, period, player_id, score, reached_at, updated_at)"
            " VALUES ('global', 'all', 'open-1', 1200, '2026-11-01 09:30:00+00:00',"
            " '2026-11-01 09:30:00+00:00');"
        )


def model_columns() -> dict[str, set[str]]:
    """Every model's table and the columns its fields need, from the models' metadata."""
    return {
        model._meta.db_table: set(model._meta.fields_db_projection.values()) for model in MODELS
    }


async def generate_schemas(url: str) -> None:
    """What ``Database.open`` did before migrations: create the missing tables of today's models."""
    config = tortoise_config("legacy", url)
    del config["apps"][APP]["migrations"]
    await Tortoise.init(config=config)
    try:
        await Tortoise.generate_schemas(safe=True)
    finally:
        await Tortoise.close_connections()


def _postgres_database_url() -> str:
    return urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{MIGRATIONS_DB}"))


async def _fresh_postgres_database() -> str:
    """This file's own database, created if missing and emptied of every table."""
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", MIGRATIONS_DB):
            # Another run may create it between the check and here.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await admin.execute(f'CREATE DATABASE "{MIGRATIONS_DB}"')
    finally:
        await admin.close()
    url = _postgres_database_url()
    raw = Raw(url)
    tables = await raw.rows("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    if tables:
        names = ", ".join(f'"{row["tablename"]}"' for row in tables)
        await raw.script(f"DROP TABLE {names} CASCADE")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def url(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[str]:
    """An empty database: a SQLite file, then this file's PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/migrations.sqlite3"
        return
    require_service("PostgreSQL", POSTGRES_URL, 5432)
    yield await _fresh_postgres_database()


@pytest.fixture
async def migrations_postgres_url() -> str:
    """This file's PostgreSQL database, emptied."""
    require_service("PostgreSQL", POSTGRES_URL, 5432)
    return await _fresh_postgres_database()


async def test_empty_database_gets_the_schema_the_models_describe(url: str) -> None:
    """An empty database gets every migration, and every model's table has its fields' columns."""
    assert await migrate(url) == ALL

    raw = Raw(url)
    assert await raw.history() == ALL
    found = await raw.columns()
    assert {table: set(columns) for table, columns in found.items()} == model_columns()


async def test_migrated_schema_equals_what_generate_schemas_makes(url: str, tmp_path: Any) -> None:
    """Column types, nullability and index names match a database made from the models directly.

    So a deployment from before migrations and a new one are the same database, and adopting
    the first needs no change to it.
    """
    await migrate(url)
    migrated = Raw(url)
    migrated_columns, migrated_indexes = await migrated.columns(), await migrated.indexes()

    if migrated.dialect == "sqlite":
        direct_url = f"sqlite:///{tmp_path}/direct.sqlite3"
    else:  # the same database, emptied: the migrated schema was read above
        direct_url = await _fresh_postgres_database()
    await generate_schemas(direct_url)
    direct = Raw(direct_url)

    assert migrated_columns == await direct.columns()
    assert migrated_indexes == await direct.indexes()


async def test_release_deployment_is_upgraded_and_keeps_its_data(url: str) -> None:
    """A database the last release made (no history) is adopted, upgraded, and loses nothing."""
    raw = Raw(url)
    await raw.release_deployment()

    database = Database(url)
    await database.open()
    try:
        player = await PlayerRow.get(open_id="open-1")
        score = await ScoreRow.get(player_id="open-1", board="global", period="all")
    finally:
        await database.close()

    assert (player.public_id, player.display_name, player.session_epoch) == ("pub-1", "Ada", 3)
    assert player.profile_fetched_at is None and player.created_at == SEEN
    assert (player.refresh_failures, player.refresh_claimed_until) == (0, None)
    assert (score.score, score.reached_at) == (1200, SEEN)
    assert await raw.history() == ALL
    assert {table: set(columns) for table, columns in (await raw.columns()).items()} == (
        model_columns()
    )


async def migrate_to_0001(url: str) -> None:
    """A deployment that ran the first migration only, with tortoise's own ``migrate``."""
    try:
        await tortoise_migrate(config=tortoise_config("default", url), target=f"{APP}.0001_initial")
    finally:
        await Tortoise.close_connections()


async def test_deployment_migrated_to_0001_is_upgraded_with_its_data(url: str) -> None:
    """A database at 0001 with its history gets the later migrations alone, rows the defaults."""
    await migrate_to_0001(url)
    raw = Raw(url)
    assert await raw.history() == ["0001_initial"]
    await raw.insert_player_and_score()

    assert await migrate(url) == ALL[1:]

    rows = await raw.rows(
        "SELECT refresh_failures, refresh_claimed_until, display_name FROM ttminis_player"
    )
    assert rows == [{"refresh_failures": 0, "refresh_claimed_until": None, "display_name": "Ada"}]
    assert [row["score"] for row in await raw.rows("SELECT score FROM ttminis_score")] == [1200]


async def test_deployment_made_by_generate_schemas_today_is_only_recorded(url: str) -> None:
    """Tables made from today's models are complete: the history is written, nothing runs."""
    await generate_schemas(url)
    raw = Raw(url)
    before = await raw.columns()

    assert await migrate(url) == []

    assert await raw.history() == ALL
    assert await raw.columns() == before


async def test_release_deployment_whose_new_tables_generate_schemas_added_is_completed(
    url: str,
) -> None:
    """The state this change fixes: new tables made, new player columns missing.

    A release deployment later opened by code that still called ``generate_schemas`` got the
    avatar and webhook tables but not the refresher's columns. Adoption adds those columns and
    leaves the tables, and their rows, alone.
    """
    raw = Raw(url)
    await raw.release_deployment()
    await generate_schemas(url)
    await raw.script(
        "INSERT INTO ttminis_webhook_event (digest, event, received_at)"
        " VALUES ('d1', 'authorization.removed', CURRENT_TIMESTAMP)"
    )
    assert "refresh_failures" not in (await raw.columns())["ttminis_player"]

    assert await migrate(url) == ALL[1:]

    assert await raw.history() == ALL
    assert await raw.rows("SELECT refresh_failures FROM ttminis_player") == [
        {"refresh_failures": 0}
    ]
    assert [
        row["digest"] for row in await raw.rows("SELECT digest FROM ttminis_webhook_event")
    ] == ["d1"]


async def test_failed_migration_leaves_nothing_behind(url: str) -> None:
    """A migration that fails part-way is undone whole and not recorded; the next run retries it.

    Here 0002 creates ``ttminis_avatar``, then fails on a ``ttminis_webhook_event`` that is
    already there.
    """
    await migrate_to_0001(url)
    raw = Raw(url)
    await raw.script('CREATE TABLE "ttminis_webhook_event" ("stray" INT)')

    with pytest.raises(OperationalError):
        await migrate(url)

    assert await raw.history() == ["0001_initial"]
    columns = await raw.columns()
    assert "ttminis_avatar" not in columns
    assert "refresh_claimed_until" not in columns["ttminis_player"]

    await raw.script('DROP TABLE "ttminis_webhook_event"')
    assert await migrate(url) == ALL[1:]


async def test_migrating_twice_is_a_no_op(url: str) -> None:
    """A second run applies nothing, records nothing and changes no table."""
    await migrate(url)
    raw = Raw(url)
    history, columns, indexes = await raw.history(), await raw.columns(), await raw.indexes()
    count = await raw.rows("SELECT COUNT(*) AS n FROM tortoise_migrations")

    assert await migrate(url) == []
    database = Database(url)
    await database.open()
    await database.close()

    assert (await raw.history(), await raw.columns(), await raw.indexes()) == (
        history,
        columns,
        indexes,
    )
    assert await raw.rows("SELECT COUNT(*) AS n FROM tortoise_migrations") == count


async def test_models_and_migrations_are_in_step() -> None:
    """``tortoise makemigrations`` finds nothing to write: no model change lacks a migration."""
    apps_config = {APP: dict(TORTOISE_ORM["apps"][APP])}
    async with TortoiseContext() as ctx:
        await ctx.init(config=TORTOISE_ORM)
        assert ctx.apps is not None
        writers = await MigrationAutodetector(ctx.apps, apps_config).changes()
    assert [writer.name for writer in writers] == []


_RACER = """
import asyncio, json, sys
from tiktok_minis.store.database import migrate
print("ready", flush=True)
sys.stdin.readline()
print(json.dumps(asyncio.run(migrate(sys.argv[1]))), flush=True)
"""


@pytest.mark.postgres
async def test_processes_starting_together_apply_each_migration_once(
    migrations_postgres_url: str,
) -> None:
    """Four processes migrating one PostgreSQL at the same moment: each migration runs once.

    Each process imports everything, says it is ready and waits for the word; all get it
    together, so their migrations overlap. Without the advisory lock, some fail with
    "relation already exists".
    """
    racers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _RACER,
            migrations_postgres_url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    try:
        for racer in racers:
            assert racer.stdout is not None
            assert await asyncio.wait_for(racer.stdout.readline(), 30) == b"ready\n"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write(b"go\n")
        results = await asyncio.wait_for(
            asyncio.gather(*(racer.communicate() for racer in racers)), 60
        )
    finally:
        for racer in racers:
            if racer.returncode is None:
                racer.kill()
                await racer.wait()

    for racer, (_, err) in zip(racers, results, strict=True):
        assert racer.returncode == 0, err.decode()
    applied = [name for out, _ in results for name in json.loads(out)]
    assert sorted(applied) == ALL
    assert await Raw(migrations_postgres_url).rows(
        "SELECT name FROM tortoise_migrations ORDER BY name"
    ) == [{"name": name} for name in ALL]
