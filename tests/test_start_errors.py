"""A deployment's mistakes stop the start with one sentence that says what to fix: a database
that is down, missing or unreadable, a driver not installed, a URL of the wrong kind, a port
already taken (the example server)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from ports import free_port

from example_server.__main__ import main
from tiktok_minis import ConfigurationError, Settings
from tiktok_minis.store.database import Database


async def _open_fails(url: str) -> str:
    database = Database(url)
    with pytest.raises(ConfigurationError) as caught:
        await database.open()
    assert not await database.ping()
    return caught.value.message


async def test_a_postgres_that_does_not_answer_is_named() -> None:
    """Nothing listens at the URL's port: the sentence names host, port and database."""
    port = free_port()
    message = await _open_fails(f"postgres://postgres:hunter2@127.0.0.1:{port}/game")
    assert f"'game' on 127.0.0.1:{port} does not answer" in message
    assert "hunter2" not in message


async def test_a_missing_postgres_database_is_named(postgres_url: str) -> None:
    """The server answers but the database is not there: create it, says the sentence."""
    url = postgres_url.rsplit("/", 1)[0] + "/ttminis_no_such_database"
    message = await _open_fails(url)
    assert "'ttminis_no_such_database'" in message and "does not exist" in message


async def test_a_missing_driver_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No asyncpg: building the plugin, before any server listens, gives the pip command."""
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(ConfigurationError) as caught:
        Database(f"postgres://postgres@127.0.0.1:{free_port()}/game")
    assert "pip install 'tiktok-minis[postgres]'" in caught.value.message


async def test_an_sqlite_file_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    """A folder that does not exist: the sentence names the file."""
    message = await _open_fails(f"sqlite:///{tmp_path}/missing/folder/game.sqlite3")
    assert "missing/folder/game.sqlite3" in message and "folder does not exist" in message


def test_postgresql_urls_are_postgres_and_others_are_refused() -> None:
    """libpq's postgresql:// works; a database the plugin does not speak is refused at once."""
    settings = Settings(sandbox=True, database_url="postgresql://u@db.internal:5432/game")
    assert settings.database_url == "postgres://u@db.internal:5432/game"
    for url in ("mysql://u@db/game", "mongodb://db/game", "postgres://", "game.sqlite3"):
        with pytest.raises(ConfigurationError, match="TTMINIS_DATABASE_URL"):
            Settings(sandbox=True, database_url=url)


def test_the_example_server_says_so_and_exits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database that does not answer: exit 2, one line, no URL printed as if it served."""
    monkeypatch.setenv("TTMINIS_DATABASE_URL", f"postgres://postgres@127.0.0.1:{free_port()}/x")
    assert main(["--sandbox", "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert "does not answer" in error and "Example game on" not in error
    assert "--sandbox does the same" not in error


def test_a_taken_port_is_said_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Another program holds the port: exit 2 with one line, and no URL printed as if it
    served."""
    monkeypatch.setenv("TTMINIS_DATABASE_URL", f"sqlite:///{tmp_path}/taken.sqlite3")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--sandbox", "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert f"Cannot listen on 127.0.0.1:{port}" in error and "Example game on" not in error
