"""The shared rank index's Lua scripts, their arguments, and their registration.

Every script is atomic (Redis 6.2 or newer): *apply* takes rows (one for a write, 500 per call
while loading or sweeping) and refuses a tombstoned id and a version not newer than the held one
(compared exactly, as decimal strings, never as Lua's doubles), else moves the row's member;
*remove* drops members and writes tombstones; *rank* and *keys* check the marker and read in
the same step; the rebuild's *begin*, *extend* and *finish* act only while the caller's token is
still the lock's value, and *release* deletes the lock only for its holder; *claim boot* records
the server's run_id and tells the first caller that it changed.

Every data script sets a time to live of ``idle_seconds`` on the period's keys (reads refresh it
only once a sixteenth of it has passed, since each refresh is a write that replicas and the
append-only file see), and the marker's is shorter by a margin: the marker always expires first,
and the next use of the period rebuilds it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from tiktok_minis.ranking.keys import KEY_BYTES

__all__ = ["CHUNK", "LOCK_MS", "Scripts", "lock_token", "ttl_args"]

#: Rows per script call: a call blocks Redis while it runs, 500 rows take about 2 ms.
CHUNK: Final = 500
#: How long a rebuild's lock lasts unless extended (it is, with every batch).
LOCK_MS: Final = 30_000


def lock_token() -> str:
    """A fresh value for a lock, telling its holder apart from every other process."""
    return secrets.token_hex(16)


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


def ttl_args(idle_seconds: float) -> tuple[int, int, int]:
    """The first three arguments of every data script, for periods idle ``idle_seconds``.

    The keys' time to live, the marker's (shorter), and how much of it passes before a read
    refreshes it, all in milliseconds.
    """
    ttl_ms = int(idle_seconds * 1000)
    # The marker goes first: a marker must never outlive the set it vouches for.
    margin_ms = min(1000, ttl_ms // 10)
    return (ttl_ms, ttl_ms - margin_ms, max(ttl_ms // 16, 1))


@dataclass(frozen=True, slots=True)
class Scripts:
    """The scripts, registered on one client (registering sends nothing to Redis)."""

    apply: AsyncScript
    remove: AsyncScript
    rank: AsyncScript
    keys: AsyncScript
    begin: AsyncScript
    extend: AsyncScript
    finish: AsyncScript
    release: AsyncScript
    claim_boot: AsyncScript

    @classmethod
    def register(cls, redis: aioredis.Redis) -> Scripts:
        """Every script, registered on ``redis``."""
        return cls(
            apply=redis.register_script(_APPLY),
            remove=redis.register_script(_REMOVE),
            rank=redis.register_script(_RANK),
            keys=redis.register_script(_KEYS),
            begin=redis.register_script(_BEGIN),
            extend=redis.register_script(_EXTEND),
            finish=redis.register_script(_FINISH),
            release=redis.register_script(_RELEASE),
            claim_boot=redis.register_script(_CLAIM_BOOT),
        )
