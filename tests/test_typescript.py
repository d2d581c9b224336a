"""ttminis.d.ts against a real TypeScript compiler: a game's use compiles, misuse is reported.

The compiler (a pinned TypeScript, with socket.io-client for the bundled-game case) is installed
once with npm under ``.cache/typescript/`` in the clone. Without node and npm the compiler tests
skip, or fail when TTMINIS_REQUIRE_SERVICES=1 (as in CI); so does an unreachable npm registry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
from game import DOCUMENTED_CODES, Game

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "plugin" / "tiktok_minis" / "static"
DECLARATION = STATIC / "ttminis.d.ts"
SAMPLES = Path(__file__).resolve().parent / "typescript"
CACHE = ROOT / ".cache" / "typescript"
PACKAGES = ("typescript@5.9.3", "socket.io-client@4.8.4")
INSTALL_TIMEOUT = 300
COMPILE_TIMEOUT = 120
#: ``misuse.ts(12,5): error TS2345: ...``: tsc's --pretty false diagnostics, one a line.
DIAGNOSTIC = re.compile(r"^(?P<file>[^(\n]+)\((?P<line>\d+),\d+\): error (?P<code>TS\d+):", re.M)
MARKER = re.compile(r"// error (TS\d+)\s*$")


def _unavailable(message: str) -> None:
    if os.environ.get("TTMINIS_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " and TTMINIS_REQUIRE_SERVICES=1")
    pytest.skip(message)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        _unavailable(f"no {name} on PATH (the TypeScript check needs node and npm)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def tsc() -> list[str]:
    """The argv that runs the pinned TypeScript compiler, installed into .cache/ on first use."""
    node = _tool("node")
    npm = _tool("npm")
    compiler = CACHE / "node_modules" / "typescript" / "bin" / "tsc"
    stamp = CACHE / "installed.json"
    if not compiler.exists() or not stamp.exists() or json.loads(stamp.read_text()) != [*PACKAGES]:
        CACHE.mkdir(parents=True, exist_ok=True)
        argv = [npm, "install", "--prefix", str(CACHE), "--no-save", "--no-audit", "--no-fund"]
        try:
            result = subprocess.run(  # noqa: S603 (npm with our own arguments)
                [*argv, "--ignore-scripts", "--loglevel=error", *PACKAGES],
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            _unavailable(f"npm install {' '.join(PACKAGES)} took over {INSTALL_TIMEOUT} s")
        if result.returncode != 0 or not compiler.exists():
            _unavailable(f"npm install {' '.join(PACKAGES)} failed: {result.stderr[-2000:]}")
        stamp.write_text(json.dumps([*PACKAGES]))
    return [node, str(compiler)]


def _compile(tsc: list[str], sample: Path, where: Path) -> subprocess.CompletedProcess[str]:
    """``tsc --strict --noEmit`` on one sample, as a game's build would type-check it."""
    config = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "target": "es2022",
            "module": "esnext",
            "moduleResolution": "bundler",
            "lib": ["es2022", "dom"],
            "types": [],
            "paths": {"socket.io-client": [str(CACHE / "node_modules" / "socket.io-client")]},
        },
        "files": [str(sample)],
    }
    project = where / "tsconfig.json"
    project.write_text(json.dumps(config))
    return subprocess.run(  # noqa: S603 (our own compiler and arguments)
        [*tsc, "-p", str(project), "--strict", "--noEmit", "--pretty", "false"],
        capture_output=True,
        text=True,
        timeout=COMPILE_TIMEOUT,
        check=False,
        cwd=ROOT,
    )


def test_a_games_use_of_the_api_type_checks(tsc: list[str], tmp_path: Path) -> None:
    """tests/typescript/game.ts (every call, option, shape and status of the API, with
    socket.io-client's own ``io`` for a bundled game) passes ``tsc --strict``."""
    result = _compile(tsc, SAMPLES / "game.ts", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_misuse_is_reported_where_it_is(tsc: list[str], tmp_path: Path) -> None:
    """tests/typescript/misuse.ts: wrong argument types, unknown codes and states, private
    fields of other players: tsc reports exactly the marked error on each marked line."""
    sample = SAMPLES / "misuse.ts"
    expected = {
        (number, match.group(1))
        for number, line in enumerate(sample.read_text().splitlines(), start=1)
        if (match := MARKER.search(line))
    }
    assert len(expected) >= 10
    result = _compile(tsc, sample, tmp_path)
    assert result.returncode != 0
    reported = {
        (int(found["line"]), found["code"])
        for found in DIAGNOSTIC.finditer(result.stdout)
        if found["file"].endswith("misuse.ts")
    }
    assert reported == expected, result.stdout


def _union(name: str) -> set[str]:
    """The string literals of ``export type <name> = "a" | "b" ...;`` in the declaration."""
    match = re.search(rf"export type {name} =(?P<body>[^;]*);", DECLARATION.read_text())
    assert match is not None, name
    return set(re.findall(r'"([a-z_]+)"', match["body"]))


def test_the_declared_codes_are_the_contracts() -> None:
    """The wire codes in ttminis.d.ts are those of docs/protocol.md; the client codes are
    CLIENT_CODES of ttminis.js, and no client code is also a wire code."""
    protocol = (ROOT / "docs" / "protocol.md").read_text()
    table = protocol.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    assert documented == DOCUMENTED_CODES
    assert _union("WireErrorCode") == documented
    exported = re.search(
        r"CLIENT_CODES = Object\.freeze\(\[(?P<codes>[^\]]*)\]\)",
        (STATIC / "ttminis.js").read_text(),
    )
    assert exported is not None
    client = set(re.findall(r'"([a-z_]+)"', exported["codes"]))
    assert (
        client
        == _union("ClientErrorCode")
        == {
            "sdk_failed",
            "sdk_unavailable",
            "timeout",
            "no_socket_client",
        }
    )
    assert not client & documented


async def test_the_declaration_is_served_next_to_the_module(game: Game) -> None:
    """/ttminis/static/ttminis.d.ts is the file in the package, and ttminis.js points at it."""
    async with aiohttp.ClientSession() as http:
        async with http.get(game.url + "/ttminis/static/ttminis.d.ts") as response:
            assert response.status == 200
            assert await response.read() == DECLARATION.read_bytes()
        async with http.get(game.url + "/ttminis/static/ttminis.js") as response:
            module = await response.text()
    assert module.startswith('/* @ts-self-types="./ttminis.d.ts" */')
