"""Small typed readers for environment variables, used by ``portal.settings``.

Every reader fails with :class:`ImproperlyConfigured` naming the variable, so a bad value stops
the process at start-up instead of surfacing later. ``env_secret`` also reads ``NAME_FILE``
(a path to a file holding the value), the convention for secrets mounted into containers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_port_range(name: str, default: tuple[int, int]) -> tuple[int, int]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        low, high = (int(part) for part in raw.split("-", 1))
    except ValueError:
        raise ImproperlyConfigured(f"{name} must look like 20000-29999, got {raw!r}") from None
    if not 1024 <= low < high <= 65535:
        raise ImproperlyConfigured(f"{name} must be an increasing range within 1024-65535")
    return low, high


def env_secret(name: str, default: str = "") -> str:
    """``NAME`` or the contents of the file named by ``NAME_FILE`` (not both)."""
    file_var = f"{name}_FILE"
    path = os.environ.get(file_var)
    if path and name in os.environ:
        raise ImproperlyConfigured(f"set either {name} or {file_var}, not both")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{file_var}: cannot read {path}: {exc}") from None
    return os.environ.get(name, default)


_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$")


def parse_rate(name: str, value: str) -> tuple[int, int] | None:
    """``"1200/minute"`` → (1200, 60) requests per seconds; ``"off"`` (or empty) → None.
    ``name``: the variable, for the error."""
    if value.strip().lower() in ("", "off", "none"):
        return None
    found = _RATE.match(value)
    if found is None or int(found.group(1)) < 1:
        raise ImproperlyConfigured(
            f"{name} must be a rate such as 1200/minute (per second, minute, hour or day) or "
            f"off, got {value!r}"
        )
    return int(found.group(1)), _PERIODS[found.group(2)]


def env_rate(name: str, default: str) -> str:
    """A request rate (``N/minute``…) or ``off``, checked at start."""
    value = env_str(name, default)
    parse_rate(name, value)
    return value
