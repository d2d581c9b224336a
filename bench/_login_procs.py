"""Processes of ``bench.login``: servers started on loopback ports, watched and stopped.

Each :class:`Service` is one ``python -m ...`` process with an environment given here (no
``TTMINIS_*`` variable leaks in from the caller's), its output in a log file, ready once its
health URL answers 200. :func:`run_client` runs the client process and returns its JSON result.
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
from pathlib import Path
from typing import Any

import aiohttp

from bench._ports import free_port

__all__ = ["ROOT", "Service", "free_port", "run_client"]

#: The project's root: where ``python -m bench...`` and ``python -m example_server`` run.
ROOT = Path(__file__).resolve().parent.parent


def _environment(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without ``TTMINIS_*``, plus ``extra``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TTMINIS_")}
    return {**inherited, "PYTHONUNBUFFERED": "1", **extra}


class Service:
    """One server process: ``await start()``, ``pid``, ``stop()``, ``log_tail()``."""

    def __init__(
        self,
        name: str,
        module_args: list[str],
        *,
        health_url: str,
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = [sys.executable, "-m", *module_args]
        self.health_url = health_url
        self.log_path = log_path
        self._env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (once started)."""
        if self.process is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.process.pid

    async def start(self, within: float = 60.0) -> float:
        """Spawn the process and wait until the health URL answers 200; the seconds it took."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603, ASYNC220 (our interpreter; at once)
                self.argv, cwd=ROOT, env=_environment(self._env), stdout=log, stderr=log
            )
        started = time.perf_counter()
        deadline = started + within
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(self.health_url) as response:
                        if response.status == 200:
                            return time.perf_counter() - started
                await asyncio.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {within} s:\n{self.log_tail()}")

    def stop(self, within: float = 10.0) -> None:
        """SIGINT, then SIGKILL if it has not exited ``within`` seconds. Harmless twice."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(within)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(within)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_levels(self) -> dict[str, int]:
        """How many JSON log lines of each level the process wrote (the example server's)."""
        counts: dict[str, int] = {}
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return counts
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError, AttributeError):
                level = str(json.loads(line).get("level"))
                counts[level] = counts.get(level, 0) + 1
        return counts


def _read(path: Path) -> str:
    """A log's text, or ``(no log)``."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"


async def run_client(args: list[str], log_path: Path, within: float = 900.0) -> dict[str, Any]:
    """Run ``python -m bench._login_client ARGS`` and return the JSON of its last line."""
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench._login_client",
            *args,
            cwd=ROOT,
            env=_environment({}),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"the client process took more than {within} s") from None
    lines = out.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        tail = "\n".join(_read(log_path).splitlines()[-30:])
        raise RuntimeError(f"the client process failed ({process.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
