"""The public API: exactly the names __all__ lists, importable from the package root."""

from __future__ import annotations

import sys

import pytest
from game import DOCUMENTED_CODES

import tiktok_minis


def test_all_lists_exactly_the_public_names() -> None:
    """__all__ names every public attribute of the package once (ruff keeps it sorted)."""
    public = {
        name
        for name, value in vars(tiktok_minis).items()
        if not name.startswith("_") and not isinstance(value, type(tiktok_minis))
    }
    assert len(set(tiktok_minis.__all__)) == len(tiktok_minis.__all__)
    assert set(tiktok_minis.__all__) == public


def test_every_error_has_a_wire_code() -> None:
    """Every exported error carries one of the documented wire codes."""
    errors = [
        getattr(tiktok_minis, name)
        for name in tiktok_minis.__all__
        if isinstance(getattr(tiktok_minis, name), type)
        and issubclass(getattr(tiktok_minis, name), tiktok_minis.MinisError)
    ]
    assert len(errors) >= 10
    assert {error.code for error in errors} == DOCUMENTED_CODES


def test_the_old_log_formatter_path_still_works_with_a_deprecation_warning() -> None:
    """``tiktok_minis.logs.JsonFormatter`` (documented before the layout moved) still imports."""
    sys.modules.pop("tiktok_minis.logs", None)
    with pytest.warns(DeprecationWarning, match="from tiktok_minis import JsonFormatter"):
        from tiktok_minis.logs import JsonFormatter as Old
    assert Old is tiktok_minis.JsonFormatter
