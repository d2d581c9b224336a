"""The end-to-end deployment check: ``.venv/bin/python deploy/check.py`` (``make deploy-test``).

It runs what ``deploy/`` describes, on this machine's loopback interface, and tears it all down:

- a stand-in for TikTok (the plugin's emulator in a process of its own, ``_tiktok_standin.py``);
- a fresh PostgreSQL database (``ttminis_deploy_<random>`` on 127.0.0.1:5432, user postgres)
  and a Redis channel of its own, migrated with ``python -m tiktok_minis migrate``;
- two game processes in production mode (no ``TTMINIS_SANDBOX``), started with the systemd
  unit's ``ExecStart`` and environment, the settings that ``systemd/env.example`` lists given
  per-run values (a random secret key, the emulator's credentials);
- nginx with the site rendered from ``nginx/tiktok-minis.conf`` with its HTTPS lines turned on
  (a self-signed certificate made for the run), in a directory of its own;
- through nginx only: two players on different processes, a score, a consent and a rename
  pushed live across processes, the client address behind the proxy, then a rolling stop
  (SIGTERM with sockets open, a session resumed on the other process).

Exit status 0 when everything held; otherwise 1 and, last, one line saying what failed (the
logs of the run are then kept and the line says where). Ctrl+C stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import grp
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import redis.asyncio as aioredis
import socketio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from yarl import URL

from tiktok_minis.settings import SANDBOX_CLIENT_KEY, SANDBOX_CLIENT_SECRET

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NGINX_TEMPLATE = DEPLOY / "nginx" / "tiktok-minis.conf"
SYSTEMD_UNIT = DEPLOY / "systemd" / "tiktok-minis@.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "env.example"
STANDIN = DEPLOY / "_tiktok_standin.py"

POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER = "127.0.0.1", 5432, "postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
GAME_PROCESSES = 2
BOARD = "global"
PLACEHOLDER_NAME = "TikTok Player"  # the plugin's default TTMINIS_PLACEHOLDER_NAME
SERVER_NAME = "localhost"

READY_WITHIN = 30.0  # seconds a process may take to answer its readiness probe
EVENT_WITHIN = 10.0  # seconds any ack or push may take
POLL_EVERY = 0.05  # seconds between two readiness probes
# One readiness probe: short, so that a port some other program holds cannot stall the wait.
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=2.0)
PORT_TRIES = 3  # a free port may be taken before the server binds it: try another

# The client-address check: a small failed-login budget per address, so that a few junk codes
# show whose address the plugin charged (see check_client_address).
ADDRESS_BURST = 2
CHECK_ONLY_SETTINGS = {
    "TTMINIS_FAILED_LOGINS_PER_ADDRESS_BURST": str(ADDRESS_BURST),
    "TTMINIS_FAILED_LOGINS_PER_ADDRESS_PER_MINUTE": "1",
}

T = TypeVar("T")


class CheckFailed(Exception):
    """The deployment does not work as described; the message says what, in one line."""


# -- steps and their timings ------------------------------------------------------------------


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    detail: str = ""
    ok: bool = False


@dataclass
class Report:
    """Every step with its time, for the summary."""

    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    teardown_problems: list[str] = field(default_factory=list)
    teardown_times: list[tuple[str, float]] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Step]:
        step = Step(name)
        self.steps.append(step)
        started = time.perf_counter()
        try:
            yield step
            step.ok = True
        finally:
            step.seconds = time.perf_counter() - started

    def print_summary(self, total: float, passed: bool) -> None:
        width = max((len(step.name) for step in self.steps), default=10)
        print(f"deploy check {'passed' if passed else 'FAILED'} in {total:.1f} s")
        for step in self.steps:
            mark = "ok  " if step.ok else "FAIL"
            detail = f"  {step.detail}" if step.detail else ""
            print(f"  {mark} {step.name:<{width}} {step.seconds:6.2f} s{detail}")
        for note in self.notes:
            print(f"  note: {note}")
        for problem in self.teardown_problems:
            print(f"  teardown: {problem}")


# -- helpers ----------------------------------------------------------------------------------


async def within(awaitable: Awaitable[T], seconds: float, what: str) -> T:
    """``awaitable``'s result, or CheckFailed saying ``what`` did not happen in time."""
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise CheckFailed(f"{what} did not happen within {seconds:g} s") from None


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def can_bind(address: str) -> bool:
    """Whether a client socket can use ``address`` as its source address here."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


def last_line(path: Path) -> str:
    """The last non-empty line of a log file (for a one-line reason), or ''."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


@dataclass
class Child:
    """A process this check started: its log, and a stop that never hangs."""

    name: str
    process: asyncio.subprocess.Process
    log: Path

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def stop(self, signum: int = signal.SIGTERM, grace: float = 10.0) -> tuple[int, float]:
        """Send ``signum``, wait up to ``grace`` seconds, then SIGKILL: (exit status, seconds)."""
        started = time.perf_counter()
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        returncode = self.process.returncode
        assert returncode is not None
        return returncode, time.perf_counter() - started


async def spawn(
    name: str,
    argv: list[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    stdout_pipe: bool = False,
) -> Child:
    """Start ``argv`` from the checkout with its output in ``log``."""
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else output,
            stderr=output,
        )
    return Child(name, process, log)


# -- the settings: env.example and the systemd unit ---------------------------------------------


def env_example_keys(text: str) -> list[str]:
    """The variables ``env.example`` sets (not the commented ones)."""
    keys = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, _ = line.partition("=")
            if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
                raise CheckFailed(f"env.example has a line systemd cannot read: {line!r}")
            keys.append(key)
    return keys


@dataclass
class Unit:
    """What the check takes from the systemd unit: how a process starts and stops."""

    exec_start: list[str]
    environment: dict[str, str]
    kill_signal: signal.Signals
    timeout_stop: float

    def argv(self, port: int) -> list[str]:
        """``ExecStart`` for instance ``port``, run with this checkout's interpreter."""
        argv = [arg.replace("%i", str(port)) for arg in self.exec_start]
        if not re.search(r"/python3?$", argv[0]):
            raise CheckFailed(f"the unit's ExecStart does not start with a python: {argv[0]}")
        return [sys.executable, *argv[1:]]


def read_unit(text: str) -> Unit:
    """Parse the few settings of ``tiktok-minis@.service`` this check runs with."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())

    def one(key: str) -> str:
        found = values.get(key)
        if not found:
            raise CheckFailed(f"the systemd unit sets no {key}=")
        return found[-1]

    environment: dict[str, str] = {}
    for value in values.get("Environment", []):
        for assignment in shlex.split(value):
            name, _, setting = assignment.partition("=")
            environment[name] = setting
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s?", one("TimeoutStopSec"))
    if match is None:
        raise CheckFailed("the unit's TimeoutStopSec= is not a number of seconds")
    return Unit(
        exec_start=shlex.split(one("ExecStart")),
        environment=environment,
        kill_signal=signal.Signals[one("KillSignal")],
        timeout_stop=float(match.group(1)),
    )


def game_environment(production: dict[str, str], unit: Unit, standin_url: str) -> dict[str, str]:
    """The environment of a game process: this one without any TTMINIS_*, the unit's
    Environment=, the production settings env.example lists, and the stand-in's address."""
    listed = env_example_keys(ENV_EXAMPLE.read_text())
    unknown = sorted(set(listed) - set(production))
    if unknown:
        raise CheckFailed(f"env.example sets {', '.join(unknown)}, which the check cannot fill")
    unlisted = sorted(set(production) - set(listed))
    if unlisted:
        raise CheckFailed(f"env.example does not list {', '.join(unlisted)}")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TTMINIS_")}
    return {
        **inherited,
        **unit.environment,
        **production,
        # Not production settings: TikTok is the stand-in, and the address check's budget.
        "TTMINIS_API_BASE_URL": standin_url,
        **CHECK_ONLY_SETTINGS,
    }


# -- nginx: the site rendered from the template -------------------------------------------------

_LISTEN = re.compile(r"listen\s+(\S+)((?:\s+ssl)?)\s*;")
_UPSTREAM_SERVER = re.compile(r"server\s+127\.0\.0\.1:\d+((?:\s+[^;]*)?);")
_SERVER_NAME = re.compile(r"server_name\s+[^;]+;")
_CERTIFICATE = re.compile(r"(ssl_certificate(?:_key)?)\s+\S+;")


def render_site(
    template: str,
    *,
    upstream_ports: list[int],
    http_port: int,
    https_port: int,
    certificate: Path,
    key: Path,
) -> str:
    """The shipped site with its HTTPS lines on, listening on loopback ports for this run.

    Changes only what a deployer changes: the ``#https`` lines are uncommented and the
    ``http-only`` listens dropped, each listen moves to ``127.0.0.1`` (IPv6 ones dropped), the
    upstream lists ``upstream_ports`` with the template's options, the server name and the
    certificate paths are this run's. Anything it cannot find is a CheckFailed: the template
    changed shape and this check must follow.
    """
    out: list[str] = []
    counts = {"http-only": 0, "upstream": 0, "listen": 0, "ssl listen": 0, "certificate": 0}
    for raw in template.splitlines():
        line = raw
        if line.lstrip().startswith("#https "):
            line = line.replace("#https ", "", 1)
        code = line.split("#", 1)[0].strip()
        indent = line[: len(line) - len(line.lstrip())]
        if not code:
            out.append(line)
        elif "# http-only" in line:
            counts["http-only"] += 1
        elif match := _LISTEN.fullmatch(code):
            if match.group(1).startswith("["):
                continue  # this run listens on IPv4 loopback only
            tls = bool(match.group(2))
            counts["ssl listen" if tls else "listen"] += 1
            port = https_port if tls else http_port
            out.append(f"{indent}listen 127.0.0.1:{port}{' ssl' if tls else ''};")
        elif match := _UPSTREAM_SERVER.fullmatch(code):
            counts["upstream"] += 1
            if counts["upstream"] == 1:
                options = match.group(1)
                out.extend(f"{indent}server 127.0.0.1:{port}{options};" for port in upstream_ports)
        elif _SERVER_NAME.fullmatch(code):
            out.append(f"{indent}server_name {SERVER_NAME};")
        elif match := _CERTIFICATE.fullmatch(code):
            counts["certificate"] += 1
            path = key if match.group(1) == "ssl_certificate_key" else certificate
            out.append(f"{indent}{match.group(1)} {path};")
        else:
            out.append(line)
    expected = {"http-only": 2, "listen": 1, "ssl listen": 1, "certificate": 2}
    wrong = [f"{what}: {counts[what]}" for what, n in expected.items() if counts[what] != n]
    if counts["upstream"] < 1:
        wrong.append("no upstream server line")
    if wrong:
        raise CheckFailed(
            "the nginx template no longer has the shape this check renders ("
            + ", ".join(wrong)
            + ")"
        )
    return "\n".join(out) + "\n"


def nginx_main_config(directory: Path, site: Path) -> str:
    """A whole nginx.conf of this run's own: pid, logs and temp paths in ``directory``."""
    user = ""
    if os.geteuid() == 0:  # the workers must not run as root
        try:
            group = grp.getgrnam("nogroup").gr_name
        except KeyError:
            group = "nobody"
        user = f"user nobody {group};\n"
    temp = directory / "tmp"
    return (
        "# For one run of deploy/check.py only; the site is rendered from\n"
        "# deploy/nginx/tiktok-minis.conf.\n"
        f"{user}daemon off;\n"
        "worker_processes 1;\n"
        f"pid {directory}/nginx.pid;\n"
        f"error_log {directory}/error.log notice;\n"
        "events {\n    worker_connections 512;\n}\n"
        "http {\n"
        f"    access_log {directory}/access.log;\n"
        f"    client_body_temp_path {temp}/body;\n"
        f"    proxy_temp_path {temp}/proxy;\n"
        f"    fastcgi_temp_path {temp}/fastcgi;\n"
        f"    uwsgi_temp_path {temp}/uwsgi;\n"
        f"    scgi_temp_path {temp}/scgi;\n"
        f"    include {site};\n"
        "}\n"
    )


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, valid for a day, and its key (0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tiktok-minis deploy check")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def find_or_install_nginx() -> tuple[str, str]:
    """The nginx binary and its version; installs Debian's nginx when missing (root only)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    installed = ""
    if found is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise CheckFailed(
                "nginx is not installed, and this check installs it only as root with apt-get "
                "(run: apt-get install nginx)"
            )
        await install_nginx()
        found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
        if found is None:
            raise CheckFailed("apt-get installed nginx, but no nginx binary is on the PATH")
        installed = ", installed now"
    version = await run_quiet([found, "-v"])
    return found, version.strip().removeprefix("nginx version: ") + installed


async def install_nginx() -> None:
    """``apt-get install nginx``, waiting (up to 10 min) for another apt or dpkg to finish."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait_for_lock = ["-o", "DPkg::Lock::Timeout=600"]
    install = ["apt-get", *wait_for_lock, "install", "-y", "-q", "--no-install-recommends"]
    for attempt in ("cached lists", "fresh lists"):
        if attempt == "fresh lists":
            await run_quiet(["apt-get", *wait_for_lock, "update", "-q"], env=env, limit=600)
        try:
            await run_quiet([*install, "nginx"], env=env, limit=900)
            return
        except CheckFailed:
            if attempt == "fresh lists":
                raise


async def run_quiet(
    argv: list[str], *, env: dict[str, str] | None = None, limit: float = 60.0
) -> str:
    """Run a short command to its end: its output (stdout and stderr), CheckFailed if it fails."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), limit)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    text = out.decode(errors="replace")
    if process.returncode != 0:
        lines = [line for line in text.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {process.returncode}"
        raise CheckFailed(f"`{shlex.join(argv[:3])} ...` failed: {reason}")
    return text


# -- a player's Socket.IO client ---------------------------------------------------------------


class Client:
    """python-socketio's AsyncClient over the websocket transport, through nginx.

    ``source`` is the local address to connect from (another loopback address makes another
    client address). Pushes are awaited with :meth:`expect`, registered before the action.
    """

    def __init__(
        self,
        label: str,
        ssl_context: ssl.SSLContext,
        *,
        source: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.label = label
        self.headers = headers or {}
        self.port = 0  # the port of the game process it landed on, once known
        connector = aiohttp.TCPConnector(
            ssl=ssl_context, local_addr=(source, 0) if source else None
        )
        self.http = aiohttp.ClientSession(connector=connector)
        self.sio = socketio.AsyncClient(
            reconnection=False, handle_sigint=False, http_session=self.http
        )
        self.disconnected = asyncio.Event()
        self._waiters: list[tuple[str, Callable[[Any], bool], asyncio.Future[Any]]] = []
        self.sio.on("*", self._on_any)
        self.sio.on("disconnect", self._on_disconnect)

    async def connect(self, url: str, auth: dict[str, str] | None = None) -> None:
        try:
            await self.sio.connect(
                url,
                auth=auth,
                headers=self.headers,
                transports=["websocket"],
                wait_timeout=EVENT_WITHIN,
            )
        except socketio.exceptions.ConnectionError as exc:
            raise CheckFailed(f"{self.label} could not connect through nginx: {exc}") from None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), EVENT_WITHIN)
        await self.http.close()

    async def call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Emit ``event`` and return its ack."""
        try:
            ack = await self.sio.call(event, payload, timeout=EVENT_WITHIN)
        except socketio.exceptions.TimeoutError:
            raise CheckFailed(
                f"{self.label}'s {event} got no ack within {EVENT_WITHIN:g} s"
            ) from None
        if not isinstance(ack, dict):
            raise CheckFailed(f"{self.label}'s {event} was answered with {ack!r}")
        return ack

    async def call_ok(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        ack = await self.call(event, payload)
        if not ack.get("ok"):
            raise CheckFailed(f"{self.label}'s {event} failed: {json.dumps(ack)[:300]}")
        return ack

    def expect(self, event: str, predicate: Callable[[Any], bool]) -> asyncio.Future[Any]:
        """A future for the next push of ``event`` that satisfies ``predicate``."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append((event, predicate, future))
        return future

    async def _on_any(self, event: str, data: Any = None) -> None:
        for waiter in list(self._waiters):
            name, predicate, future = waiter
            if name == event and not future.done() and predicate(data):
                future.set_result(data)
                self._waiters.remove(waiter)

    async def _on_disconnect(self, *_reason: Any) -> None:
        self.disconnected.set()


def entry_of(update: Any, player_id: str) -> dict[str, Any] | None:
    """The board entry of ``player_id`` in a ``leaderboard:update`` payload, if any."""
    if not isinstance(update, dict) or update.get("board") != BOARD:
        return None
    for entry in update.get("entries") or []:
        if isinstance(entry, dict) and (entry.get("player") or {}).get("id") == player_id:
            return entry
    return None


def shows(player_id: str, name: str, score: int) -> Callable[[Any], bool]:
    """A predicate: the update shows ``player_id`` under ``name`` with ``score``."""

    def predicate(update: Any) -> bool:
        entry = entry_of(update, player_id)
        return (
            entry is not None
            and entry.get("score") == score
            and entry["player"].get("display_name") == name
        )

    return predicate


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Game:
    port: int
    child: Child
    url: str


class Deployment:
    """Everything one run starts, and the checks it runs against it."""

    def __init__(self, report: Report, stack: contextlib.AsyncExitStack, run_dir: Path) -> None:
        self.report = report
        self.stack = stack
        self.run_dir = run_dir
        self.logs = run_dir / "logs"
        self.logs.mkdir(mode=0o700)
        self.token = secrets.token_hex(4)
        self.http: aiohttp.ClientSession
        self.standin_url = ""
        self.games: list[Game] = []
        self.nginx_url = ""
        self.nginx_http_url = ""
        self.ssl_context = ssl.create_default_context()
        self.clients: list[Client] = []

    def cleanup(self, what: str, callback: Callable[[], Awaitable[object]]) -> None:
        """Run ``callback`` at teardown (in reverse order); a failure there is reported, and
        never hides the failure that ended the run."""

        async def guarded() -> None:
            started = time.perf_counter()
            try:
                await callback()
            except Exception as exc:  # noqa: BLE001 (reported in the summary)
                self.report.teardown_problems.append(f"{what}: {exc}")
            finally:
                self.report.teardown_times.append((what, time.perf_counter() - started))

        self.stack.push_async_callback(guarded)

    # -- the pieces ------------------------------------------------------------------------

    async def run(self) -> None:
        report = self.report
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=EVENT_WITHIN))
        self.cleanup("probes", self.http.close)
        unit = read_unit(SYSTEMD_UNIT.read_text())

        with report.step("nginx") as step:
            nginx, step.detail = await find_or_install_nginx()
        with report.step("systemd unit") as step:
            step.detail = await self.verify_unit()
        channel = f"ttminis-deploy-{self.token}"

        async def standin() -> None:
            with report.step("stand-in TikTok") as step:
                await self.start_standin()
                step.detail = self.standin_url

        async def storage() -> str:
            with report.step("PostgreSQL database") as step:
                database_url = await self.create_database()
                step.detail = database_url.rsplit("/", 1)[-1]
            with report.step("Redis") as step:
                await self.check_redis(channel)
                step.detail = f"{REDIS_URL}, channel {channel}"
            return database_url

        # Side by side: the stand-in's start is mostly Python importing the emulator.
        _, database_url = await asyncio.gather(standin(), storage())
        production = {
            "TTMINIS_CLIENT_KEY": SANDBOX_CLIENT_KEY,
            "TTMINIS_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
            "TTMINIS_SECRET_KEY": secrets.token_urlsafe(48),
            "TTMINIS_DATABASE_URL": database_url,
            "TTMINIS_REDIS_URL": REDIS_URL,
            "TTMINIS_REDIS_CHANNEL": channel,
            "TTMINIS_TRUSTED_PROXIES": "127.0.0.1",
        }
        env = game_environment(production, unit, self.standin_url)
        with report.step("python -m tiktok_minis migrate") as step:
            out = await run_quiet([sys.executable, "-m", "tiktok_minis", "migrate"], env=env)
            applied = json.loads(out.strip().splitlines()[-1])["applied"]
            step.detail = f"{len(applied)} migration(s) applied to the new database"
        with report.step(f"{GAME_PROCESSES} game processes ready") as step:
            await self.start_games(unit, env)
            step.detail = "ports " + ", ".join(str(game.port) for game in self.games)
        with report.step("nginx -t, then nginx") as step:
            await self.start_nginx(nginx)
            step.detail = f"{self.nginx_url} (redirect from {self.nginx_http_url})"
        with report.step("edge: redirect, health, /metrics private") as step:
            step.detail = await self.check_edge()

        with report.step("A and B on different processes") as step:
            player, watcher = await self.two_processes()
            step.detail = f"A on {player.port}, B on {watcher.port}"
        with report.step("Redis pub/sub link up on both") as step:
            await self.wait_for_links()
        with report.step("logins through nginx") as step:
            a_id, a_session = await self.login(player, "player-a")
            await self.login(watcher, "watcher-b")
        with report.step("score pushed across processes") as step:
            score = 1000 + secrets.randbelow(9000)
            await watcher.call_ok("leaderboard:join", {"board": BOARD})
            seen = watcher.expect("leaderboard:update", shows(a_id, PLACEHOLDER_NAME, score))
            ack = await player.call_ok("leaderboard:submit", {"board": BOARD, "score": score})
            if (ack.get("me") or {}).get("score") != score:
                raise CheckFailed(f"A's submit was acknowledged with {json.dumps(ack)[:200]}")
            await within(seen, EVENT_WITHIN, f"B's leaderboard:update with A's {score}")
            step.detail = f"B saw {PLACEHOLDER_NAME!r} with {score}"
        with report.step("consent pushed across processes") as step:
            name = await self.consent(player, watcher, a_id, score)
            step.detail = f"B saw {name!r}"
        with report.step("rename pushed across processes") as step:
            new_name = await self.rename(player, watcher, a_id, score)
            step.detail = f"B saw {new_name!r}"
        with report.step("client address behind nginx") as step:
            step.detail = await self.check_client_address(player.port)
        with report.step("rolling stop (SIGTERM, sockets open)") as step:
            step.detail = await self.rolling_stop(unit, player, a_session, new_name)

    async def verify_unit(self) -> str:
        """``systemd-analyze verify`` on the unit, its paths pointed at this checkout."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.report.notes.append("systemd-analyze is not installed: the unit was not verified")
            return "skipped (no systemd-analyze)"
        directory = self.run_dir / "systemd"
        directory.mkdir()
        text = SYSTEMD_UNIT.read_text().replace(
            "/opt/tiktok-minis/.venv/bin/python", sys.executable
        )
        (directory / SYSTEMD_UNIT.name).write_text(text.replace("/opt/tiktok-minis", str(ROOT)))
        instance = directory / SYSTEMD_UNIT.name.replace("@.", "@8081.")
        try:
            await run_quiet([analyze, "verify", str(instance)], limit=30)
        except CheckFailed as exc:
            raise CheckFailed(f"systemd-analyze verify: {exc}") from None
        return "systemd-analyze verify passed (paths of this checkout)"

    async def start_standin(self) -> None:
        child = await spawn(
            "stand-in TikTok",
            [sys.executable, str(STANDIN)],
            self.logs / "standin.log",
            stdout_pipe=True,
        )
        self.cleanup("stand-in TikTok", lambda: child.stop(signal.SIGTERM, 5.0))
        assert child.process.stdout is not None
        line = await within(child.process.stdout.readline(), READY_WITHIN, "the stand-in's start")
        try:
            self.standin_url = str(json.loads(line)["url"])
        except (ValueError, KeyError, TypeError):
            reason = last_line(child.log) or "no output"
            raise CheckFailed(f"the stand-in TikTok did not start: {reason}") from None
        async with self.http.get(f"{self.standin_url}/sandbox/") as answer:
            if answer.status != 200:
                raise CheckFailed(f"the stand-in's control routes answer {answer.status}")

    async def control(self, route: str, body: dict[str, str]) -> dict[str, Any]:
        """A control route of the stand-in: what a person does in the TikTok app."""
        async with self.http.post(f"{self.standin_url}/sandbox/{route}", json=body) as answer:
            data = await answer.json()
            if answer.status != 200 or not isinstance(data, dict):
                raise CheckFailed(f"the stand-in's /sandbox/{route} answered {answer.status}")
            return data

    async def create_database(self) -> str:
        name = f"ttminis_deploy_{self.token}"
        admin = f"postgres://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/postgres"
        try:
            connection = await asyncio.wait_for(asyncpg.connect(admin), EVENT_WITHIN)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise CheckFailed(
                f"PostgreSQL does not answer at {POSTGRES_HOST}:{POSTGRES_PORT} as user "
                f"{POSTGRES_USER}: {exc}"
            ) from None
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

        async def drop() -> None:
            connection = await asyncio.wait_for(asyncpg.connect(admin), EVENT_WITHIN)
            try:
                # FORCE: a game process killed mid-run may still hold a connection.
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await connection.close()

        self.cleanup("database drop", drop)
        return f"postgres://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"

    async def check_redis(self, channel: str) -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            await asyncio.wait_for(client.ping(), EVENT_WITHIN)
        except (OSError, TimeoutError, aioredis.RedisError) as exc:
            await client.aclose()
            raise CheckFailed(f"Redis does not answer at {REDIS_URL}: {exc}") from None

        async def forget_keys() -> None:
            try:
                keys = [key async for key in client.scan_iter(match=f"{channel}:*", count=500)]
                if keys:
                    await client.delete(*keys)
            finally:
                await client.aclose()

        self.cleanup("Redis keys", forget_keys)

    async def start_games(self, unit: Unit, env: dict[str, str]) -> None:
        self.games = list(
            await asyncio.gather(*(self.start_game(unit, env) for _ in range(GAME_PROCESSES)))
        )
        for game in self.games:
            async with self.http.get(f"{game.url}/healthz") as answer:
                health = await answer.json()
            if health.get("sandbox") is not False:
                raise CheckFailed(f"game process {game.port} runs in sandbox mode: {health}")

    async def start_game(self, unit: Unit, env: dict[str, str]) -> Game:
        """One game process, ready; on another free port if its port was taken meanwhile."""
        for attempt in range(1, PORT_TRIES + 1):
            port = free_port()
            log = self.logs / f"game-{port}.log"
            child = await spawn(f"game process {port}", unit.argv(port), log, env=env)
            self.cleanup(
                child.name, functools.partial(child.stop, unit.kill_signal, unit.timeout_stop)
            )
            game = Game(port, child, f"http://127.0.0.1:{port}")
            try:
                await self.wait_ready(game)
            except CheckFailed:
                if attempt < PORT_TRIES and "Cannot listen on" in log.read_text(errors="replace"):
                    continue  # another program took the port between the probe and the bind
                raise
            return game
        raise AssertionError("unreachable")

    async def wait_ready(self, game: Game) -> None:
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            if not game.child.running:
                reason = last_line(game.child.log) or "no output"
                raise CheckFailed(
                    f"game process {game.port} exited with {game.child.process.returncode} "
                    f"before it was ready: {reason}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                ready = f"{game.url}/ttminis/health/ready"
                async with self.http.get(ready, timeout=PROBE_TIMEOUT) as answer:
                    if answer.status == 200:
                        return
            await asyncio.sleep(POLL_EVERY)
        raise CheckFailed(f"game process {game.port} was not ready within {READY_WITHIN:g} s")

    async def start_nginx(self, nginx: str) -> None:
        directory = self.run_dir / "nginx"
        directory.mkdir()
        (directory / "tmp").mkdir()
        # The worker (nobody when this runs as root) reaches its temp paths through these.
        for path in (self.run_dir, directory, directory / "tmp"):
            path.chmod(0o755)

        # As shipped, verbatim: the syntax and the directives nginx knows (no port is bound).
        shipped = directory / "shipped"
        shipped.mkdir()
        (shipped / "tmp").mkdir()
        (shipped / "nginx.conf").write_text(nginx_main_config(shipped, NGINX_TEMPLATE))
        await self.nginx_test(nginx, shipped / "nginx.conf", "the shipped template")

        certificate, key = self_signed_certificate(directory)
        self.ssl_context = ssl.create_default_context(cafile=str(certificate))
        for attempt in range(1, PORT_TRIES + 1):
            try:
                await self.run_nginx(nginx, directory, certificate, key, attempt)
                return
            except CheckFailed:
                logs = (self.logs / f"nginx-{attempt}.log", directory / "error.log")
                text = "".join(path.read_text(errors="replace") for path in logs if path.exists())
                if attempt == PORT_TRIES or "Address already in use" not in text:
                    raise

    async def run_nginx(
        self, nginx: str, directory: Path, certificate: Path, key: Path, attempt: int
    ) -> None:
        """Render the site on fresh ports, ``nginx -t`` it, start nginx, wait until it serves."""
        https_port, http_port = free_port(), free_port()
        site = directory / "tiktok-minis.conf"
        site.write_text(
            render_site(
                NGINX_TEMPLATE.read_text(),
                upstream_ports=[game.port for game in self.games],
                http_port=http_port,
                https_port=https_port,
                certificate=certificate,
                key=key,
            )
        )
        config = directory / "nginx.conf"
        config.write_text(nginx_main_config(directory, site))
        await self.nginx_test(nginx, config, "the rendered site")

        argv = [nginx, "-p", str(directory), "-c", str(config)]
        child = await spawn("nginx", argv, self.logs / f"nginx-{attempt}.log")
        # SIGQUIT: a graceful stop; the stop falls back to SIGKILL after the grace.
        self.cleanup("nginx", functools.partial(child.stop, signal.SIGQUIT, 5.0))
        self.nginx_url = f"https://127.0.0.1:{https_port}"
        self.nginx_http_url = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            if not child.running:
                errors = [last_line(child.log), last_line(directory / "error.log")]
                reason = next((line for line in errors if "[emerg]" in line), errors[0])
                raise CheckFailed(f"nginx exited with {child.process.returncode}: {reason}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.http.get(
                    f"{self.nginx_url}/ttminis/health/live",
                    ssl=self.ssl_context,
                    timeout=PROBE_TIMEOUT,
                ) as answer:
                    if answer.status == 200:
                        return
            await asyncio.sleep(POLL_EVERY)
        raise CheckFailed(f"nginx did not answer within {READY_WITHIN:g} s")

    async def nginx_test(self, nginx: str, config: Path, what: str) -> None:
        try:
            await run_quiet([nginx, "-t", "-q", "-p", str(config.parent), "-c", str(config)])
        except CheckFailed as exc:
            raise CheckFailed(f"nginx -t refused {what}: {exc}") from None

    async def check_edge(self) -> str:
        """What nginx itself answers: the HTTPS redirect, health, and /metrics kept private."""

        async def status(url: str) -> tuple[int, str]:
            tls: ssl.SSLContext | bool = self.ssl_context if url.startswith("https:") else True
            async with self.http.get(URL(url, encoded=True), ssl=tls, allow_redirects=False) as r:
                return r.status, r.headers.get("Location", "")

        code, location = await status(f"{self.nginx_http_url}/leaderboard?x=1")
        if code != 301 or location != "https://127.0.0.1/leaderboard?x=1":
            raise CheckFailed(f"plain HTTP answered {code} {location!r}, not a redirect to https")
        code, _ = await status(f"{self.nginx_http_url}/.well-known/acme-challenge/probe")
        if code != 404:
            raise CheckFailed(f"the ACME challenge path answered {code}, not 404 (unredirected)")
        for path in ("/ttminis/health/live", "/ttminis/health/ready"):
            if (code := (await status(self.nginx_url + path))[0]) != 200:
                raise CheckFailed(f"{path} through nginx answered {code}")
        for path in ("/metrics", "/metrics?name=x", "//metrics", "/%6Detrics"):
            if (code := (await status(self.nginx_url + path))[0]) != 403:
                raise CheckFailed(f"{path} through nginx answered {code}, not 403")
        if (code := (await status(f"{self.games[0].url}/metrics"))[0]) != 200:
            raise CheckFailed(f"/metrics on the process itself answered {code}")
        if (code := (await status(f"{self.nginx_url}/ttminis/sandbox/"))[0]) != 404:
            raise CheckFailed(f"the sandbox routes answer {code} in production mode")
        return "301 to https, health 200, /metrics 403 (200 on the process), no sandbox routes"

    async def metric(self, game: Game, name: str) -> float | None:
        """One sample of ``name`` read from the process directly (never through nginx)."""
        async with self.http.get(f"{game.url}/metrics") as answer:
            text = await answer.text()
        match = re.search(rf"^{name}(?:{{}})? (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else None

    async def sockets_by_process(self) -> dict[int, float]:
        counts = await asyncio.gather(
            *(self.metric(game, "ttminis_connected_sockets") for game in self.games)
        )
        return {game.port: count or 0.0 for game, count in zip(self.games, counts, strict=True)}

    async def connect(
        self,
        label: str,
        wanted: set[int] | None = None,
        *,
        source: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Client:
        """A client through nginx on one of the ``wanted`` processes (any when None).

        Which process a socket reached is read from each process's connected-sockets gauge
        before and after it connects. A socket that reached another process stays connected
        (a spectator) so the gauges keep meaning that.
        """
        for _ in range(2 * GAME_PROCESSES + 2):
            before = await self.sockets_by_process()
            client = Client(label, self.ssl_context, source=source, headers=headers)
            self.clients.append(client)
            await client.connect(self.nginx_url)
            after = await self.sockets_by_process()
            grew = [port for port in before if after[port] != before[port]]
            if len(grew) != 1 or after[grew[0]] != before[grew[0]] + 1:
                raise CheckFailed(f"cannot tell where {label} connected: {before} -> {after}")
            client.port = grew[0]
            if wanted is None or client.port in wanted:
                return client
            client.label = f"a spare socket ({label}'s try)"
        raise CheckFailed(
            f"{label} never reached the process(es) {sorted(wanted or [])}: does the upstream "
            "hash clients (ip_hash)? This check needs the template's round-robin"
        )

    async def two_processes(self) -> tuple[Client, Client]:
        player = await self.connect("player A")
        others = {game.port for game in self.games} - {player.port}
        watcher = await self.connect("watcher B", others)
        return player, watcher

    async def wait_for_links(self) -> None:
        """Each process subscribes to the Redis channel once it has a socket: wait for it."""
        deadline = time.monotonic() + READY_WITHIN
        for game in self.games:
            while await self.metric(game, "ttminis_redis_link_up") != 1.0:
                if time.monotonic() > deadline:
                    raise CheckFailed(f"process {game.port} never subscribed to Redis")
                await asyncio.sleep(POLL_EVERY)

    async def login(self, client: Client, device: str) -> tuple[str, str]:
        code = (await self.control("login", {"device": device}))["code"]
        ack = await client.call_ok("tiktok:login", {"code": code})
        player = ack.get("player") or {}
        if player.get("display_name") != PLACEHOLDER_NAME or player.get("placeholder") is not True:
            raise CheckFailed(f"{client.label} logged in as {player!r}, not the placeholder")
        return str(player["id"]), str(ack["session"])

    async def consent(self, player: Client, watcher: Client, a_id: str, score: int) -> str:
        """A presses Allow; the game fetches the profile; B sees A's real name."""
        name = str((await self.control("profile", {"device": "player-a"}))["display_name"])
        code = (await self.control("authorize", {"device": "player-a"}))["code"]
        seen = watcher.expect("leaderboard:update", shows(a_id, name, score))
        ack = await player.call_ok("tiktok:authorize", {"granted": True, "code": code})
        me = ack.get("player") or {}
        if me.get("display_name") != name or me.get("consent") != "granted":
            raise CheckFailed(f"A's authorize answered {me!r}, not {name!r} granted")
        await within(seen, EVENT_WITHIN, f"B's leaderboard:update with A's name {name!r}")
        avatar = str(me.get("avatar_url"))
        if avatar.startswith("/ttminis/static/"):
            self.report.notes.append(
                "A's avatar is the default one: outside sandbox mode the plugin refuses to "
                "download avatars from loopback addresses (the stand-in's), as it should"
            )
        return name

    async def rename(self, player: Client, watcher: Client, a_id: str, score: int) -> str:
        """A renames themselves on TikTok; the game fetches again; B sees the new name."""
        new_name = f"Renamed {self.token}"
        await self.control("profile", {"device": "player-a", "display_name": new_name})
        seen = watcher.expect("leaderboard:update", shows(a_id, new_name, score))
        ack = await player.call_ok("tiktok:authorize", {"granted": True})
        if (ack.get("player") or {}).get("display_name") != new_name:
            raise CheckFailed(f"A's second authorize answered {ack.get('player')!r}")
        await within(seen, EVENT_WITHIN, f"B's leaderboard:update with A's new name {new_name!r}")
        return new_name

    async def check_client_address(self, port: int) -> str:
        """The plugin charges failed logins to the real client's address, not nginx's.

        Clients connect from 127.0.0.2 and 127.0.0.3 (nginx connects to the games from
        127.0.0.1, the trusted proxy). 127.0.0.2 spends its failed-login budget; then
        127.0.0.3 still gets ``login_failed`` (another address), while 127.0.0.2 is refused on
        a new socket even when it claims another address in X-Forwarded-For itself.
        """
        if not (can_bind("127.0.0.2") and can_bind("127.0.0.3")):
            self.report.notes.append("127.0.0.2/3 cannot be bound here: client address skipped")
            return "skipped (no 127.0.0.2/127.0.0.3 on this machine)"
        junk = iter(f"not-a-code-{self.token}-{n}" for n in range(100))

        async def junk_login(client: Client) -> str:
            ack = await client.call("tiktok:login", {"code": next(junk)})
            code = (ack.get("error") or {}).get("code")
            return str(code) if not ack.get("ok") else "ok"

        first = await self.connect("client at 127.0.0.2", {port}, source="127.0.0.2")
        outcomes = [await junk_login(first) for _ in range(ADDRESS_BURST + 1)]
        if outcomes != ["login_failed"] * ADDRESS_BURST + ["rate_limited"]:
            raise CheckFailed(f"junk logins from 127.0.0.2 answered {outcomes}")
        second = await self.connect("client at 127.0.0.3", {port}, source="127.0.0.3")
        if (outcome := await junk_login(second)) != "login_failed":
            raise CheckFailed(
                f"127.0.0.3 got {outcome} after 127.0.0.2 spent its budget: the plugin does not "
                "tell clients behind nginx apart (X-Forwarded-For not honoured?)"
            )
        forged = await self.connect(
            "client at 127.0.0.2 claiming 198.51.100.23",
            {port},
            source="127.0.0.2",
            headers={"X-Forwarded-For": "198.51.100.23"},
        )
        if (outcome := await junk_login(forged)) != "rate_limited":
            raise CheckFailed(f"a forged X-Forwarded-For bought a new budget ({outcome})")
        return "127.0.0.2 limited, 127.0.0.3 not, a forged X-Forwarded-For ignored"

    async def rolling_stop(self, unit: Unit, player: Client, session: str, name: str) -> str:
        """Stop A's process as systemd would; A resumes on the other; then stop that one."""
        first = next(game for game in self.games if game.port == player.port)
        second = next(game for game in self.games if game.port != player.port)
        stopped = []
        for game in (first, second):
            on_it = [c for c in self.clients if c.port == game.port and not c.disconnected.is_set()]
            status, seconds = await game.child.stop(unit.kill_signal, unit.timeout_stop)
            if status != 0:
                raise CheckFailed(
                    f"game process {game.port} exited with {status} after {unit.kill_signal.name} "
                    f"({seconds:.1f} s): {last_line(game.child.log)}"
                )
            await within(
                asyncio.gather(*(c.disconnected.wait() for c in on_it)),
                EVENT_WITHIN,
                f"the disconnect of process {game.port}'s sockets",
            )
            stopped.append(f"{game.port} exit 0 in {seconds:.1f} s ({len(on_it)} sockets)")
            if game is first:
                resumed = Client("player A, resuming", self.ssl_context)
                self.clients.append(resumed)
                await resumed.connect(self.nginx_url, auth={"session": session})
                resumed.port = second.port
                me = (await resumed.call_ok("tiktok:me", {})).get("player") or {}
                if me.get("display_name") != name:
                    raise CheckFailed(f"A's resumed session on {second.port} is {me!r}")
                stopped.append(f"A resumed on {second.port}")
        return "; ".join(stopped)


async def check(report: Report) -> None:
    """Run the deployment and tear it down, whatever happens; CheckFailed says what failed."""
    run_dir = Path(tempfile.mkdtemp(prefix="ttminis-deploy-"))
    passed = False
    try:
        stack = contextlib.AsyncExitStack()
        deployment = Deployment(report, stack, run_dir)
        try:
            await deployment.run()
            passed = True
        except CheckFailed:
            raise
        except Exception as exc:
            failing = next((step.name for step in report.steps if not step.ok), "setup")
            raise CheckFailed(f"{failing}: {type(exc).__name__}: {exc}") from exc
        finally:
            with report.step("teardown") as step:
                started = time.perf_counter()
                await asyncio.gather(*(client.close() for client in deployment.clients))
                report.teardown_times.append(("clients", time.perf_counter() - started))
                await stack.aclose()
                step.detail = ", ".join(
                    f"{what} {seconds:.2f}" for what, seconds in report.teardown_times
                )
                if report.teardown_problems and passed:  # else the run's own failure is the news
                    passed = False
                    raise CheckFailed("teardown: " + "; ".join(report.teardown_problems))
    finally:
        if passed or not any((run_dir / "logs").glob("*")):
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            report.notes.append(f"the logs of this run are kept in {run_dir}")


def main() -> int:
    """Run the check; the exit status (0 passed, 1 failed, 130 interrupted)."""
    report = Report()
    started = time.perf_counter()
    try:
        asyncio.run(check(report))
    except CheckFailed as exc:
        report.print_summary(time.perf_counter() - started, passed=False)
        sys.stdout.flush()
        print(f"deploy check failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        report.print_summary(time.perf_counter() - started, passed=False)
        sys.stdout.flush()
        print("deploy check interrupted; everything it started was stopped", file=sys.stderr)
        return 130
    report.print_summary(time.perf_counter() - started, passed=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
