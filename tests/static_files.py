"""The browser files the docs tell a developer to load, and the check that a server serves them.

Shared by the wheel test (a game on the installed wheel) and the HTML guide's test (the guide's
own example server from the clone).
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "plugin" / "tiktok_minis" / "static"
#: Served under /ttminis/static/ in sandbox mode only, from the emulator's package.
SANDBOX_SDK = ROOT / "plugin" / "tiktok_minis" / "sandbox" / "static" / "sandbox-sdk.js"
STATIC_REFERENCE = re.compile(r"/ttminis/static/[\w./-]*\w")


def referenced_static_paths() -> set[str]:
    """Every ``/ttminis/static/...`` path in the README, the guides and the guides' examples."""
    docs = ROOT / "docs"
    files = [ROOT / "README.md", *docs.rglob("*.md")]
    files += [path for path in (docs / "examples").rglob("*") if path.is_file()]
    return {path for file in files for path in STATIC_REFERENCE.findall(file.read_text())}


def source_of(path: str) -> Path:
    """The file in this checkout that ``path`` (``/ttminis/static/...``) must serve."""
    name = path.removeprefix("/ttminis/static/")
    return SANDBOX_SDK if name == SANDBOX_SDK.name else STATIC / name


async def assert_served_as_checked_in(http: aiohttp.ClientSession, base_url: str) -> set[str]:
    """Fetch each referenced path from ``base_url``: 200 and the checked-in bytes. Returns the
    paths, so a caller can check the list is not empty or lacks nothing it expects."""
    paths = referenced_static_paths()
    for path in sorted(paths):
        async with http.get(base_url + path) as response:
            assert response.status == 200, path
            body = await response.read()
        assert body == source_of(path).read_bytes(), path
    return paths
