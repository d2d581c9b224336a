"""A board of a million players over the wire: submit, rank, around and join against a no-op.

Run: ``python -m bench leaderboard [--players 1000000] [--deployments sqlite-memory,sqlite-db,
pg-redis,pg-db] [--seconds 5] [--samples 2000] [--profile DIR]``.

The target (p99 over an acked no-op on the same connection, players spread over the whole
board): submit, a player's rank, around and join each at most 5 ms, on SQLite with the
in-process rank index and on PostgreSQL with the Redis one. Four deployments, the two
"before" ones counting ranks in the database as the plugin did before the index existed:

- ``sqlite-memory``: SQLite, ``TTMINIS_RANK_INDEX=memory``;
- ``sqlite-db``: SQLite, ``TTMINIS_RANK_INDEX=database`` (before);
- ``pg-redis``: PostgreSQL, ``TTMINIS_RANK_INDEX=redis`` with ``TTMINIS_REDIS_URL`` and a
  channel of its own. Skipped, saying why, when ``RedisRankIndex`` cannot be imported;
- ``pg-db``: PostgreSQL and the same Redis for pub/sub, ranks counted (before).

Each database (a temporary SQLite file; a PostgreSQL database ``ttminis_bench_<random>``
created on the server of ``--postgres``, default ``postgres://postgres@127.0.0.1:5432/postgres``,
and dropped afterwards) is migrated by the server's own migrations and bulk-loaded with
``--players`` players and their scores on board ``global`` (see ``bench/_leaderboard_load.py``);
both deployments of a database share it. Then, per deployment:

1. the example server starts in a process of its own (``python -m example_server --sandbox``,
   per-connection event limits raised); the time to ``/healthz`` and, with an index, until the
   server logs ``rank index loaded`` (its ``seconds`` field: the load itself);
2. meanwhile a client process logs new players in one after another (login, submit, join,
   around): how many were served before the index was in, and how fast;
3. the server's RSS (``VmRSS``, peak ``VmHWM``) at ``/healthz``, once loaded and at the end;
   for Redis, ``MEMORY USAGE`` of the run's keys and the change of ``used_memory``;
4. 50 players (``--clients``) log in and submit a score drawn uniformly from the loaded range,
   so their ranks spread over the whole board; then, from that separate client process, one call
   in flight at a time, each connection in turn runs every operation once in a shuffled order,
   round after round, until each has ``--samples`` samples or ``--seconds`` per operation are
   spent (the counted deployments are slow: they stop on time). The no-op is
   ``leaderboard:leave`` on the same connection (guard, payload, board lookup, no storage);
   ``tiktok:me`` on a spectator connection is shown beside it. A connection that joined gets
   the board's pushes (coalesced, every 100 ms at most) until its next no-op, as a watcher
   would; ``--no-watchers`` leaves at once after each join instead (no pushes: a diagnostic);
5. with ``--profile DIR``, py-spy records the server while the index loads and during the
   measurement (DIR/<name>-load.svg, DIR/<name>.svg).

Then the service-level section (no sockets, the ranking cost alone, like the old bench): the
leaderboard service in this process on the same database, with no index, the in-process one
and (PostgreSQL) the Redis one, against a ``SELECT 1`` round trip; ``--no-service`` skips it.

Figures are p50 and p99 in milliseconds and p99 minus the no-op's p99 from the same run: the
machines are shared and noisy. Nothing is asserted about time. A default run (1,000,000
players, four deployments) takes four to five minutes on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import _leaderboard_service as service
from bench._leaderboard_client import ClientProcess, median
from bench._leaderboard_load import (
    Loaded,
    create_postgres_database,
    drop_postgres_database,
    load_postgres,
    load_sqlite,
)
from bench._leaderboard_server import (
    GameServer,
    cpu_seconds,
    machine_cpu,
    redis_delete,
    redis_memory,
    redis_used_memory,
)

POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
TARGET_MS = 5.0
#: The operations the target names, and the no-op they are measured against.
TARGETS = ("submit", "rank", "around", "join")
BASELINE = "noop"
_LABELS = {
    "noop": "no-op: leaderboard:leave, same connection",
    "spectator": "tiktok:me on a spectator (for comparison)",
    "submit": "submit (a better score: it writes)",
    "rank": "rank (a submit not beating the best)",
    "around": "around (radius 5)",
    "join": "join (top 10 and the caller's entry)",
}
_SERVICE_LABELS = {
    "select1": "baseline: SELECT 1",
    "submit": "submit (a better score)",
    "entry": "entry (a player's rank)",
    "around": "around (radius 5)",
    "top": "top 10",
}
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_INDEX_LOAD_WITHIN = 600.0


@dataclass(frozen=True, slots=True)
class Deployment:
    """One way to run the server."""

    name: str
    database: str  # "sqlite" or "postgres"
    rank_index: str  # TTMINIS_RANK_INDEX
    title: str
    before: bool


DEPLOYMENTS = {
    d.name: d
    for d in (
        Deployment("sqlite-memory", "sqlite", "memory", "SQLite + in-process index", False),
        Deployment("sqlite-db", "sqlite", "database", "SQLite, ranks counted (before)", True),
        Deployment("pg-redis", "postgres", "redis", "PostgreSQL + Redis index", False),
        Deployment(
            "pg-db", "postgres", "database", "PostgreSQL + Redis pub/sub, counted (before)", True
        ),
    )
}
#: The class ``TikTokMinis`` must build for the deployment to measure what it says.
_EXPECTED_INDEX = {"memory": "MemoryRankIndex", "redis": "RedisRankIndex", "database": None}


@dataclass(slots=True)
class Outcome:
    """What one deployment gave, for the summary."""

    deployment: Deployment
    skipped: str | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    #: The database's bulk load (shared by the deployments of one database).
    load_seconds: float = 0.0
    #: The server's RSS at /healthz and once its index was loaded (or after the probe).
    rss_healthy_kib: int = 0
    rss_loaded_kib: int = 0
    #: The index load as the server logged it, and how long after the spawn it was in.
    index_seconds: float | None = None
    index_after_spawn: float | None = None
    #: Logins served before the index was in (all the probe's, without an index).
    logins_meanwhile: int = 0
    #: MEMORY USAGE of the run's Redis keys.
    redis_bytes: int = 0


# -- figures ------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``nan`` for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.2f}"


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def _verdict(over: float) -> str:
    return "met" if over <= TARGET_MS else "MISSED"


def _operation_table(
    samples: dict[str, list[float]],
    labels: dict[str, str],
    base: str,
    targets: tuple[str, ...] = TARGETS,
) -> None:
    """One line per operation: n, p50, p99, p99 over the baseline's p99, and the verdict."""
    base_p99 = percentile(samples.get(base, []), 0.99)
    header = f"    {'operation':<44} {'n':>6} {'p50 ms':>9} {'p99 ms':>9} {'p99-base':>9}"
    print(header + ("  verdict" if targets else ""))
    for op, label in labels.items():
        values = samples.get(op, [])
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        over = p99 - base_p99
        verdict = f"  {_verdict(over)} (<= {TARGET_MS:g} ms)" if op in targets else ""
        extra = "" if op == base else f"{_ms(over):>9}"
        print(f"    {label:<44} {len(values):>6} {_ms(p50):>9} {_ms(p99):>9} {extra:>9}{verdict}")


# -- the wire part ---------------------------------------------------------------------------


def _server_module(deployment: Deployment, env: dict[str, str]) -> tuple[str, str]:
    """What ``python -m`` runs for this deployment and a note on it; ``""`` as the module when
    the deployment cannot measure what it says (the note then says why)."""
    wanted = _EXPECTED_INDEX[deployment.rank_index]
    if deployment.rank_index == "redis":
        found, where = service.redis_index_class()
        if found is None:
            return "", f"RedisRankIndex is {where}"
    from tiktok_minis import Settings, TikTokMinis

    settings = Settings(
        sandbox=True,
        database_url=env["TTMINIS_DATABASE_URL"],
        rank_index=deployment.rank_index,  # type: ignore[arg-type]
        redis_url=env.get("TTMINIS_REDIS_URL"),
        redis_channel=env.get("TTMINIS_REDIS_CHANNEL", "ttminis"),
    )
    built = type(TikTokMinis(settings).rank_index).__name__
    if wanted is None or built == wanted:
        return "example_server", f"the server builds {built}"
    return "", (
        f"with TTMINIS_RANK_INDEX={deployment.rank_index} the plugin builds {built}, not"
        f" {wanted}, so it would not measure what it says"
    )


async def _machine_busy(seconds: float = 1.0) -> float:
    """How busy the whole machine is over ``seconds`` (other users' work shows here)."""
    busy, total = machine_cpu()
    await asyncio.sleep(seconds)
    busy_after, total_after = machine_cpu()
    return (busy_after - busy) / max(total_after - total, 1e-9)


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


async def _run_deployment(
    deployment: Deployment,
    loaded: Loaded,
    clients: ClientProcess,
    args: argparse.Namespace,
    work: Path,
) -> Outcome:
    """One deployment, start to end; a failure is reported and the run goes on."""
    try:
        return await _measure_deployment(deployment, loaded, clients, args, work)
    except Exception as exc:  # noqa: BLE001 (reported; the other deployments still run)
        print(f"  FAILED: {type(exc).__name__}: {exc}")
        return Outcome(deployment, skipped=f"failed: {type(exc).__name__}: {exc}")


async def _measure_deployment(
    deployment: Deployment,
    loaded: Loaded,
    clients: ClientProcess,
    args: argparse.Namespace,
    work: Path,
) -> Outcome:
    outcome = Outcome(deployment, load_seconds=loaded.seconds)
    channel = f"ttminis-bench-{secrets.token_hex(4)}"
    env = {
        "TTMINIS_SANDBOX": "true",
        "TTMINIS_DATABASE_URL": loaded.url,
        "TTMINIS_RANK_INDEX": deployment.rank_index,
        "TTMINIS_EVENTS_PER_SECOND": "100000",
        "TTMINIS_EVENTS_BURST": "100000",
        "TTMINIS_UPSTREAM_RATE_PER_SECOND": "100000",
    }
    if deployment.database == "postgres":
        env["TTMINIS_REDIS_URL"] = args.redis
        env["TTMINIS_REDIS_CHANNEL"] = channel
    print(f"\n== {deployment.name}: {deployment.title} ==")
    print(f"  the machine was {await _machine_busy():.0%} busy just before (all cores)")
    print("  server env: " + " ".join(f"{k}={v}" for k, v in env.items()))
    module, note = _server_module(deployment, env)
    if not module:
        print(f"  SKIPPED: {note}")
        outcome.skipped = note
        return outcome
    print(f"  rank index: {note}")
    indexed = _EXPECTED_INDEX[deployment.rank_index] is not None
    redis_pattern = f"*{channel}*"
    used_before = await redis_used_memory(args.redis) if deployment.rank_index == "redis" else 0
    server = GameServer(env, work / f"{deployment.name}.log", module)
    try:
        healthy = await server.start()
        rss_healthy, _ = server.memory_kib()
        print(f"  server pid {server.pid}: /healthz answered {healthy:.2f} s after the spawn")

        # -- served while the index loads --------------------------------------------------
        load_spy = _start_py_spy(args, server.pid, f"{deployment.name}-load") if indexed else None
        probe = asyncio.create_task(
            clients.run(
                {
                    "kind": "probe",
                    "url": server.url,
                    "tag": f"{deployment.name}-{channel}",
                    "score_bound": loaded.score_bound,
                    "max_seconds": _INDEX_LOAD_WITHIN,
                    "seed": args.seed,
                },
                within=_INDEX_LOAD_WITHIN + 120,
            )
        )
        if indexed:
            record = await server.wait_for_log("rank index loaded", _INDEX_LOAD_WITHIN)
        else:
            await asyncio.sleep(args.probe_seconds)
            record = None
        loaded_wall = time.time()
        _stop_py_spy(load_spy)
        clients.stop.set()
        probed = await probe
        rss_loaded, _ = server.memory_kib()
        outcome.rss_loaded_kib, outcome.rss_healthy_kib = rss_loaded, rss_healthy
        if indexed:
            if record is None:
                print(f"  rank index: NOT loaded within {_INDEX_LOAD_WITHIN:.0f} s")
            else:
                after = server.seconds_after_spawn(record)
                loaded_wall = server.spawned_at + (after or 0.0)
                outcome.index_after_spawn = after
                outcome.index_seconds = float(record.get("seconds") or 0.0)
                print(
                    f"  rank index of global loaded {after:.2f} s after the spawn; the load took "
                    f"{record.get('seconds')} s for {record.get('rows'):,} rows (server log)"
                )
        outcome.logins_meanwhile = _print_probe(probed, loaded_wall, server.spawned_at, indexed)
        when = "once the index was loaded" if indexed else "after the probe"
        print(
            f"  server RSS: {_mib(rss_healthy)} at /healthz, {_mib(rss_loaded)} {when}"
            f" ({(rss_loaded - rss_healthy) / 1024:+,.0f} MiB)"
        )
        if deployment.rank_index == "redis":
            outcome.redis_bytes = await _print_redis_memory(args.redis, redis_pattern, used_before)

        # -- the measurement ---------------------------------------------------------------
        spy = _start_py_spy(args, server.pid, deployment.name)
        cpu_before = (cpu_seconds(server.pid), cpu_seconds(clients.pid), *machine_cpu())
        wall_before = time.perf_counter()
        try:
            budget = args.seconds * len(TARGETS)
            measured = await clients.run(
                {
                    "kind": "measure",
                    "url": server.url,
                    "tag": f"{deployment.name}-{channel}",
                    "players": args.clients,
                    "score_bound": loaded.score_bound,
                    "samples": args.samples,
                    "seconds": budget,
                    "radius": 5,
                    "seed": args.seed,
                    "watchers": not args.no_watchers,
                },
                within=budget + 600,
            )
        finally:
            wall = time.perf_counter() - wall_before
            cpu_after = (cpu_seconds(server.pid), cpu_seconds(clients.pid), *machine_cpu())
            _stop_py_spy(spy)
        rss_end, hwm = server.memory_kib()
        if "error" in measured:
            print(f"  measurement FAILED: {measured['error']}")
            outcome.skipped = measured["error"]
            return outcome
        outcome.samples = measured["samples"]
        first, last = measured["first_ranks"], measured["last_ranks"] or measured["first_ranks"]
        print(
            f"  {args.clients} players logged in and placed in {measured['setup_seconds']:.1f} s;"
            f" ranks from {min(first):,} to {max(first):,} (median {median(first):,}) of"
            f" {loaded.players:,}; at the end {min(last):,} to {max(last):,}"
        )
        pushes = "no watchers (no pushes)" if args.no_watchers else "joined players get pushes"
        print(
            f"  {measured['rounds']:,} rounds in {measured['seconds']:.1f} s, one call in flight,"
            f" {pushes}"
            f"; failures: {sum(measured['failures'].values())}"
            + (f" ({'; '.join(measured['errors'][:3])})" if measured["errors"] else "")
        )
        _operation_table(measured["samples"], _LABELS, BASELINE)
        used = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
        rest = max(0.0, used[2] - used[0] - used[1])
        print(
            f"  CPU during the measurement ({wall:.1f} s): server {used[0] / wall:.0%} of a core,"
            f" clients {used[1] / wall:.0%}, the rest {rest / wall:.0%} (the database, Redis and"
            f" any other process); the whole machine {used[2] / max(used[3], 1e-9):.0%} busy"
            f" ({os.cpu_count()} cores)"
        )
        print(f"  server RSS after the run: {_mib(rss_end)} (peak {_mib(hwm)})")
        errors = server.errors()
        if errors:
            print(f"  the server logged {len(errors)} errors; first: {errors[0].get('message')}")
        for recorded in (load_spy, spy):
            if recorded is not None:
                print(f"  profile: {recorded[1]}")
        return outcome
    finally:
        await server.stop()
        if deployment.database == "postgres":
            await redis_delete(args.redis, redis_pattern)


def _print_probe(
    probed: dict[str, Any], loaded_wall: float, spawned_at: float, indexed: bool
) -> int:
    """Print what the probe saw; how many logins it had served by ``loaded_wall``."""
    if "error" in probed:
        print(f"  probe FAILED: {probed['error']}")
        return 0
    calls = probed["calls"]
    during = [c for c in calls if c[0] <= loaded_wall] if indexed else calls
    logins = [c for c in during if c[1] == "login" and c[3]]
    first = min((c[0] for c in calls if c[1] == "login" and c[3]), default=None)
    when = "before the index was loaded" if indexed else "in the probe"
    print(
        f"  new players served {when}: {len(logins)} logins"
        + (f", the first {first - spawned_at:.2f} s after the spawn" if first else "")
        + f"; failed calls: {sum(1 for c in during if not c[3])}"
    )
    parts = []
    for op in ("login", "submit", "join", "around"):
        values = [c[2] for c in during if c[1] == op and c[3]]
        if values:
            parts.append(f"{op} p50 {_ms(percentile(values, 0.5))} max {_ms(max(values))}")
    if parts:
        print("    meanwhile, ms: " + "; ".join(parts))
    for error in probed["errors"][:3]:
        print(f"    probe error: {error}")
    return len(logins)


async def _print_redis_memory(url: str, pattern: str, used_before: int) -> int:
    """Print the Redis memory of this run's keys; their total in bytes."""
    usage = await redis_memory(url, pattern)
    used_after = await redis_used_memory(url)
    total = sum(usage.values())
    print(
        f"  Redis: {len(usage)} keys of this run, MEMORY USAGE {total / 2**20:,.1f} MiB in all;"
        f" used_memory {used_after / 2**20:,.1f} MiB ({(used_after - used_before) / 2**20:+,.1f}"
        " MiB since before the server started, other users of this Redis included)"
    )
    for key, used in sorted(usage.items(), key=lambda item: -item[1])[:4]:
        print(f"    {key}: {used / 2**20:,.1f} MiB")
    return total


def _start_py_spy(
    args: argparse.Namespace, pid: int, name: str
) -> tuple[subprocess.Popen[bytes], Path] | None:
    if args.profile is None:
        return None
    binary = _py_spy()
    if binary is None:
        print("  py-spy not found (pip install py-spy): no profile")
        return None
    args.profile.mkdir(parents=True, exist_ok=True)
    suffix = {"flamegraph": "svg", "speedscope": "json", "raw": "txt"}[args.profile_format]
    path = args.profile / f"{name}.{suffix}"
    command = [binary, "record", "--pid", str(pid), "--nonblocking", "--rate", "250"]
    command += ["--format", args.profile_format, "-o", str(path)]
    spy = subprocess.Popen(  # noqa: S603 (py-spy, on our own server's pid)
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return spy, path


def _stop_py_spy(spy: tuple[subprocess.Popen[bytes], Path] | None) -> None:
    if spy is None:
        return
    process = spy[0]
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# -- the service-level part ------------------------------------------------------------------


async def _run_service(loaded: Loaded, dialect: str, args: argparse.Namespace) -> None:
    print(f"\n== service level on {dialect} ({loaded.players:,} players; no sockets) ==")
    _, where = service.redis_index_class()
    if dialect == "postgres":
        print(f"  RedisRankIndex: {where}")
    results = await service.run(
        loaded,
        dialect,
        redis_url=args.redis,
        prefix=f"ttminis-bench-svc-{secrets.token_hex(4)}:rank",
        samples=args.service_samples,
        seconds=args.service_seconds * len(service.SERVICE_OPERATIONS),
        seed=args.seed,
    )
    for result in results:
        line = f"  {result.label}"
        if result.load_seconds is not None:
            line += f": loaded in {result.load_seconds:.2f} s"
        if result.rss_delta_kib is not None:
            line += f", this process's RSS {result.rss_delta_kib / 1024:+,.0f} MiB"
        print(line)
        if result.error:
            print(f"    FAILED: {result.error}")
            continue
        _operation_table(result.samples, _SERVICE_LABELS, "select1", targets=())


# -- the run ---------------------------------------------------------------------------------


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


async def _group(
    database: str,
    deployments: list[Deployment],
    clients: ClientProcess,
    args: argparse.Namespace,
    work: Path,
) -> list[Outcome]:
    """Load one database, run its deployments, then the service-level section on it."""
    outcomes: list[Outcome] = []
    pg_name: str | None = None
    try:
        if database == "sqlite":
            path = work / "bench.sqlite3"
            loaded = await load_sqlite(path, args.players)
            where = f"temporary SQLite file {path}"
            size = f", {path.stat().st_size / 2**20:,.0f} MiB on disk"
        else:
            pg_name, url = await create_postgres_database(args.postgres)
            loaded = await load_postgres(url, args.players)
            where = f"PostgreSQL database {pg_name} (dropped at the end)"
            size = ""
        steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in loaded.steps.items())
        print(
            f"\n-- {where}: {loaded.players:,} players and their scores on board global loaded"
            f" in {loaded.seconds:.1f} s ({steps}){size}; scores uniform in"
            f" [0, {loaded.score_bound:,})"
        )
        if loaded.settings:
            print("   " + ", ".join(f"{k}={v}" for k, v in loaded.settings.items()))
        for deployment in deployments:
            outcomes.append(await _run_deployment(deployment, loaded, clients, args, work))
        if not args.no_service:
            await _run_service(loaded, database, args)
    finally:
        if pg_name is not None:
            await drop_postgres_database(args.postgres, pg_name)
    return outcomes


def _summary(outcomes: list[Outcome]) -> None:
    ran = [o for o in outcomes if o.samples]
    print("\n== summary: p99 over the no-op's p99 (ms), target <= 5 ms ==")
    for outcome in outcomes:
        if outcome.skipped:
            print(f"  {outcome.deployment.name}: skipped ({outcome.skipped})")
    if not ran:
        return
    header = f"    {'operation':<10}" + "".join(f"{o.deployment.name:>16}" for o in ran)
    print(header)
    for op in TARGETS:
        row = f"    {op:<10}"
        for outcome in ran:
            base = percentile(outcome.samples.get(BASELINE, []), 0.99)
            row += f"{_ms(percentile(outcome.samples.get(op, []), 0.99) - base):>16}"
        print(row)
    row = f"    {'no-op p99':<10}"
    for outcome in ran:
        row += f"{_ms(percentile(outcome.samples.get(BASELINE, []), 0.99)):>16}"
    print(row)
    for outcome in ran:
        if outcome.deployment.before:
            continue
        base = percentile(outcome.samples.get(BASELINE, []), 0.99)
        parts = []
        for op in TARGETS:
            over = percentile(outcome.samples.get(op, []), 0.99) - base
            parts.append(f"{op} {_verdict(over)} ({_ms(over)} ms)")
        print(f"  target on {outcome.deployment.title}: " + ", ".join(parts))
    by_name = {o.deployment.name: o for o in outcomes}
    loads = {o.deployment.database: o.load_seconds for o in outcomes if o.load_seconds}
    if loads:
        print(
            "  bulk load of the board: "
            + ", ".join(f"{database} {seconds:.1f} s" for database, seconds in loads.items())
        )
    for outcome in ran:
        if outcome.index_seconds is None:
            continue
        line = (
            f"  {outcome.deployment.name}: index loaded in {outcome.index_seconds:.1f} s"
            f" ({outcome.index_after_spawn:.1f} s after the spawn), {outcome.logins_meanwhile}"
            f" logins served meanwhile; server RSS {_mib(outcome.rss_healthy_kib)} at /healthz,"
            f" {_mib(outcome.rss_loaded_kib)} loaded"
        )
        if outcome.redis_bytes:
            line += f"; Redis keys {outcome.redis_bytes / 2**20:,.0f} MiB"
        print(line)
    memory, counted = by_name.get("sqlite-memory"), by_name.get("sqlite-db")
    if memory and counted and memory.rss_loaded_kib and counted.rss_loaded_kib:
        delta = memory.rss_loaded_kib - counted.rss_loaded_kib
        print(
            f"  in-process index memory: server RSS once loaded {_mib(memory.rss_loaded_kib)} vs"
            f" {_mib(counted.rss_loaded_kib)} without an index: {delta / 1024:+,.0f} MiB"
        )


async def _run(args: argparse.Namespace, argv: list[str]) -> None:
    print("command: python -m bench leaderboard " + " ".join(argv))
    chosen = [DEPLOYMENTS[name] for name in args.deployments]
    print(
        f"players {args.players:,}; deployments {', '.join(d.name for d in chosen)};"
        f" {args.clients} measured clients; up to {args.samples:,} samples or"
        f" {args.seconds:g} s per operation; {os.cpu_count()} CPUs"
    )
    groups: dict[str, list[Deployment]] = {}
    for deployment in chosen:
        groups.setdefault(deployment.database, []).append(deployment)
    outcomes: list[Outcome] = []
    clients = ClientProcess()
    await clients.start()
    print(f"client process pid {clients.pid}")
    try:
        with tempfile.TemporaryDirectory(prefix="ttminis-bench-") as folder:
            for database, deployments in groups.items():
                if database == "postgres" and not _reachable(args.postgres, 5432):
                    print(f"\nPostgreSQL not reachable at {args.postgres}: skipped")
                    outcomes += [
                        Outcome(d, skipped="PostgreSQL not reachable") for d in deployments
                    ]
                    continue
                if database == "postgres" and not _reachable(args.redis, 6379):
                    print(f"\nRedis not reachable at {args.redis}: PostgreSQL deployments skipped")
                    outcomes += [Outcome(d, skipped="Redis not reachable") for d in deployments]
                    continue
                outcomes += await _group(database, deployments, clients, args, Path(folder))
    finally:
        clients.close()
    _summary(outcomes)


def _loopback(url: str) -> str:
    if urlsplit(url).hostname not in _LOOPBACK:
        raise argparse.ArgumentTypeError(f"{url}: only loopback addresses")
    return url


def _deployments(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in DEPLOYMENTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown deployments {unknown}; choose among {', '.join(DEPLOYMENTS)}"
        )
    return names


def main(argv: list[str]) -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(
        prog="python -m bench leaderboard",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--players", type=int, default=1_000_000, help="board size (1000000)")
    parser.add_argument(
        "--deployments",
        type=_deployments,
        default=list(DEPLOYMENTS),
        help=f"comma-separated, among {','.join(DEPLOYMENTS)} (all)",
    )
    parser.add_argument("--clients", type=int, default=50, help="measured players (50)")
    parser.add_argument(
        "--samples", type=int, default=2000, help="samples per operation, at most (2000)"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="time budget per operation, at most (5)"
    )
    parser.add_argument(
        "--probe-seconds",
        type=float,
        default=3.0,
        help="how long logins are probed on a server without an index (3)",
    )
    parser.add_argument("--postgres", type=_loopback, default=POSTGRES_URL, help=POSTGRES_URL)
    parser.add_argument("--redis", type=_loopback, default=REDIS_URL, help=REDIS_URL)
    parser.add_argument("--no-service", action="store_true", help="skip the service level")
    parser.add_argument(
        "--service-samples", type=int, default=1000, help="service-level samples (1000)"
    )
    parser.add_argument(
        "--service-seconds", type=float, default=1.5, help="service-level seconds per op (1.5)"
    )
    parser.add_argument(
        "--no-watchers",
        action="store_true",
        help="leave the board right after each join, so that no pushes are sent (a diagnostic)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument("--profile", type=Path, help="record the server with py-spy into DIR")
    parser.add_argument(
        "--profile-format",
        choices=("flamegraph", "speedscope", "raw"),
        default="flamegraph",
        help="py-spy's output format (flamegraph)",
    )
    args = parser.parse_args(argv)
    if args.players < 1000 or args.players > 99_999_999:
        parser.error("--players must be from 1000 to 99,999,999")
    if args.clients < 1 or args.samples < 1:
        parser.error("--clients and --samples must be at least 1")
    asyncio.run(_run(args, argv))
