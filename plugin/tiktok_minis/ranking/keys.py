"""A score row's place in its board's total order, as one integer.

The order is the one ``store.scores.Ranking`` defines: the better score first, then the row that
reached it earlier, then the smaller row id. Each part becomes an unsigned 64-bit field, so that
comparing two keys as integers (or as 24 big-endian bytes, which Redis does for members of equal
score) compares the rows exactly, over the whole signed 64-bit score range:

- bits 128..191: the score, turned so that the better score is smaller (``INT64_MAX - score``
  on ``desc`` boards, ``score - INT64_MIN`` on ``asc`` ones);
- bits 64..127: when the score was reached, in microseconds since 1970 (UTC);
- bits 0..63: the row id.

A double (Redis's own score) cannot hold this: it has 53 bits of mantissa for 192 bits of key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final, Literal

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "KEY_BYTES",
    "Order",
    "key_bytes",
    "micros",
    "rank_key",
    "row_id_of",
    "score_of",
]

from tiktok_minis.support.int64 import INT64_MAX, INT64_MIN

Order = Literal["desc", "asc"]

_FIELD: Final = 64
_MASK: Final = (1 << _FIELD) - 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
#: A key as bytes: three 64-bit fields, big-endian.
KEY_BYTES: Final = 24


def micros(at: datetime) -> int:
    """``at`` in whole microseconds since 1970, exactly (a naive ``at`` is taken to be UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - _EPOCH) // _MICROSECOND


def rank_key(order: Order, score: int, reached_at_us: int, row_id: int) -> int:
    """The key of a row: smaller keys rank ahead."""
    turned = INT64_MAX - score if order == "desc" else score - INT64_MIN
    return (turned << (2 * _FIELD)) | (reached_at_us << _FIELD) | row_id


def score_of(order: Order, key: int) -> int:
    """The score a key holds."""
    turned = key >> (2 * _FIELD)
    return INT64_MAX - turned if order == "desc" else turned + INT64_MIN


def row_id_of(key: int) -> int:
    """The row id a key holds."""
    return key & _MASK


def key_bytes(key: int) -> bytes:
    """The key as bytes whose lexicographic order is the keys' order."""
    return key.to_bytes(KEY_BYTES, "big")
