"""The built wheel, installed in a fresh virtualenv as a studio would, outside this clone.

The wheel is built once per run (``pip wheel``, the project's own build backend) and installed
with its dependencies from the package index into a new venv under a temporary folder; the
servers run from there, with the clone off ``sys.path``, so nothing is found by accident.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from ports import free_port
from static_files import ROOT, STATIC, assert_served_as_checked_in, referenced_static_paths

INSTALL_TIMEOUT = 600
START_TIMEOUT = 30

#: The smallest game on the installed plugin: the game's own server, the plugin attached.
GAME = """\
import sys

import socketio
from aiohttp import web

from tiktok_minis import TikTokMinis

sio = socketio.AsyncServer(async_mode="aiohttp")
app = web.Application()
sio.attach(app)
TikTokMinis().attach(sio, app)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]))
"""


def _run(argv: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(  # noqa: S603 (our own interpreter and arguments)
        argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False, **options
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built by pip with the project's build backend."""
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)])
    (built,) = out.glob("tiktok_minis-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the wheel and its dependencies installed, and no extras."""
    where = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(where)])
    python = where / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", str(wheel)])
    return python


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working folder away from the clone, holding the game file."""
    (tmp_path / "game.py").write_text(GAME)
    return tmp_path


def _environment(**settings: str) -> dict[str, str]:
    """The parent's environment without Python paths or TTMINIS_* leaking in, plus ``settings``."""
    kept = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TTMINIS_", "PYTHON", "VIRTUAL_ENV"))
    }
    return {**kept, **settings}


@asynccontextmanager
async def _serving(python: Path, folder: Path, port: int) -> AsyncIterator[str]:
    """Run ``game.py`` with the installed plugin in sandbox mode; yields its URL once it listens."""
    env = _environment(
        TTMINIS_SANDBOX="true",
        TTMINIS_DATABASE_URL=f"sqlite://{folder / 'game.sqlite3'}",
        PYTHONUNBUFFERED="1",  # the "Running on" line arrives when printed, not at exit
    )
    process = await asyncio.create_subprocess_exec(
        str(python),
        "game.py",
        str(port),
        cwd=folder,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        # aiohttp prints "Running on http://..." once the socket listens.
        async with asyncio.timeout(START_TIMEOUT):
            seen = b""
            while b"Running on" not in seen:
                line = await process.stdout.readline()
                if not line:
                    pytest.fail(f"the installed game stopped before listening:\n{seen.decode()}")
                seen += line
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()


def test_the_guides_reference_static_files() -> None:
    """The check below has something to check: the guides load the client, SDK and avatar."""
    assert {
        "/ttminis/static/ttminis.js",
        "/ttminis/static/vendor/socket.io.min.js",
        "/ttminis/static/sandbox-sdk.js",
        "/ttminis/static/default-avatar.svg",
    } <= referenced_static_paths()


def test_wheel_carries_every_static_file_and_the_licences_but_not_the_example_game(
    wheel: Path,
) -> None:
    """Every file under static/ is in the wheel; example_server is not a top-level package."""
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        "tiktok_minis/static/" + path.relative_to(STATIC).as_posix()
        for path in STATIC.rglob("*")
        if path.is_file()
    }
    assert shipped - names == set()
    assert "tiktok_minis/sandbox/static/sandbox-sdk.js" in names
    assert not any(name.startswith("example_server/") for name in names)
    assert "tiktok_minis/py.typed" in names
    licences = {Path(name).name for name in names if "/licenses/" in name}
    assert {"LICENSE", "socket.io.LICENSE"} <= licences
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text
    assert "Provides-Extra: postgres" in text and "Provides-Extra: redis" in text


async def test_installed_wheel_serves_every_file_the_guides_reference(
    venv: Path, outside: Path
) -> None:
    """A game on the installed wheel serves each /ttminis/static/ path the guides name, as is."""
    async with (
        _serving(venv, outside, free_port()) as url,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
    ):
        assert "/ttminis/static/ttminis.js" in await assert_served_as_checked_in(http, url)
        async with http.get(url + "/ttminis/health/ready") as response:
            assert response.status == 200


@pytest.mark.parametrize(
    ("setting", "value", "extra"),
    [
        ("TTMINIS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test", "postgres"),
        ("TTMINIS_REDIS_URL", "redis://127.0.0.1:6379/0", "redis"),
    ],
)
def test_installed_wheel_without_an_extra_names_the_install_command(
    venv: Path, outside: Path, setting: str, value: str, extra: str
) -> None:
    """A PostgreSQL or Redis URL without its driver stops the start with the pip line to run."""
    settings = {"TTMINIS_SANDBOX": "true", setting: value}
    if setting != "TTMINIS_DATABASE_URL":
        settings["TTMINIS_DATABASE_URL"] = f"sqlite://{outside / 'game.sqlite3'}"
    result = subprocess.run(  # noqa: S603 (our own interpreter and arguments)
        [str(venv), "game.py", str(free_port())],
        cwd=outside,
        env=_environment(**settings),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )
    assert result.returncode != 0
    assert "Running on" not in result.stdout  # said before the server listens
    assert result.stderr.strip().splitlines()[-1].endswith(f"pip install 'tiktok-minis[{extra}]'")
