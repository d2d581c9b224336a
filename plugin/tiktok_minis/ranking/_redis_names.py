"""The shared rank index's key names, and how a row is encoded for its scripts.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from tiktok_minis.ranking.base import Row
from tiktok_minis.ranking.keys import INT64_MAX, key_bytes

__all__ = [
    "PeriodKeys",
    "boot_key",
    "period_keys",
    "row_args",
    "stale_patterns",
    "sweep_lock_key",
    "sweep_mark_key",
]


@dataclass(frozen=True, slots=True)
class PeriodKeys:
    """The keys of one board period."""

    zset: str
    rows: str
    gone: str
    ready: str
    lock: str

    @property
    def data(self) -> list[str]:
        """The keys the data scripts take: every one but the lock."""
        return [self.zset, self.rows, self.gone, self.ready]

    @property
    def all(self) -> list[str]:
        """The keys the rebuild's scripts take: the data keys, then the lock."""
        return [self.zset, self.rows, self.gone, self.ready, self.lock]


def period_keys(prefix: str, board: str, period: str) -> PeriodKeys:
    """The keys of ``board``'s ``period`` under ``prefix``."""
    # Percent-encoding keeps ':' and braces out of the hash tag: distinct periods never
    # share keys, and the five keys of a period always share a slot.
    base = f"{prefix}:{{{quote(board, safe='')}:{quote(period, safe='')}}}"
    return PeriodKeys(f"{base}:z", f"{base}:rows", f"{base}:gone", f"{base}:ready", f"{base}:lock")


def boot_key(prefix: str) -> str:
    """Where the run_id of the Redis server last seen under ``prefix`` is recorded."""
    return f"{prefix}:boot"


def sweep_lock_key(prefix: str) -> str:
    """The lock that lets one process sweep per interval."""
    return f"{prefix}:sweep:lock"


def sweep_mark_key(prefix: str) -> str:
    """When the previous sweep began, in microseconds since 1970."""
    return f"{prefix}:sweep:mark"


def stale_patterns(prefix: str) -> list[str]:
    """SCAN patterns for every period's marker and lock under ``prefix``."""
    pattern = f"{_glob_escape(prefix)}:{{*}}:"
    return [pattern + suffix for suffix in ("ready", "lock")]


def row_args(row: Row) -> list[str | bytes]:
    """``row`` as the apply script takes it: its id, its version, its member."""
    return [str(row.id), _check_version(row), key_bytes(row.key)]


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def _check_version(row: Row) -> str:
    # Versions are BIGINT write counters: the script compares them as decimal strings without
    # sign or leading zeros, so anything outside 0..INT64_MAX would compare wrong.
    if not 0 <= row.version <= INT64_MAX:
        raise ValueError(
            f"row {row.id} has version {row.version}: versions are the database's BIGINT write "
            "counter, from 0 up"
        )
    return str(row.version)
