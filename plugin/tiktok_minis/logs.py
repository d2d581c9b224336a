"""Deprecated alias: the JSON log formatter is ``tiktok_minis.JsonFormatter`` now (its module
moved to :mod:`tiktok_minis.ops.logs`). This path keeps working, with a warning, for a release."""

import warnings

from tiktok_minis.ops.logs import JsonFormatter

__all__ = ["JsonFormatter"]

warnings.warn(
    "tiktok_minis.logs is deprecated: use `from tiktok_minis import JsonFormatter`",
    DeprecationWarning,
    stacklevel=2,
)
