"""docs/protocol.md, the wire contract users read, names exactly what the code implements:
every client event, every push and every error code, no more and no fewer."""

from __future__ import annotations

import re
from pathlib import Path

import socketio
from aiohttp import web

from tiktok_minis import Settings, TikTokMinis
from tiktok_minis.errors import MinisError
from tiktok_minis.realtime._guard import RESERVED_EVENTS
from tiktok_minis.services.sessions import InvalidSession

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
REALTIME = (ROOT / "plugin" / "tiktok_minis" / "realtime" / "_events.py").read_text(
    encoding="utf-8"
)


def _section(title: str) -> str:
    """The text of the ``## title`` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", PROTOCOL, re.M | re.S)
    assert match is not None, title
    return match.group(1)


def _first_column(table_text: str) -> set[str]:
    """The backquoted names in the first column of a markdown table."""
    return set(re.findall(r"^\| `([^`]+)` \|", table_text, re.M))


def _errors(cls: type[MinisError]) -> set[type[MinisError]]:
    found = {cls}
    for sub in cls.__subclasses__():
        found |= _errors(sub)
    return found


def test_every_client_event_is_documented(sqlite_url: str) -> None:
    """The events attach() registers are the table's client events."""
    sio = socketio.AsyncServer(async_mode="aiohttp")
    minis = TikTokMinis(Settings(sandbox=True, database_url=sqlite_url))
    minis.attach(sio, web.Application())
    registered = set(sio.handlers["/"]) - {"connect", "disconnect"}
    assert registered == _first_column(_section("Client to server"))


def test_every_push_is_documented() -> None:
    """The events the realtime face emits are the table's pushes."""
    emitted = set(re.findall(r'emit\(\s*"([a-z]+:[a-z]+)"', REALTIME))
    assert emitted == _first_column(_section("Server to client"))


def test_every_error_code_is_documented() -> None:
    """Every MinisError's wire code is in the table (the refused connect's code beside it)."""
    codes = {error.code for error in _errors(MinisError)} - {InvalidSession.code}
    assert codes == _first_column(_section("Error codes"))
    assert f'"code": "{InvalidSession.code}"' in _section("Resuming")


def test_the_reserved_names_are_the_guards() -> None:
    """The reserved names the document lists are exactly those the socket guard ignores."""
    bullet = next(
        line
        for line in re.split(r"\n(?=- )", _section("Frames and refusals"))
        if "Socket.IO reserves" in line
    )
    assert set(re.findall(r"`([^`]+)`", bullet)) == set(RESERVED_EVENTS)


def test_the_guides_and_readme_point_at_it() -> None:
    """The README and every guide link to the project's own contract, never elsewhere."""
    for page in ("README.md", "docs/embedding.md", "docs/html-client.md", "docs/unity-client.md"):
        text = (ROOT / page).read_text(encoding="utf-8")
        assert "protocol.md" in text, page
        assert "../shared" not in text, page
