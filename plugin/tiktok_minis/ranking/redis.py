"""The shared rank index: one Redis sorted set per board period, for several server processes.

Every process applies its own writes (after the database committed them) and reads the same
sets, so a rank answered by any process counts every process's writes. The database stays the
source of truth: whatever Redis holds can be rebuilt from it, and whenever this index cannot
vouch for what Redis holds it answers ``None`` and the caller counts in the database. A rank is
never wrong, only slower for a moment.

Keys, per board and period (``<p>`` the prefix, ``<t>`` the board and period, percent-encoded):

- ``<p>:{<t>}:z``, a sorted set: one member per row, the 24 bytes of its key
  (:func:`~tiktok_minis.ranking.keys.key_bytes`), every score 0. Redis orders members of equal
  score by their bytes (memcmp), and the bytes of a key order exactly as the board does: score,
  then when it was reached, then row id, over the whole signed 64-bit score range. Redis's own
  score cannot do it: it is a double, 53 bits of mantissa, so distinct scores beyond 2**53 would
  merge (INT64_MAX and INT64_MAX - 1 are one double), and it has no room left for the two
  tie-breaks. The rank of any key, held or not, is ``ZLEXCOUNT z - (<key>`` plus one (the
  members strictly lower); the keys ranked *first* to *last* are ``ZRANGE z first-1 last-1``,
  decoded with ``int.from_bytes``. Both are O(log n).
- ``<p>:{<t>}:rows``, a hash: row id -> the row's member followed by its version in decimal,
  so a write can find and remove the row's old member, and refuse an older write.
- ``<p>:{<t>}:gone``, a set of removed row ids (tombstones). A write committed before a delete
  may reach Redis after it; a removed row must not come back. It is kept apart from ``rows``
  so that a rebuild can empty ``z`` and ``rows`` and keep the tombstones.
- ``<p>:{<t>}:ready``, the marker: present once the set was loaded from the database in full.
  Reads answer ``None`` without it. It is what every process trusts, so it is what a process
  deletes when it knows the set fell behind.
- ``<p>:{<t>}:lock``, held by the one process that rebuilds the period.

The braces make the five keys one Redis Cluster hash slot, so each script may touch them all.
``<p>:boot`` (the server's run_id) and ``<p>:sweep:*`` are one each per prefix. Every key
expires: the period's keys when the period is idle, the others a day after the last process.

Scripts (registered once, each atomic; Redis 6.2 or newer): *apply* takes rows (one for a
write, 500 per call while loading or sweeping) and refuses a tombstoned id and a version not
newer than the held one (compared exactly, as decimal strings, never as Lua's doubles), else
moves the row's member; *remove* drops members and writes tombstones; *rank* and *keys* check
the marker and read in the same step; the rebuild's *begin*, *extend* and *finish* act only
while the caller's token is still the lock's value, and *release* deletes the lock only for its
holder.

Loading. A read that finds no marker asks for a rebuild, and answers ``None``. One process
takes the lock (``SET lock token NX PX``), empties ``z`` and ``rows`` (not ``gone``), then
applies what ``loader`` reads, in pipelined batches (one in flight while the next is read),
through the same version-checked script that serves writes, extending its lease with each
batch. Writes never wait for a load: they go to Redis whatever the marker says. A write
committed before the load began is read by the loader; one committed later is applied by its
writer, and the versions decide whichever lands second, so a load never undoes a newer write,
even when the loader reads one snapshot. Only then, if the lock is still the loader's, is the
marker set. Other processes that asked meanwhile wait for the marker, or for the lock to lapse
(its holder died), and take over.

When Redis fails. A read that fails answers ``None``; a warning is logged at most once per few
seconds, never a traceback per call. A write that fails does not raise: the database has
committed, the caller has nothing to undo. The period is remembered as dirty instead: reads here
answer ``None`` for it, and as soon as Redis answers again this process deletes its marker and
its lock (a rebuild under way elsewhere may have missed the write: it must not set the marker),
so that every process falls back to the database until the period is rebuilt. For a second after
each failure to reach Redis, reads and writes do not try: writes only mark their period dirty,
so an outage costs the callers no time per call; the background probe (every quarter of a second
while Redis fails) keeps it so until Redis answers, and ends it then. (redis-py 8 retries a
command ten times with a backoff of up to a second: give the client a short retry budget, or the
first write of an outage waits for it.) This index keeps its calls under half the connection
pool's size, so a burst of writes waits for a connection rather than failing for want of one.

A restarted Redis may come back from a snapshot older than the writes it acknowledged, or be a
replica that never got them, with markers that vouch for what it no longer holds. Every load
records the server's ``run_id`` under the prefix before it sets a marker; every process probes
the run_id; the first to find another one recorded deletes every marker and lock under the
prefix. Run this Redis without persistence and with ``noeviction`` if you can: the index is
derived, a restore only brings back an old state, and eviction could drop one of a period's
keys and not the others (a flush or an expiry of all of them is handled).

A process that dies between its database commit and its Redis apply leaves a row behind with
nothing to tell. With ``sweep``, every ``sweep_seconds`` one process (a lock decides which)
re-applies the rows written since the previous sweep began (a mark in Redis, minus a margin
for clocks and slow commits, at most a day back); the version check makes re-applying
harmless. Rows deleted by a dead process are for the removal feed every process follows.

Staleness, then: a write that reached Redis is seen by every process at once; a write lost to
an outage is hidden (reads fall back to the database) once Redis answers the process that lost
it again, within about a quarter of a second of that, and stays visible elsewhere meanwhile if
only that process was cut off; a write lost with a crashed process, for up to ``sweep_seconds``
plus the sweep's own time; a snapshot restore, for up to two seconds (the probe's interval).

Limits. Tombstones live as long as their period's keys: after a flush, a late write of a row
removed before it (one still in flight across the flush) brings the row back until the period
is next rebuilt. Rows, their versions and tombstones are per period; ids are never reused.

Idle periods. Every script sets a time to live of ``idle_seconds`` on the period's keys (reads
refresh it only once a sixteenth of it has passed, since each refresh is a write that replicas
and the append-only file see), and the marker's is shorter by a margin: the marker always
expires first, and the next use of the period rebuilds it.

Cost, measured by ``python -m bench rank_redis_memory`` (one million rows, this machine kind):
about 190 bytes of Redis memory per row (the sorted set 118, the hash 72; about 200 MiB per
million rows), and 7 to 11 seconds to load a million rows, 2 to 3 of them the benchmark's own
loader making the rows (some 4.4 microseconds of Redis time per row, against 2.8 for bare
pipelined ZADD and HSET).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tiktok_minis.ranking.base import Loader, Row
from tiktok_minis.ranking.keys import KEY_BYTES, Order, key_bytes, micros
from tiktok_minis.support.concurrency import TaskSet

__all__ = ["RedisRankIndex", "Sweep"]

log = logging.getLogger("tiktok_minis.ranking")

#: Rows written since a time, in batches of ``(board, period, order, row)``.
Sweep = Callable[[datetime], AsyncIterator[list[tuple[str, str, Order, Row]]]]

#: Rows per script call: a call blocks Redis while it runs, 500 rows take about 2 ms.
_CHUNK: Final = 500
#: How long a rebuild's lock lasts unless extended (it is, with every batch).
_LOCK_MS: Final = 30_000
#: How often a process waiting for another's rebuild, or for Redis to answer, looks again.
_POLL_SECONDS: Final = 0.25
#: How often Redis's run_id is compared when all is well.
_HEALTH_SECONDS: Final = 2.0
#: After failing to reach Redis, reads and writes do not try for this long (probes extend it).
_RETRY_SECONDS: Final = 1.0
#: At most one warning per this many seconds about an unreachable Redis.
_WARN_SECONDS: Final = 5.0
#: After a failed load, the period is not tried again for this long.
_LOAD_RETRY_SECONDS: Final = 5.0
#: Rebuilds one process runs at once.
_REBUILDS: Final = 4
#: How far a sweep reaches back before the previous sweep's start (clocks, slow commits).
_SWEEP_MARGIN: Final = timedelta(seconds=30)
#: A sweep never reaches back further than this (a period unused that long has expired).
_SWEEP_LOOKBACK: Final = timedelta(days=1)
#: How long the recorded run_id lasts once no process refreshes it.
_BOOT_MS: Final = 86_400_000
#: How long ``close`` lets the probe and sweep loops finish what they are doing.
_STOP_SECONDS: Final = 2.0
#: Versions are BIGINT counters: non-negative, at most this.
_VERSION_MAX: Final = 2**63 - 1

# -- the scripts ---------------------------------------------------------------------------------
# Data scripts take KEYS = z, rows, gone, ready (and lock) and ARGV = ttl ms, ready ttl ms,
# refresh step ms, then their own arguments.

_TOUCH = """
local function touch()
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[4], ARGV[2])
end
"""

# Lua numbers are doubles: a version above 2**53 is compared in two exact parts. Versions come
# without sign or leading zeros, so the longer one is the larger.
#
# The rows of one call are read with one HMGET (and one SMISMEMBER while there are tombstones)
# and written with one ZREM, ZADD and HSET: a load costs a few microseconds per row, not four
# commands. A row given twice in one call ends at its newest version, as if applied in turn.
_APPLY = (
    _TOUCH
    + f"""
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  if #a <= 15 then return tonumber(a) > tonumber(b) end
  local ha, hb = tonumber(string.sub(a, 1, -10)), tonumber(string.sub(b, 1, -10))
  if ha ~= hb then return ha > hb end
  return tonumber(string.sub(a, -9)) > tonumber(string.sub(b, -9))
end
local n = (#ARGV - 3) / 3
if n < 1 then return 0 end
local ids = {{}}
for j = 1, n do ids[j] = ARGV[3 * j + 1] end
local gone = false
if redis.call('EXISTS', KEYS[3]) == 1 then gone = redis.call('SMISMEMBER', KEYS[3], unpack(ids)) end
local held = redis.call('HMGET', KEYS[2], unpack(ids))
local best, was, changed, seen = {{}}, {{}}, {{}}, {{}}
for j = 1, n do
  local id, version, member = ids[j], ARGV[3 * j + 2], ARGV[3 * j + 3]
  if not (gone and gone[j] == 1) then
    local current = best[id]
    if current == nil then
      local value = held[j]
      if value then
        was[id] = string.sub(value, 1, {KEY_BYTES})
        current = {{string.sub(value, {KEY_BYTES + 1}), was[id]}}
      else
        was[id] = false
        current = false
      end
      best[id] = current
      seen[#seen + 1] = id
    end
    if not current or newer(version, current[1]) then
      best[id] = {{version, member}}
      changed[id] = true
    end
  end
end
local dropped, added, stored = {{}}, {{}}, {{}}
for _, id in ipairs(seen) do
  if changed[id] then
    local version, member = best[id][1], best[id][2]
    if was[id] and was[id] ~= member then dropped[#dropped + 1] = was[id] end
    added[#added + 1] = 0
    added[#added + 1] = member
    stored[#stored + 1] = id
    stored[#stored + 1] = member .. version
  end
end
if #dropped > 0 then redis.call('ZREM', KEYS[1], unpack(dropped)) end
if #added > 0 then
  redis.call('ZADD', KEYS[1], unpack(added))
  redis.call('HSET', KEYS[2], unpack(stored))
end
touch()
return #stored / 2
"""
)

_REMOVE = (
    _TOUCH
    + f"""
for i = 4, #ARGV do
  local id = ARGV[i]
  local held = redis.call('HGET', KEYS[2], id)
  if held then
    redis.call('ZREM', KEYS[1], string.sub(held, 1, {KEY_BYTES}))
    redis.call('HDEL', KEYS[2], id)
  end
  redis.call('SADD', KEYS[3], id)
end
touch()
return #ARGV - 3
"""
)

# Reads refresh the time to live only once a step of it has passed: a refresh is a write.
_READ_PRELUDE = (
    _TOUCH
    + """
local left = redis.call('PTTL', KEYS[4])
if left == -2 then return false end
if left < tonumber(ARGV[2]) - tonumber(ARGV[3]) then touch() end
"""
)

_RANK = _READ_PRELUDE + "return redis.call('ZLEXCOUNT', KEYS[1], '-', '(' .. ARGV[4])\n"

_KEYS = (
    _READ_PRELUDE
    + """
local first, last = tonumber(ARGV[4]), tonumber(ARGV[5])
if last < first then return {} end
return redis.call('ZRANGE', KEYS[1], ARGV[4], ARGV[5])
"""
)

# 0: the lock is not ours; 2: the period is ready already (the lock is given back); 1: emptied.
_BEGIN = """
if redis.call('GET', KEYS[5]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('DEL', KEYS[5])
  return 2
end
redis.call('UNLINK', KEYS[1], KEYS[2])
return 1
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_FINISH = (
    _TOUCH
    + """
if redis.call('GET', KEYS[5]) ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
touch()
redis.call('DEL', KEYS[5])
return 1
"""
)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Records the server's run_id under the prefix; 1 when another run_id was recorded there (the
# server restarted since), for the first caller only. No run_id recorded is no restart: every
# load records one before it sets a marker, so a snapshot holding a marker holds a run_id too.
_CLAIM_BOOT = """
local held = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if held and held ~= ARGV[1] then return 1 end
return 0
"""


@dataclass(frozen=True, slots=True)
class _Names:
    """The keys of one board period."""

    zset: str
    rows: str
    gone: str
    ready: str
    lock: str

    @property
    def data(self) -> list[str]:
        return [self.zset, self.rows, self.gone, self.ready]

    @property
    def all(self) -> list[str]:
        return [self.zset, self.rows, self.gone, self.ready, self.lock]


class _Skipped(RedisError):
    """A call not made: Redis was unreachable a moment ago (nothing to log again)."""


@dataclass(slots=True)
class _Dirty:
    """A period whose writes may have missed Redis; ``seq`` tells a newer failure apart."""

    order: Order | None
    seq: int


class _Throttle:
    """Logs a warning at most once per period, counting the ones it kept quiet."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._last = -float("inf")
        self._quiet = 0

    def warn(self, message: str, **extra: object) -> None:
        now = time.monotonic()
        if now - self._last < self._seconds:
            self._quiet += 1
            return
        log.warning(message, extra={**extra, "suppressed": self._quiet})
        self._last, self._quiet = now, 0


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def _check_version(row: Row) -> str:
    if not 0 <= row.version <= _VERSION_MAX:
        raise ValueError(
            f"row {row.id} has version {row.version}: versions are the database's BIGINT write "
            "counter, from 0 up"
        )
    return str(row.version)


class RedisRankIndex:
    """:class:`~tiktok_minis.ranking.RankIndex` on Redis sorted sets, shared by processes.

    ``redis`` must return bytes (``decode_responses=False``, the default); this index uses it
    and never closes it. ``prefix`` namespaces the keys per game and environment, for instance
    ``"ttminis:<channel>:rank"``. A period unused for ``idle_seconds`` expires from Redis.
    ``sweep`` reads the rows written since a time; with it, rows whose apply was lost with a
    crashed process are re-applied every ``sweep_seconds`` (see the module).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        loader: Loader,
        *,
        prefix: str,
        idle_seconds: float = 900.0,
        sweep: Sweep | None = None,
        sweep_seconds: float = 30.0,
    ) -> None:
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError(
                "RedisRankIndex needs a Redis client that returns bytes: create it without "
                "decode_responses=True (keys are binary)"
            )
        if not prefix:
            raise ValueError("RedisRankIndex needs a prefix, e.g. 'ttminis:<channel>:rank'")
        if idle_seconds < 1.0:
            raise ValueError(f"idle_seconds must be at least 1 second, not {idle_seconds}")
        if sweep_seconds <= 0:
            raise ValueError(f"sweep_seconds must be positive, not {sweep_seconds}")
        self._redis = redis
        self._loader = loader
        self._prefix = prefix
        self._sweep = sweep
        self._sweep_seconds = sweep_seconds
        ttl_ms = int(idle_seconds * 1000)
        # The marker goes first: a marker must never outlive the set it vouches for.
        margin_ms = min(1000, ttl_ms // 10)
        self._ttls = (ttl_ms, ttl_ms - margin_ms, max(ttl_ms // 16, 1))
        # The recorded run_id outlives every marker (each probe refreshes it), then goes too.
        self._boot_ms = max(_BOOT_MS, 2 * ttl_ms)
        self._apply = redis.register_script(_APPLY)
        self._remove = redis.register_script(_REMOVE)
        self._rank = redis.register_script(_RANK)
        self._keys = redis.register_script(_KEYS)
        self._begin = redis.register_script(_BEGIN)
        self._extend = redis.register_script(_EXTEND)
        self._finish = redis.register_script(_FINISH)
        self._release = redis.register_script(_RELEASE)
        self._claim_boot = redis.register_script(_CLAIM_BOOT)
        self._tasks = TaskSet("redis-rank-index")
        self._loops_running = False
        self._loops: list[asyncio.Task[Any] | None] = []
        self._stopping = False
        self._wake_sweep = asyncio.Event()
        self._rebuilding: dict[tuple[str, str], asyncio.Task[Any]] = {}
        self._slots = asyncio.Semaphore(_REBUILDS)
        # At most half the pool's connections at once: a burst of writes waits here for a
        # connection instead of failing with MaxConnectionsError (and costing a rebuild), and
        # leaves room for whoever shares the client.
        pool_size = getattr(redis.connection_pool, "max_connections", 100)
        self._calls = asyncio.Semaphore(max(1, int(pool_size) // 2))
        self._dirty: dict[tuple[str, str], _Dirty] = {}
        self._dirty_seq = 0
        self._repairing: asyncio.Task[Any] | None = None
        self._down_until = 0.0
        self._wake = asyncio.Event()
        self._info_allowed = True
        self._throttle = _Throttle(_WARN_SECONDS)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin repairing, watching Redis and sweeping; ``start`` after ``close`` works."""
        if self._tasks.closed:
            self._tasks = TaskSet("redis-rank-index")
            self._loops_running = False
        if self._loops_running:
            return
        self._loops_running = True
        self._stopping = False
        self._wake_sweep = asyncio.Event()
        self._loops = [self._tasks.spawn(self._watch_loop())]
        if self._sweep is not None:
            self._loops.append(self._tasks.spawn(self._sweep_loop()))

    async def close(self) -> None:
        """Stop the background work; Redis keeps the index. Closing twice is harmless.

        A period still dirty is repaired once more if Redis answers; if it does not, the other
        processes' sweeps re-apply its lost writes (and their removal feeds its removes).
        """
        # The loops finish the call they are in (one cancelled after it was sent would still
        # run in Redis, after this returns), then the rest is cancelled.
        self._stopping = True
        self._wake.set()
        self._wake_sweep.set()
        loops = [task for task in self._loops if task is not None]
        if loops:
            await asyncio.wait(loops, timeout=_STOP_SECONDS)
        self._loops = []
        await self._tasks.close()
        self._loops_running = False
        self._rebuilding.clear()
        if self._dirty:
            await self._repair_dirty()
            if self._dirty:
                log.warning(
                    "rank index closed with periods Redis may lack writes of",
                    extra={"event": "rank_dirty_at_close", "periods": len(self._dirty)},
                )
                self._dirty.clear()

    # -- writes ------------------------------------------------------------------------------

    async def apply(self, board: str, period: str, order: Order, row: Row) -> None:
        """Insert or move ``row`` unless Redis holds a newer version or a tombstone of it.

        Never raises for Redis being unavailable: the period is repaired once it answers.
        """
        args: list[str | bytes] = [str(row.id), _check_version(row), key_bytes(row.key)]
        names = self._names(board, period)
        try:
            await self._call(self._apply, names.data, [*self._ttls, *args])
        except RedisError as exc:
            self._lost_write(board, period, order, exc)
        else:
            self._answered()

    async def remove(self, board: str, period: str, row_ids: list[int]) -> None:
        """Drop the rows and keep tombstones, so a late write of one of them is refused.

        Never raises for Redis being unavailable: the period is repaired once it answers.
        """
        if not row_ids:
            return
        names = self._names(board, period)
        try:
            for start in range(0, len(row_ids), _CHUNK):
                chunk = [str(row_id) for row_id in row_ids[start : start + _CHUNK]]
                await self._call(self._remove, names.data, [*self._ttls, *chunk])
        except RedisError as exc:
            self._lost_write(board, period, None, exc)
        else:
            self._answered()

    # -- reads -------------------------------------------------------------------------------

    async def ready(self, board: str, period: str, order: Order) -> bool:
        """Load the period now if it is not loaded (a warm-up at start, a test); whether it is.

        Waits for this process's rebuild of it, if one runs; another process's rebuild is not
        waited for (the answer is then ``False`` until its marker is set).
        """
        if await self.rank(board, period, order, 0) is not None:
            return True
        rebuilding = self._rebuilding.get((board, period))
        if rebuilding is not None:
            await asyncio.gather(asyncio.shield(rebuilding), return_exceptions=True)
        return await self.rank(board, period, order, 0) is not None

    async def rank(self, board: str, period: str, order: Order, key: int) -> int | None:
        """1 + the rows ahead of ``key``; ``None`` until the period is loaded, or on failure."""
        member = key_bytes(key)
        found = await self._read(board, period, order, self._rank, [member])
        return None if found is None else int(found) + 1

    async def keys(
        self, board: str, period: str, order: Order, first: int, last: int
    ) -> list[int] | None:
        """The keys ranked ``first`` to ``last``; ``None`` until loaded, or on failure."""
        found = await self._read(board, period, order, self._keys, [max(first, 1) - 1, last - 1])
        if found is None:
            return None
        return [int.from_bytes(member, "big") for member in found]

    async def _read(
        self, board: str, period: str, order: Order, script: AsyncScript, args: list[Any]
    ) -> Any:
        """What ``script`` answers, or ``None`` if the period is not ready or Redis failed."""
        if (board, period) in self._dirty:
            self._kick_repair()
            return None
        try:
            found = await self._call(script, self._names(board, period).data, [*self._ttls, *args])
        except RedisError as exc:
            self._failed("read", exc)
            return None
        self._answered()
        if found is None:
            self._request_rebuild(board, period, order)
        return found

    async def _call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """Run ``script`` in a connection slot, unless Redis was unreachable a moment ago.

        The check comes after the wait for a slot: calls queued behind a hung server give up
        as soon as one of them finds out, instead of each waiting out its own timeout.
        """
        async with self._calls:
            if self._down():
                raise _Skipped("Redis was unreachable a moment ago")
            return await script(keys=keys, args=args)

    # -- keys and failures -------------------------------------------------------------------

    def _names(self, board: str, period: str) -> _Names:
        # Percent-encoding keeps ':' and braces out of the hash tag: distinct periods never
        # share keys, and the five keys of a period always share a slot.
        base = f"{self._prefix}:{{{quote(board, safe='')}:{quote(period, safe='')}}}"
        return _Names(f"{base}:z", f"{base}:rows", f"{base}:gone", f"{base}:ready", f"{base}:lock")

    def _down(self) -> bool:
        """Whether Redis was unreachable a moment ago and has not answered since."""
        return time.monotonic() < self._down_until

    def _failed(self, what: str, exc: BaseException) -> None:
        if isinstance(exc, _Skipped):
            return
        # Only an unreachable server is skipped for a while; an error reply is per command, and
        # an exhausted pool is this process's own congestion.
        unreachable = isinstance(exc, RedisConnectionError | RedisTimeoutError)
        if unreachable and not isinstance(exc, MaxConnectionsError):
            self._down_until = time.monotonic() + _RETRY_SECONDS
        self._throttle.warn(
            f"rank index: Redis {what} failed ({type(exc).__name__}: {exc}); "
            "answering from the database",
            event="rank_redis_unavailable",
        )

    def _answered(self) -> None:
        self._down_until = 0.0
        self._kick_repair()

    def _kick_repair(self) -> None:
        """Repair dirty periods soon: the probe loop, or (not started) a one-off task."""
        if not self._dirty or self._down():
            return
        if self._loops_running:
            self._wake.set()
        elif self._repairing is None:
            self._repairing = self._tasks.spawn(self._repair_once())

    async def _repair_once(self) -> None:
        try:
            await self._repair_dirty()
        finally:
            self._repairing = None

    def _lost_write(
        self, board: str, period: str, order: Order | None, exc: RedisError | None
    ) -> None:
        """Remember that Redis may lack a write of this period (``exc`` None: not tried)."""
        self._dirty_seq += 1
        held = self._dirty.get((board, period))
        self._dirty[(board, period)] = _Dirty(
            order if order is not None else (held.order if held else None), self._dirty_seq
        )
        if exc is not None:
            self._failed("write", exc)

    async def _repair_dirty(self) -> None:
        """Delete the marker and lock of every dirty period, then rebuild what we can."""
        for where, mark in list(self._dirty.items()):
            names = self._names(*where)
            try:
                async with self._calls:
                    await self._redis.delete(names.ready, names.lock)
            except RedisError as exc:
                self._failed("repair", exc)
                return
            self._answered()
            # A write that failed while the delete was under way needs another round.
            if self._dirty.get(where) is mark:
                del self._dirty[where]
            log.info(
                "rank index period hidden until rebuilt (a write missed Redis)",
                extra={"event": "rank_repaired", "board": where[0], "period": where[1]},
            )
            if mark.order is not None:
                self._request_rebuild(where[0], where[1], mark.order)

    # -- loading -----------------------------------------------------------------------------

    def _request_rebuild(self, board: str, period: str, order: Order) -> None:
        where = (board, period)
        if where in self._rebuilding:
            return
        task = self._tasks.spawn(self._rebuild(board, period, order))
        if task is not None:
            self._rebuilding[where] = task
            task.add_done_callback(lambda done: self._rebuilt(where, done))

    def _rebuilt(self, where: tuple[str, str], task: asyncio.Task[Any]) -> None:
        if self._rebuilding.get(where) is task:
            del self._rebuilding[where]

    async def _rebuild(self, board: str, period: str, order: Order) -> None:
        names = self._names(board, period)
        try:
            while True:
                # Before the lock: noticing a restart deletes every lock under the prefix.
                run_id = await self._server_run_id()
                await self._observe(run_id)
                token = secrets.token_hex(16)
                async with self._calls:
                    locked = await self._redis.set(names.lock, token, nx=True, px=_LOCK_MS)
                if locked:
                    async with self._slots:
                        await self._load(board, period, order, names, token, run_id)
                    return
                # Another process loads it: wait for its marker, or for its lock to lapse.
                async with self._calls:
                    if await self._redis.exists(names.ready):
                        return
                await asyncio.sleep(_POLL_SECONDS)
        except RedisError as exc:
            self._failed("rebuild", exc)
        except Exception:
            log.exception(
                "rank index load failed",
                extra={"event": "rank_load_failed", "board": board, "period": period},
            )
            # Reads keep answering None meanwhile; a failing loader is not called per read.
            await asyncio.sleep(_LOAD_RETRY_SECONDS)

    async def _load(
        self, board: str, period: str, order: Order, names: _Names, token: str, run_id: str | None
    ) -> None:
        started = time.perf_counter()
        released = False
        try:
            async with self._calls:
                state = int(await self._begin(keys=names.all, args=[token]))
            if state != 1:
                released = True  # ready already (the lock given back), or the lock not ours
                return
            rows = await self._load_rows(board, period, order, names, token)
            # A server restarted under the load lost part of it: the marker must not be set.
            if rows is not None and run_id is not None and await self._server_run_id() != run_id:
                rows = None
            if rows is not None:
                async with self._calls:
                    finished = await self._finish(keys=names.all, args=[*self._ttls, token])
                released = int(finished) == 1
            if not released:
                # The lock was taken from this load (a repair, a restart, a lapsed lease):
                # whoever took it decides; the next read asks again if need be.
                log.info(
                    "rank index load superseded",
                    extra={"event": "rank_load_superseded", "board": board, "period": period},
                )
            else:
                log.info(
                    "rank index loaded",
                    extra={
                        "event": "rank_loaded",
                        "board": board,
                        "period": period,
                        "rows": rows,
                        "seconds": round(time.perf_counter() - started, 3),
                    },
                )
        finally:
            if not released:
                # Given back at once, so that another try need not wait out the lease.
                with contextlib.suppress(RedisError):
                    async with self._calls:
                        await self._release(keys=[names.lock], args=[token])

    async def _load_rows(
        self, board: str, period: str, order: Order, names: _Names, token: str
    ) -> int | None:
        """Apply what the loader reads; how many rows, ``None`` if the lock was lost meanwhile.

        One batch is in flight while the loader reads the next: the database's reading and
        Redis's applying overlap instead of taking turns.
        """
        rows = 0
        flying: asyncio.Task[bool] | None = None
        try:
            async for batch in self._loader(board, period, order):
                landing, flying = (
                    flying,
                    asyncio.ensure_future(self._apply_rows(names, batch, token=token)),
                )
                if landing is not None and not await landing:
                    return None
                rows += len(batch)
            if flying is not None:
                landing, flying = flying, None
                if not await landing:
                    return None
            return rows
        finally:
            # A batch still in flight when the load fails or is cancelled is abandoned (it is
            # version-checked: finishing or not, it does no harm), never left unawaited.
            if flying is not None:
                flying.cancel()
                await asyncio.gather(flying, return_exceptions=True)

    async def _apply_rows(self, names: _Names, rows: Sequence[Row], *, token: str | None) -> bool:
        """Apply ``rows`` in one pipeline; ``False`` if ``token`` no longer holds the lock."""
        if not rows:
            return True
        calls: list[list[Any]] = []
        for start in range(0, len(rows), _CHUNK):
            args: list[Any] = [*self._ttls]
            for row in rows[start : start + _CHUNK]:
                args += [str(row.id), _check_version(row), key_bytes(row.key)]
            calls.append(args)
        async with self._calls, self._redis.pipeline(transaction=False) as pipe:
            if token is not None:
                await self._extend(keys=[names.lock], args=[token, _LOCK_MS], client=pipe)
            for args in calls:
                await self._apply(keys=names.data, args=args, client=pipe)
            results = await pipe.execute()
        return token is None or int(results[0]) == 1

    # -- watching Redis ----------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        while not self._stopping:
            quick = bool(self._dirty) or self._down()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), _POLL_SECONDS if quick else _HEALTH_SECONDS
                )
            self._wake.clear()
            if not self._stopping:
                await self._check_server()

    async def _check_server(self) -> None:
        """Probe Redis: repair dirty periods once it answers, notice a restarted server."""
        try:
            run_id = await self._server_run_id()
        except RedisError as exc:
            self._failed("probe", exc)
            return
        self._answered()
        try:
            await self._observe(run_id)  # also keeps the recorded run_id from expiring
        except RedisError as exc:
            self._failed("probe", exc)
            return
        await self._repair_dirty()

    async def _server_run_id(self) -> str | None:
        """The server's run_id (it changes when Redis restarts), ``None`` if INFO is denied."""
        if not self._info_allowed:
            async with self._calls:
                await self._redis.ping()
            return None
        try:
            async with self._calls:
                info = await self._redis.info("server")
        except ResponseError:
            self._info_allowed = False
            log.warning(
                "rank index cannot run INFO: a restarted Redis will not be noticed",
                extra={"event": "rank_info_denied"},
            )
            return None
        run_id = info.get("run_id")
        return None if run_id is None else str(run_id)

    async def _observe(self, run_id: str | None) -> None:
        """Record ``run_id``; the first process to see a new server hides every period.

        The server may have come back from a snapshot older than the writes it acknowledged,
        or be a replica that never received them.
        """
        if run_id is None:
            return
        async with self._calls:
            claimed = await self._claim_boot(
                keys=[f"{self._prefix}:boot"], args=[run_id, self._boot_ms]
            )
            if not int(claimed):
                return
            stale: list[bytes] = []
            pattern = f"{_glob_escape(self._prefix)}:{{*}}:"
            for suffix in ("ready", "lock"):
                async for found in self._redis.scan_iter(match=pattern + suffix, count=1000):
                    stale.append(found)
            for start in range(0, len(stale), _CHUNK):
                await self._redis.delete(*stale[start : start + _CHUNK])
        if stale:
            log.warning(
                "rank index: Redis restarted, every period is rebuilt",
                extra={"event": "rank_redis_restarted", "keys": len(stale)},
            )

    # -- sweeping ----------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while not self._stopping:
            try:
                await self._sweep_turn()
            except RedisError as exc:
                self._failed("sweep", exc)
            except Exception:
                log.exception("rank index sweep failed", extra={"event": "rank_sweep_failed"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_sweep.wait(), self._sweep_seconds)

    async def _sweep_turn(self) -> None:
        """Sweep unless another process swept in this interval."""
        lease_ms = max(int(self._sweep_seconds * 900), 1)
        lock = f"{self._prefix}:sweep:lock"
        mark_key = f"{self._prefix}:sweep:mark"
        started = datetime.now(UTC)
        async with self._calls:
            if not await self._redis.set(lock, secrets.token_hex(16), nx=True, px=lease_ms):
                return
            mark = await self._redis.get(mark_key)
        if mark is None:
            since = started - 2 * timedelta(seconds=self._sweep_seconds)
        else:
            since = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=int(mark))
        since = max(since - _SWEEP_MARGIN, started - _SWEEP_LOOKBACK)
        await self.sweep_once(since)
        lookback_s = int(_SWEEP_LOOKBACK.total_seconds())
        async with self._calls:
            await self._redis.set(mark_key, micros(started), ex=lookback_s)

    async def sweep_once(self, since: datetime) -> int:
        """Re-apply every row ``sweep`` reads as written since ``since``; how many it read.

        The background sweep calls this; it raises what Redis raises.
        """
        if self._sweep is None:
            return 0
        seen = 0
        async for batch in self._sweep(since):
            for (board, period), rows in _by_period(batch).items():
                await self._apply_rows(self._names(board, period), rows, token=None)
            seen += len(batch)
        if seen:
            log.info("rank index swept", extra={"event": "rank_swept", "rows": seen})
        return seen


def _by_period(batch: Iterable[tuple[str, str, Order, Row]]) -> dict[tuple[str, str], list[Row]]:
    grouped: dict[tuple[str, str], list[Row]] = {}
    for board, period, _order, row in batch:
        grouped.setdefault((board, period), []).append(row)
    return grouped
