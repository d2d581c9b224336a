"""The example server in a process of its own, watched from outside, for ``bench.leaderboard``.

``python -m example_server --sandbox`` on a free loopback port, configured only through the
``TTMINIS_*`` environment given here (none leak in from the caller's). Its JSON log lines go to
a file that is read as it grows; its memory is read from ``/proc/<pid>/status``. Redis helpers
measure and delete the keys a run left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench._ports import free_port

__all__ = [
    "GameServer",
    "cpu_seconds",
    "free_port",
    "machine_cpu",
    "redis_delete",
    "redis_memory",
    "redis_used_memory",
]

_ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int | None) -> float:
    """User plus system CPU time a process has used so far (0 when unreadable)."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The fields after the command name (which may hold spaces) start at state, field 3.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """``(busy, total)`` CPU seconds of the whole machine so far, all cores (``/proc/stat``)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("cpu "):
                ticks = [int(v) for v in line.split()[1:]]
                idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
                hz = os.sysconf("SC_CLK_TCK")
                return (sum(ticks[:8]) - idle) / hz, sum(ticks[:8]) / hz
    return 0.0, 0.0


class GameServer:
    """One run of the example server; ``log_path`` receives its stderr and stdout."""

    def __init__(self, env: dict[str, str], log_path: Path, module: str = "example_server") -> None:
        """``module`` is what ``python -m`` runs: the example server."""
        self.port = free_port()
        self.module = module
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        #: ``time.time()`` when the process was spawned.
        self.spawned_at = 0.0
        self._env = env
        self._read = 0
        self._pending = b""
        self.records: list[dict[str, Any]] = []

    @property
    def pid(self) -> int:
        """The server process's id."""
        assert self.process is not None
        return self.process.pid

    async def start(self, within: float = 60.0) -> float:
        """Spawn it and wait until ``/healthz`` answers 200; the seconds that took."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TTMINIS_")}
        argv = [sys.executable, "-m", self.module, "--sandbox", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--log-level", "INFO"]
        with self.log_path.open("ab") as log:
            self.spawned_at = time.time()
            self.process = subprocess.Popen(  # noqa: S603, ASYNC220 (our interpreter; spawns at once)
                argv, cwd=_ROOT, env={**inherited, **self._env}, stdout=log, stderr=log
            )
        started = time.perf_counter()
        deadline = started + within
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"the server exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return time.perf_counter() - started
                await asyncio.sleep(0.05)
        raise RuntimeError(f"the server was not healthy within {within} s:\n{self.log_tail()}")

    def new_records(self) -> list[dict[str, Any]]:
        """The JSON log records written since the last call (other lines are skipped)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._read)
                chunk = log.read()
        except OSError:
            return []
        self._read += len(chunk)
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        found = []
        for line in lines:
            if line.startswith(b"{"):
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
        self.records += found
        return found

    async def wait_for_log(self, message: str, within: float) -> dict[str, Any] | None:
        """The first record with this ``message`` (seen before or within ``within`` s)."""
        deadline = time.perf_counter() + within
        while True:
            self.new_records()
            for record in self.records:
                if record.get("message") == message:
                    return record
            if time.perf_counter() > deadline or self.process is None:
                return None
            if self.process.poll() is not None:
                return None
            await asyncio.sleep(0.05)

    def seconds_after_spawn(self, record: dict[str, Any]) -> float | None:
        """When a log record was written, in seconds after the process was spawned."""
        try:
            return datetime.fromisoformat(record["time"]).timestamp() - self.spawned_at
        except (KeyError, TypeError, ValueError):
            return None

    def memory_kib(self) -> tuple[int, int]:
        """``(VmRSS, VmHWM)`` of the server process, in KiB (0 when unreadable)."""
        values = {"VmRSS": 0, "VmHWM": 0}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name in values:
                    values[name] = int(rest.split()[0])
        return values["VmRSS"], values["VmHWM"]

    def errors(self) -> list[dict[str, Any]]:
        """The records at level error or worse so far."""
        self.new_records()
        return [r for r in self.records if r.get("level") in ("error", "critical")]

    async def stop(self, within: float = 15.0) -> None:
        """SIGTERM, as an operator stops it; SIGKILL if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        deadline = time.perf_counter() + within
        while process.poll() is None and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if process.poll() is None:
            process.kill()
            process.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the process wrote."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# -- Redis ----------------------------------------------------------------------------------


def _redis(url: str) -> Any:
    import redis.asyncio as aioredis

    return aioredis.from_url(url)


async def _keys(client: Any, pattern: str, limit: int = 10_000) -> list[bytes]:
    """The keys matching ``pattern`` (SCAN, bounded)."""
    found: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=1000):
        found.append(key)
        if len(found) >= limit:
            break
    return found


async def redis_used_memory(url: str) -> int:
    """Redis's ``used_memory`` (bytes): the whole server, other users included."""
    client = _redis(url)
    try:
        info = await client.info("memory")
        return int(info["used_memory"])
    finally:
        await client.aclose()


async def redis_memory(url: str, pattern: str) -> dict[str, int]:
    """``MEMORY USAGE`` (exact: ``SAMPLES 0``) of every key matching ``pattern``."""
    client = _redis(url)
    try:
        usage = {}
        for key in await _keys(client, pattern):
            used = await client.memory_usage(key, samples=0)
            usage[key.decode(errors="replace")] = int(used or 0)
        return usage
    finally:
        await client.aclose()


async def redis_delete(url: str, pattern: str) -> int:
    """Delete every key matching ``pattern`` (the run's own prefix); how many."""
    client = _redis(url)
    try:
        keys = await _keys(client, pattern)
        if keys:
            await client.unlink(*keys)
        return len(keys)
    finally:
        await client.aclose()
