"""Checks on JSON-like values before they reach the database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def has_nul(value: Any) -> bool:
    """Whether a JSON-like value holds a NUL character anywhere: PostgreSQL's jsonb and text
    columns refuse it, so it must be refused as bad input, not fail as a server error."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(has_nul(key) or has_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(item) for item in value)
    return False
