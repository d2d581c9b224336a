"""The count of packets and frames the socket guard refused or ignored, by reason.

Process-wide, like the libraries' own state: every hardened server of the process adds here,
and ``ttminis_refused_packets_total{reason}`` reads it through :func:`refused_packets`.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["REFUSAL_REASONS", "count_refusal", "refused_packets"]

#: The labels of ``ttminis_refused_packets_total``.
REFUSAL_REASONS = ("binary", "oversized", "reserved_event", "malformed", "unknown_namespace")

_refused: Counter[str] = Counter()


def count_refusal(reason: str) -> None:
    """Count one packet or frame refused or ignored for ``reason`` (one of the labels)."""
    _refused[reason] += 1


def refused_packets() -> dict[str, int]:
    """Packets and frames refused or ignored so far in this process, by reason."""
    return {reason: _refused[reason] for reason in REFUSAL_REASONS}
