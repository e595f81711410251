"""Per-user storage. For now: the private home folder that sessions work in."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


def home_path(username: str) -> Path:
    """The user's private home under ``STORAGE_HOME_ROOT`` (a name that cannot escape it)."""
    safe = _UNSAFE.sub("_", username).lstrip(".") or "_"
    root: Path = settings.STORAGE_HOME_ROOT
    return root / safe


def home_ensure(username: str) -> Path:
    """Create the user's home if missing (only the owner may enter it) and return it."""
    path = home_path(username)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
