"""Validation of the environment-specific options a user submits at launch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sessions_app.models import EnvironmentOption

OptionValue = str | bool | int


class OptionError(ValueError):
    """An option value that does not fit its schema; the message names the option."""


_TRUE = {"true", "on", "1", "yes"}
_FALSE = {"false", "off", "0", "no", ""}


def parse_option_value(option: EnvironmentOption, raw: Any) -> OptionValue:
    """Turn a submitted value (form string or JSON value) into the option's type."""
    kind = option.kind
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise OptionError(f"Option {option.name!r} must be true or false.")
    if kind == "integer":
        if isinstance(raw, bool):
            raise OptionError(f"Option {option.name!r} must be a whole number.")
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise OptionError(f"Option {option.name!r} must be a whole number.") from None
        if isinstance(raw, float) and raw != value:
            raise OptionError(f"Option {option.name!r} must be a whole number.")
        if option.min_value is not None and value < option.min_value:
            raise OptionError(f"Option {option.name!r} must be at least {option.min_value}.")
        if option.max_value is not None and value > option.max_value:
            raise OptionError(f"Option {option.name!r} must be at most {option.max_value}.")
        return value
    if not isinstance(raw, str):
        raise OptionError(f"Option {option.name!r} must be a string.")
    if kind == "choice":
        if raw not in option.choices:
            allowed = ", ".join(option.choices)
            raise OptionError(f"Option {option.name!r} must be one of: {allowed}.")
        return raw
    if len(raw) > 200:
        raise OptionError(f"Option {option.name!r} must be at most 200 characters.")
    return raw


def validate_options(
    schema: Iterable[EnvironmentOption], submitted: Mapping[str, Any] | None
) -> dict[str, OptionValue]:
    """Check submitted options against the schema, fill in defaults, reject unknown names."""
    submitted = dict(submitted or {})
    options = list(schema)
    unknown = sorted(set(submitted) - {option.name for option in options})
    if unknown:
        raise OptionError(f"Unknown option(s) for this environment: {', '.join(unknown)}.")
    result: dict[str, OptionValue] = {}
    for option in options:
        raw = submitted.get(option.name, option.default)
        result[option.name] = parse_option_value(option, raw)
    return result
