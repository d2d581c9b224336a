"""The range of a score: a signed 64-bit integer, as PostgreSQL's BIGINT and SQLite's INTEGER
store it. Defined once; the wire, the store and the rank keys all bound scores by it."""

from typing import Final

__all__ = ["INT64_MAX", "INT64_MIN"]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
