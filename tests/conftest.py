"""Shared fixtures: databases (SQLite always, PostgreSQL and Redis when the services answer)."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from browser import chromium_browser
from game import FAST_UPSTREAM, Game, run_game

from tiktok_minis import Settings
from tiktok_minis.store.database import Database, connection

POSTGRES_URL = os.environ.get(
    "TTMINIS_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TTMINIS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, default_port: int) -> None:
    """Skip when the service is down, or fail when TTMINIS_REQUIRE_SERVICES=1 (as in CI)."""
    if _reachable(url, default_port):
        return
    message = f"{name} is not reachable at {url}"
    if os.environ.get("TTMINIS_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " and TTMINIS_REQUIRE_SERVICES=1")
    pytest.skip(message)


async def _truncate(db: Database) -> None:
    if db.dialect == "postgres":
        await connection().execute_script(
            "TRUNCATE ttminis_score, ttminis_player, ttminis_avatar, ttminis_webhook_event,"
            " ttminis_session_end, ttminis_score_removal CASCADE"
        )


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    """A fresh SQLite database file for one test."""
    return f"sqlite:///{tmp_path}/ttminis.sqlite3"


@pytest.fixture
def postgres_url() -> str:
    """The test PostgreSQL database, emptied before the test."""
    require_service("PostgreSQL", POSTGRES_URL, 5432)
    return POSTGRES_URL


@pytest.fixture
def redis_url() -> str:
    """The test Redis server."""
    require_service("Redis", REDIS_URL, 6379)
    return REDIS_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Each test that takes it runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ttminis.sqlite3"
    require_service("PostgreSQL", POSTGRES_URL, 5432)
    return POSTGRES_URL


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """An open, empty database (SQLite, then PostgreSQL)."""
    database = Database(database_url)
    await database.open()
    await _truncate(database)
    try:
        yield database
    finally:
        await _truncate(database)
        await database.close()


@pytest.fixture
async def sqlite_db(sqlite_url: str) -> AsyncIterator[Database]:
    """An open SQLite database, for tests that need a database but not both kinds."""
    database = Database(sqlite_url)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client with a short overall timeout (a browser, TikTok's webhook sender)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
def game_settings(sqlite_url: str) -> Settings:
    """Sandbox-mode settings with a fresh SQLite file and a fast-failing upstream budget."""
    return Settings(sandbox=True, database_url=sqlite_url, **FAST_UPSTREAM)


@pytest.fixture
async def game(game_settings: Settings) -> AsyncIterator[Game]:
    """The example game in sandbox mode on a loopback port."""
    async with run_game(game_settings) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Debian Chromium driven by Playwright (skips, or fails in CI, without it)."""
    async for chromium in chromium_browser():
        yield chromium
