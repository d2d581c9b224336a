"""Throwaway services to break on purpose: a PostgreSQL cluster, a Redis server, game processes.

Each lives on its own free loopback port and is removed when its fixture ends; the shared
PostgreSQL (5432) and Redis (6379) other tests use are never touched. The PostgreSQL cluster is
made with Debian's wrappers (``pg_createcluster``, ``pg_ctlcluster``, ``pg_dropcluster``), which
run the server as the ``postgres`` user when called as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import pytest
import socketio
from ports import free_port

from tiktok_minis.testing import GameClient

__all__ = [
    "GameProcess",
    "PostgresCluster",
    "RedisServer",
    "Timed",
    "free_port",
    "login_code",
    "metric_value",
    "require_binaries",
    "timed_call",
    "unavailable",
    "wait_until",
]

ROOT = Path(__file__).resolve().parent.parent
_PG_WRAPPERS = ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster", "createdb")


def unavailable(message: str) -> NoReturn:
    """Skip, or fail under TTMINIS_REQUIRE_SERVICES=1 (as in CI), like ``require_service``."""
    if os.environ.get("TTMINIS_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " and TTMINIS_REQUIRE_SERVICES=1")
    pytest.skip(message)


def require_binaries(what: str, *names: str) -> None:
    """``unavailable`` unless every program is on PATH."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        unavailable(f"{what} needs {', '.join(missing)} on PATH")


def _program(name: str) -> str:
    """The absolute path of ``name`` on PATH (``require_binaries`` checked it is there)."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not on PATH")
    return path


def _spawn(argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start a program of this module's own choosing (never input from outside the test)."""
    return subprocess.Popen([_program(argv[0]), *argv[1:]], **options)  # noqa: S603


def _run(*argv: str, limit: float = 60) -> None:
    """Run to the end; its error output in the exception when it fails."""
    process = _spawn(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, stderr = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}: {stderr.decode()}")


async def _run_async(*argv: str, limit: float = 60) -> None:
    """``_run`` without blocking the event loop that the clients under test share."""
    process = await asyncio.create_subprocess_exec(
        _program(argv[0]), *argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(limit):
            _, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}: {stderr.decode()}")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


def _postgres_version() -> str:
    """The newest PostgreSQL major version installed (Debian keeps each under its own dir)."""
    versions = [
        path.parent.parent.name
        for path in Path("/usr/lib/postgresql").glob("*/bin/postgres")
        if path.parent.parent.name.isdigit()
    ]
    if not versions:
        unavailable("A throwaway PostgreSQL cluster needs a server under /usr/lib/postgresql")
    return max(versions, key=int)


_CLUSTER_PREFIX = "ttminis_faults_"


def _drop_abandoned_clusters(version: str) -> None:
    """Drop this module's clusters whose test run died before its cleanup (its pid is gone).

    Only clusters named by this module are looked at; any other cluster is left alone.
    """
    pattern = re.compile(rf"{_CLUSTER_PREFIX}(\d+)_[0-9a-f]+")
    for config in Path("/etc/postgresql", version).glob(f"{_CLUSTER_PREFIX}*"):
        match = pattern.fullmatch(config.name)
        if match is None or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(RuntimeError):
            _run("pg_dropcluster", "--stop", version, config.name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class PostgresCluster:
    """A PostgreSQL cluster of its own (trust auth on loopback), to stop and start at will."""

    version: str
    name: str
    port: int

    @classmethod
    def create(cls) -> PostgresCluster:
        """Create and start a new cluster on a free port (a few seconds)."""
        require_binaries("A throwaway PostgreSQL cluster", *_PG_WRAPPERS)
        if os.geteuid() != 0:
            unavailable("A throwaway PostgreSQL cluster needs root (pg_createcluster)")
        version = _postgres_version()
        _drop_abandoned_clusters(version)
        name = f"{_CLUSTER_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        cluster = cls(version, name, free_port())
        try:
            cluster._create()
        except BaseException:
            with contextlib.suppress(RuntimeError):
                cluster.drop()
            raise
        return cluster

    def _create(self) -> None:
        # fsync=off: the tests kill game processes, never this server, and want speed.
        _run(
            "pg_createcluster",
            self.version,
            self.name,
            "--port",
            str(self.port),
            "--start-conf",
            "manual",
            "-o",
            "fsync=off",
            "-o",
            "max_connections=200",
            "--start",
            "--",
            "--auth=trust",
        )

    def url(self, database: str) -> str:
        """A ``postgres://`` URL of ``database`` on this cluster."""
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str) -> str:
        """A new empty database; its URL."""
        name = f"{prefix}_{secrets.token_hex(4)}"
        _run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def _ctl(self, action: str, *extra: str) -> tuple[str, ...]:
        return (
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            self.version,
            self.name,
            action,
            *extra,
        )

    async def stop(self) -> None:
        """Stop in fast mode: open sessions are cut, as in a real restart or failover."""
        await _run_async(*self._ctl("stop", "--mode", "fast"))

    async def start(self) -> None:
        """Start again; returns once the server accepts connections."""
        await _run_async(*self._ctl("start"))

    async def restart(self) -> None:
        """Stop (fast) and start in one go."""
        await _run_async(*self._ctl("restart", "--mode", "fast"))

    def drop(self) -> None:
        """Stop and delete the cluster, data and configuration included."""
        _run("pg_dropcluster", "--stop", self.version, self.name)


@dataclass
class RedisServer:
    """A Redis server without persistence on a port of its own; stop and start it again."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start; returns once it accepts connections (for fixtures, outside an event loop)."""
        self._spawn()
        deadline = time.monotonic() + 10
        while not self._up():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    async def restart(self) -> None:
        """Start again on the same port, without blocking the clients sharing the event loop."""
        self._spawn()
        await wait_until(self._up, 10, f"redis-server on port {self.port}", every=0.01)

    def _spawn(self) -> None:
        require_binaries("A throwaway Redis server", "redis-server")
        self.process = _spawn(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _up(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} exited")
        return _listening(self.port)

    def stop(self) -> None:
        """Kill the server (no goodbye to its clients); harmless when stopped."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


class GameProcess:
    """``python -m example_server --sandbox`` in a process of its own, as an operator runs it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self, within: float = 30) -> None:
        """Start and wait until /healthz answers 200."""
        # Only the settings given here: none leak in from the environment the tests run in.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TTMINIS_")}
        env = {**inherited, **self._env}
        with self.log_path.open("ab") as log:
            self.process = _spawn(
                [
                    sys.executable,
                    "-m",
                    "example_server",
                    "--sandbox",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "WARNING",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )
        process = self.process

        async def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the game exited {process.returncode}: {self.log_tail()}")
            return await self.health() == 200

        await wait_until(healthy, within, f"the game on {self.url} to become healthy")

    async def health(self) -> int | None:
        """The status /healthz answers, ``None`` without an answer within a second."""
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http,
                http.get(self.url + "/healthz") as response,
            ):
                return response.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def healthy(self) -> bool:
        """Whether /healthz answers 200 right now."""
        return await self.health() == 200

    async def metrics(self) -> str:
        """The Prometheus text of /metrics."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
            http.get(self.url + "/metrics") as response,
        ):
            assert response.status == 200
            return await response.text()

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, as when the machine or the OOM killer ends it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    async def stop(self, within: float = 10) -> float:
        """SIGTERM, as an operator stops it; SIGKILL if it lingers. The seconds it took."""
        process = self.process
        if process is None or process.poll() is not None:
            return 0.0
        process.terminate()
        try:
            return await wait_until(lambda: process.poll() is not None, within, "SIGTERM")
        except AssertionError:
            self.kill()
            raise

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the process printed, for a failure message."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


async def wait_until(
    condition: Callable[[], Any], within: float, what: str, every: float = 0.05
) -> float:
    """Poll ``condition`` (sync or async) until it is true; the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + within
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return loop.time() - started
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(every)


async def login_code(http: aiohttp.ClientSession, url: str, device: str) -> str:
    """A one-time login code from the game's sandbox emulator, as the SDK stand-in gets one."""
    async with http.post(f"{url}/ttminis/sandbox/login", json={"device": device}) as response:
        assert response.status == 200, await response.text()
        code: str = (await response.json())["code"]
        return code


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` with these labels in Prometheus text (0 if none)."""
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(match.group(2))
    return total


@dataclass
class Timed:
    """One answered (or unanswered) event: when it was sent, how long it took, its outcome."""

    event: str
    sent: float
    seconds: float
    outcome: str  # "ok", the error code, or "no_ack"
    ack: Any = None


async def timed_call(
    client: GameClient, event: str, payload: dict[str, Any], log: list[Timed]
) -> Any:
    """``client.call`` recorded in ``log`` with its latency and outcome; ``None`` on no ack."""
    loop = asyncio.get_running_loop()
    sent = loop.time()
    try:
        ack = await client.call(event, payload)
    except (TimeoutError, socketio.exceptions.SocketIOError):
        log.append(Timed(event, sent, loop.time() - sent, "no_ack"))
        return None
    outcome = "ok" if ack.get("ok") else str((ack.get("error") or {}).get("code", "malformed"))
    log.append(Timed(event, sent, loop.time() - sent, outcome, ack))
    return ack
