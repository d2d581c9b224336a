"""Logins/s and ack latency of the example server against a bare handler, four processes.

Run: ``python -m bench login [--clients 100] [--logins 40] [--databases sqlite,postgres]
[--rounds 3] [--sequential 200] [--postgres URL] [--profile DIR]``.

The target, with default settings on two cores: at least 1,000 logins/s on SQLite, and at
most 2.0x the time of a bare handler (aim for 1.3x). Every process listens on 127.0.0.1 only:

- the TikTok emulator (``bench/_login_tiktok.py``): ``SandboxServer`` plus a bench route that
  mints login codes in bulk (each code single use, each of a new user); its own capacity is
  measured first by POSTing code exchanges straight at its token endpoint;
- the bare baseline (``bench/_login_bare.py``): a python-socketio ``AsyncServer`` on aiohttp
  with one ``tiktok:login`` handler making the same token call with one shared
  ``aiohttp.ClientSession``, acking ``{"ok": true, "open_id": ...}``, no database: what a game
  would write instead of the plugin;
- the plugin: ``python -m example_server`` in real-credential mode (``TTMINIS_CLIENT_KEY``,
  ``TTMINIS_CLIENT_SECRET``, ``TTMINIS_SECRET_KEY``, ``TTMINIS_API_BASE_URL`` at the emulator),
  every other setting at its default (INFO logs included, to a file), on SQLite (a temporary
  file) and on PostgreSQL (a database ``ttminis_bench_<random>`` created on the server of
  ``--postgres`` and dropped afterwards);
- the client process (``bench/_login_client.py``): ``--clients`` Socket.IO clients over
  websocket, each logging in ``--logins`` times one after another with fresh codes, after one
  uncounted warm-up login each; before that, ``--sequential`` logins one at a time on
  connections of their own (20 per connection: within the per-connection event budget).

Per database the bare handler and the plugin take the same client load one after the other,
``--rounds`` times (fresh connections each time); every round's logins/s are listed and the
round of the median time ratio is shown in full. Each client and each sequential connection
comes from its own loopback address (127.0.1.1, 127.0.1.2, ...), as players of a real storm
do: the plugin also limits logins per client address, concurrent ones included.

Printed: logins/s of the storm (successful logins over the wall time from its start to its last
ack), ack mean/p50/p99, the one-client latency, failed acks by code (``rate_limited``
included), CPU milliseconds per login of the game server, the emulator and the client (with
the rate one whole core would give the server at that cost), how busy each process, the
machine's other processes and the whole machine were, and the ratios plugin/bare: time per
login (inverse throughput), mean ack and one-client p50. With
``--profile DIR`` py-spy records the bare handler and the plugin server during their runs
(DIR/bare-<database>.json, DIR/login-<database>.json for the first round, then ``-2``,
``-3``...; speedscope; sampling slows them a little). The machines are shared and noisy;
nothing is asserted. A default run takes about a minute and a half.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench._login_procs import Service, free_port, run_client
from tiktok_minis.settings import SANDBOX_CLIENT_KEY, SANDBOX_CLIENT_SECRET

_DATABASES = ("sqlite", "postgres")
_DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
_PER_CONNECTION = 20  # sequential logins per connection: half the default burst of 40
_TARGET_RATE = 1000.0
_TARGET_RATIO = 2.0
_AIM_RATIO = 1.3


# -- the databases -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _database(kind: str, folder: Path, admin_url: str) -> AsyncIterator[tuple[str, str]]:
    """A fresh database of ``kind`` for one plugin run: (its URL, a description)."""
    if kind == "sqlite":
        path = folder / "login.sqlite3"
        yield f"sqlite://{path}", f"SQLite (a temporary file, {path.name})"
        return
    import asyncpg  # only needed for PostgreSQL

    name = f"ttminis_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(admin_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}")), f"PostgreSQL (database {name})"
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# -- the profiler --------------------------------------------------------------------------------


@contextlib.contextmanager
def _profiled(pid: int, output: Path | None) -> Iterator[None]:
    """py-spy recording ``pid`` for the body of the ``with`` (nothing when ``output`` is None)."""
    if output is None:
        yield
        return
    py_spy = Path(sys.executable).parent / "py-spy"
    argv = [str(py_spy), "record", "--pid", str(pid), "--format", "speedscope"]
    argv += ["--output", str(output), "--rate", "200", "--nonblocking", "--threads"]
    recorder = subprocess.Popen(  # noqa: S603 (our own tool, our own arguments)
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(1.0)  # let it attach before the load starts
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait(5)


# -- the runs ------------------------------------------------------------------------------------


def _client_args(url: str, args: argparse.Namespace, watch: dict[str, int]) -> list[str]:
    """The client process's arguments for one run of logins against ``url``."""
    argv = ["logins", "--url", url, "--codes", args.codes_url]
    argv += ["--clients", str(args.clients), "--logins", str(args.logins)]
    argv += ["--sequential", str(args.sequential), "--per-connection", str(_PER_CONNECTION)]
    for name, pid in watch.items():
        argv += ["--watch", f"{name}={pid}"]
    return [*argv, "--watch-name", "postgres"]


async def _emulator_capacity(args: argparse.Namespace, emulator: Service, log: Path) -> Any:
    """Code exchanges straight at the emulator, from the client process: its own capacity."""
    argv = ["emulator", "--api", args.api_url, "--codes", args.codes_url]
    argv += ["--requests", str(args.emulator_requests), "--concurrency", "64"]
    argv += ["--watch", f"emulator={emulator.pid}"]
    return await run_client(argv, log)


async def _run(args: argparse.Namespace) -> None:
    print("command: " + shlex.join([Path(sys.executable).name, "-m", "bench", "login", *args.argv]))
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the run; "
        "every process on 127.0.0.1"
    )
    with tempfile.TemporaryDirectory(prefix="ttminis-login-") as tmp:
        folder = Path(tmp)
        api_port, control_port = free_port(), free_port()
        args.api_url = f"http://127.0.0.1:{api_port}"
        args.codes_url = f"http://127.0.0.1:{control_port}/codes"
        emulator = Service(
            "the emulator",
            ["bench._login_tiktok", "--port", str(api_port), "--control-port", str(control_port)],
            health_url=f"http://127.0.0.1:{control_port}/healthz",
            log_path=folder / "emulator.log",
        )
        bare_port = free_port()
        bare = Service(
            "the bare handler",
            ["bench._login_bare", "--port", str(bare_port), "--api", args.api_url],
            health_url=f"http://127.0.0.1:{bare_port}/healthz",
            log_path=folder / "bare.log",
        )
        try:
            await emulator.start()
            capacity = await _emulator_capacity(args, emulator, folder / "client.log")
            _print_capacity(args, capacity)
            await bare.start()
            for kind in args.databases:
                try:
                    await _one_database(kind, args, folder, emulator, bare, capacity)
                except OSError as exc:  # PostgreSQL not reachable: say so, go on
                    print(f"\n== {kind}: skipped, cannot reach {args.postgres}: {exc} ==")
        finally:
            bare.stop()
            emulator.stop()


async def _one_database(
    kind: str,
    args: argparse.Namespace,
    folder: Path,
    emulator: Service,
    bare: Service,
    capacity: dict[str, Any],
) -> None:
    client_log = folder / "client.log"
    bare_url = bare.health_url.removesuffix("/healthz")
    async with _database(kind, folder, args.postgres) as (url, description):
        port = free_port()
        plugin = Service(
            f"the example server on {kind}",
            ["example_server", "--host", "127.0.0.1", "--port", str(port)],
            health_url=f"http://127.0.0.1:{port}/healthz",
            log_path=folder / f"plugin-{kind}.log",
            env={
                "TTMINIS_CLIENT_KEY": SANDBOX_CLIENT_KEY,
                "TTMINIS_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
                "TTMINIS_SECRET_KEY": secrets.token_urlsafe(48),
                "TTMINIS_DATABASE_URL": url,
                "TTMINIS_API_BASE_URL": args.api_url,
            },
        )
        profile = args.profile / f"login-{kind}.json" if args.profile else None
        bare_profile = args.profile / f"bare-{kind}.json" if args.profile else None
        rounds: list[tuple[dict[str, Any], dict[str, Any]]] = []
        try:
            ready = await plugin.start()
            for _ in range(args.rounds):
                # The same load on both, one right after the other: the machine's noise changes.
                with _profiled(bare.pid, bare_profile):
                    base = await run_client(
                        _client_args(
                            bare_url, args, {"server": bare.pid, "emulator": emulator.pid}
                        ),
                        client_log,
                    )
                with _profiled(plugin.pid, profile):
                    ours = await run_client(
                        _client_args(
                            f"http://127.0.0.1:{port}",
                            args,
                            {"server": plugin.pid, "emulator": emulator.pid},
                        ),
                        client_log,
                    )
                rounds.append((base, ours))
                if profile is not None and bare_profile is not None:
                    profile = profile.with_name(f"login-{kind}-{len(rounds) + 1}.json")
                    bare_profile = bare_profile.with_name(f"bare-{kind}-{len(rounds) + 1}.json")
        finally:
            plugin.stop()
        levels = plugin.log_levels()
    # Shown: the round of the median time ratio, every round's ratio beside it.
    ratios = [_rate(b["storm"]) / _rate(o["storm"]) for b, o in rounds]
    order = sorted(range(len(rounds)), key=lambda i: ratios[i])
    shown = order[(len(order) - 1) // 2]
    base, ours = rounds[shown]
    print()
    print(f"== {description}: the example server ready in {ready:.1f} s ==")
    if len(rounds) > 1:
        listed = ", ".join(
            f"{_rate(o['storm']):,.0f}/s vs {_rate(b['storm']):,.0f}/s = {r:.2f}x"
            for (b, o), r in zip(rounds, ratios, strict=True)
        )
        print(f"rounds (plugin vs bare logins/s = time ratio): {listed}; round {shown + 1} shown")
    _print_database(description, args, base, ours, capacity, levels, profile is not None)


# -- the report ----------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    """Seconds as milliseconds, ``-`` for none."""
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.2f} ms"


def _ratio(ours: float, theirs: float) -> str:
    """``ours / theirs`` as ``1.23x``, ``-`` when either is missing."""
    if not theirs or math.isnan(ours) or math.isnan(theirs):
        return "-"
    return f"{ours / theirs:.2f}x"


def _failures(result: dict[str, Any]) -> str:
    """The failed acks by code, or ``none``."""
    failures = result["failures"]
    if not failures:
        return "none"
    return ", ".join(f"{code} {count}" for code, count in sorted(failures.items()))


def _rate(storm: dict[str, Any]) -> float:
    """Successful logins per second of wall time (failed acks do not count)."""
    return storm["count"] / storm["wall"] if storm["wall"] and storm["count"] else math.nan


def _print_capacity(args: argparse.Namespace, capacity: dict[str, Any]) -> None:
    rate = capacity["count"] / capacity["wall"]
    cpu = capacity["cpu"]["emulator"]
    per = cpu / capacity["count"] if capacity["count"] else math.nan
    busy = cpu / capacity["wall"]
    print()
    print(
        f"TikTok emulator alone: {args.emulator_requests:,} code exchanges POSTed straight at its "
        "token endpoint, 64 in flight, from the client process"
    )
    client_busy = capacity["cpu"]["client"] / capacity["wall"]
    print(
        f"  {rate:,.0f} exchanges/s, ack p50 {_ms(capacity['p50'])}, p99 {_ms(capacity['p99'])}; "
        f"failures: {_failures(capacity)}"
    )
    print(
        f"  emulator CPU {per * 1000:.3f} ms per exchange, {busy:.0%} of a core busy (the "
        f"client process {client_busy:.0%}): its CPU allows ~{1 / per:,.0f} exchanges/s on one "
        "core; the rate above is the client's and the machine's limit, not the emulator's"
        if busy < 0.8
        else f"  emulator CPU {per * 1000:.3f} ms per exchange, {busy:.0%} of a core busy: "
        "the rate above is the emulator's own limit"
    )


def _print_database(
    description: str,
    args: argparse.Namespace,
    base: dict[str, Any],
    ours: dict[str, Any],
    capacity: dict[str, Any],
    levels: dict[str, int],
    profiled: bool,
) -> None:
    bs, os_ = base["storm"], ours["storm"]
    bq, oq = base["sequential"], ours["sequential"]
    b_rate, o_rate = _rate(bs), _rate(os_)
    print(
        f"storm: {args.clients} clients x {args.logins} logins one after another "
        f"({args.clients * args.logins:,} logins, fresh codes, new players), after 1 warm-up "
        f"login per client; 1 client: {args.sequential} logins one at a time "
        f"({bq['connections']} connections in turn)"
    )
    rows: list[tuple[str, str, str, str]] = [
        ("storm logins/s", f"{b_rate:,.0f}", f"{o_rate:,.0f}", _ratio(b_rate, o_rate)),
        (
            "  time per login (wall/logins)",
            _ms(1 / b_rate),
            _ms(1 / o_rate),
            _ratio(1 / o_rate, 1 / b_rate),
        ),
        ("  ack mean", _ms(bs["mean"]), _ms(os_["mean"]), _ratio(os_["mean"], bs["mean"])),
        ("  ack p50", _ms(bs["p50"]), _ms(os_["p50"]), _ratio(os_["p50"], bs["p50"])),
        ("  ack p99", _ms(bs["p99"]), _ms(os_["p99"]), _ratio(os_["p99"], bs["p99"])),
        ("  failed acks", _failures(bs), _failures(os_), ""),
        ("1 client: ack mean", _ms(bq["mean"]), _ms(oq["mean"]), _ratio(oq["mean"], bq["mean"])),
        ("  ack p50", _ms(bq["p50"]), _ms(oq["p50"]), _ratio(oq["p50"], bq["p50"])),
        ("  ack p99", _ms(bq["p99"]), _ms(oq["p99"]), _ratio(oq["p99"], bq["p99"])),
        ("  failed acks", _failures(bq), _failures(oq), ""),
    ]
    for name in ("server", "emulator", "client", "postgres"):
        b_cpu, o_cpu = bs["cpu"][name] / bs["count"], os_["cpu"][name] / os_["count"]
        shown_name = "PostgreSQL server" if name == "postgres" else name
        label = "storm CPU per login: " + name if name == "server" else "  " + shown_name
        rows.append((label, _ms(b_cpu), _ms(o_cpu), _ratio(o_cpu, b_cpu)))
    b_ceiling = bs["count"] / bs["cpu"]["server"] if bs["cpu"]["server"] else math.nan
    o_ceiling = os_["count"] / os_["cpu"]["server"] if os_["cpu"]["server"] else math.nan
    rows.append(
        (
            "  1 core / server CPU per login",
            f"{b_ceiling:,.0f}/s",
            f"{o_ceiling:,.0f}/s",
            _ratio(b_ceiling, o_ceiling),
        )
    )
    for name in ("server", "emulator", "client"):
        label = "storm CPU busy: " + name if name == "server" else "  " + name
        rows.append(
            (
                label,
                f"{bs['cpu'][name] / bs['wall']:.0%} of a core",
                f"{os_['cpu'][name] / os_['wall']:.0%} of a core",
                "",
            )
        )

    def others(storm: dict[str, Any]) -> str:
        cpu = storm["cpu"]
        rest = cpu["machine"] - cpu["server"] - cpu["emulator"] - cpu["client"] - cpu["postgres"]
        return f"{max(0.0, rest) / storm['wall']:.0%} of a core"

    rows.append(
        (
            "  PostgreSQL server processes",
            f"{bs['cpu']['postgres'] / bs['wall']:.0%} of a core",
            f"{os_['cpu']['postgres'] / os_['wall']:.0%} of a core",
            "",
        )
    )
    rows.append(("  other processes (kernel threads too)", others(bs), others(os_), ""))
    rows.append(
        (
            "  whole machine (all processes)",
            f"{bs['cpu']['machine'] / bs['wall']:.2f} of {os.cpu_count()} cores",
            f"{os_['cpu']['machine'] / os_['wall']:.2f} of {os.cpu_count()} cores",
            "",
        )
    )
    print(f"  {'':38} {'bare handler':>16} {'plugin':>16} {'plugin/bare':>12}")
    for label, b, o, r in rows:
        print(f"  {label:38} {b:>16} {o:>16} {r:>12}")
    noted = ", ".join(f"{level} {count}" for level, count in sorted(levels.items()))
    print(f"  the example server's log lines by level: {noted or 'none'}")
    for who, result in (("bare handler", base), ("plugin", ours)):
        for phase in ("storm", "sequential"):
            for code, message in result[phase].get("messages", {}).items():
                print(f"  {who}, {phase}: first {code} ack said: {message}")
    emulator_busy = os_["cpu"]["emulator"] / os_["wall"]
    per_call = capacity["cpu"]["emulator"] / capacity["count"] if capacity["count"] else 0.0
    ceiling = 1 / per_call if per_call else math.inf
    verdict = (
        "it may be the bottleneck here"
        if emulator_busy > 0.8 or o_rate > 0.8 * ceiling
        else "not the bottleneck"
    )
    print(
        f"  the emulator was {emulator_busy:.0%} of a core busy during the plugin's storm "
        f"({o_rate:,.0f} token calls/s; its CPU allows ~{ceiling:,.0f}/s): {verdict}"
    )
    ratio = (1 / o_rate) / (1 / b_rate)
    mean_ratio = os_["mean"] / bs["mean"]
    rate_verdict = "met" if o_rate >= _TARGET_RATE else "not met"
    ratio_verdict = "met" if max(ratio, mean_ratio) <= _TARGET_RATIO else "not met"
    aim_verdict = "reached" if max(ratio, mean_ratio) <= _AIM_RATIO else "not reached"
    if description.startswith("SQLite"):
        print(f"  target >= {_TARGET_RATE:,.0f} logins/s on SQLite: {o_rate:,.0f} ({rate_verdict})")
    print(
        f"  target <= {_TARGET_RATIO}x the bare handler's time: {ratio:.2f}x by throughput, "
        f"{mean_ratio:.2f}x by mean ack ({ratio_verdict}; the {_AIM_RATIO}x aim {aim_verdict})"
    )
    if profiled:
        print(
            f"  profiles: {args.profile}/login-*.json (plugin), {args.profile}/bare-*.json (bare)"
        )


def main(argv: list[str]) -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench login", description=__doc__)
    parser.add_argument("--clients", type=int, default=100, help="clients in the storm (100)")
    parser.add_argument("--logins", type=int, default=40, help="logins per storm client (40)")
    parser.add_argument(
        "--databases",
        default=",".join(_DATABASES),
        help="comma-separated, of sqlite and postgres (both)",
    )
    parser.add_argument("--sequential", type=int, default=200, help="one-at-a-time logins (200)")
    parser.add_argument(
        "--emulator-requests", type=int, default=3000, help="code exchanges at the emulator (3000)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="bare-then-plugin runs per database (3)"
    )
    parser.add_argument("--postgres", default=_DEFAULT_POSTGRES, help="the PostgreSQL server")
    parser.add_argument("--profile", type=Path, help="py-spy the plugin server into this folder")
    args = parser.parse_args(argv)
    args.argv = argv
    args.databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    unknown = sorted(set(args.databases) - set(_DATABASES))
    if unknown or not args.databases:
        parser.error(f"--databases takes sqlite and/or postgres, not {', '.join(unknown)}")
    for name in ("clients", "logins", "sequential", "emulator_requests", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    asyncio.run(_run(args))
