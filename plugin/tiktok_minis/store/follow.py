"""What the tables that every process follows by id (session ends, score removals) share: the
newest id, where a new follower starts, and the rows a follower reads next."""

from __future__ import annotations

from collections.abc import Sequence

from tortoise.expressions import Q
from tortoise.models import Model

__all__ = ["after", "latest_id"]


async def latest_id(model: type[Model]) -> int:
    """The id of the newest row of ``model``'s table (0 when it is empty)."""
    row = await model.all().order_by("-id").only("id").first()
    return int(row.pk) if row is not None else 0


def after(after_id: int, also: Sequence[int] = ()) -> Q:
    """The rows after ``after_id``, and those with an id in ``also`` (the gaps a follower is
    still waiting for)."""
    return Q(id__gt=after_id) | Q(id__in=list(also)) if also else Q(id__gt=after_id)
