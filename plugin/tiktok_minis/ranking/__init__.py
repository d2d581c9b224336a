"""Rank indexes: a board's exact order kept in O(log n), derived from the database.

The database holds the scores and stays the source of truth; an index holds, per board and
period, each score row's place in the board's total order (:mod:`keys`), so a rank, the top and
the rows around a player cost O(log n) instead of a count that grows with the rank. Two
implementations share :class:`RankIndex`: :class:`MemoryRankIndex` in the process, for the
embedded default (one process), and :class:`RedisRankIndex` on Redis sorted sets, for several
processes (``tiktok_minis.ranking.redis``: it needs the ``redis`` extra, so it is imported
only where it is used). An index that is not loaded yet (or was lost) says so, and the caller
answers from the database meanwhile: a rank is never wrong, only slower for a moment.
"""

from tiktok_minis.ranking.base import Loader, NoRankIndex, RankIndex, Row
from tiktok_minis.ranking.keys import rank_key, row_id_of, score_of
from tiktok_minis.ranking.memory import MemoryRankIndex

__all__ = [
    "Loader",
    "MemoryRankIndex",
    "NoRankIndex",
    "RankIndex",
    "Row",
    "rank_key",
    "row_id_of",
    "score_of",
]
