"""Reads whose SQL the ORM writes once per process, for the queries of every API request.

Building a query costs the ORM far more than running it: about 0.5 ms of CPU for the token's
lookup with its user, against 25 µs to send the finished SQL (``docs/benchmarks.md``, "Web
reads"). The few reads that every request makes (the token, the access policy, the caller's
session) are written here once, by the ORM itself, from a queryset whose variable parts are
:class:`Param` markers; each later run binds the values, and Django's own converters turn the
columns into Python values as the ORM would. Nothing is kept of the *results*: every run asks
the database, so a revoked token or a new suspension counts at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import connections
from django.db.models import Model, QuerySet

_M = TypeVar("_M", bound=Model)


class Param:
    """A value bound at each run, by name. The queryset is built with a marker value that no
    real query uses, recognised among the compiled query's parameters."""

    _TEXT = "\x00jlp-param:{}\x00"
    # Within a 32-bit integer column's range: the ORM compiles a lookup out of range as "no
    # rows" (Django's IntegerFieldOverflow). Negative: never a primary key.
    _NUMBER_BASE = -2_147_480_000

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)

    def text(self, name: str) -> str:
        return self._TEXT.format(name)

    def number(self, name: str) -> int:
        return self._NUMBER_BASE - self.names.index(name)

    def slot(self, value: Any) -> str | None:
        """The name of the parameter ``value`` marks, if it is a marker."""
        for name in self.names:
            if value == self.text(name) or (type(value) is int and value == self.number(name)):
                return name
        return None


@dataclass(frozen=True)
class _Slot:
    name: str  # of the value bound here at each run


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]  # constants of the query, and a _Slot where a value is bound
    converters: tuple[tuple[int, tuple[Callable[..., Any], ...], Any], ...]
    width: int


class PreparedRead:
    """``build(param)`` returns a ``values_list`` queryset with ``param.text(name)`` or
    ``param.number(name)`` where the values go; :meth:`rows` runs it with them."""

    def __init__(self, build: Callable[[Param], QuerySet[Any]], *names: str) -> None:
        self._build = build
        self._param = Param(names)
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        self._lock = threading.Lock()

    def _compile(self, alias: str) -> _Compiled:
        key = (alias, connections[alias].vendor)
        found = self._compiled.get(key)
        if found is not None:
            return found
        with self._lock:
            queryset = self._build(self._param).using(alias)
            compiler = queryset.query.get_compiler(using=alias)
            sql, params = compiler.as_sql()
            seen: set[str] = set()
            bound: list[Any] = []
            for value in params:
                name = self._param.slot(value)
                if name is not None:
                    seen.add(name)
                bound.append(_Slot(name) if name is not None else value)
            missing = set(self._param.names) - seen
            if missing:
                raise ValueError(f"the query does not use the parameters {sorted(missing)}")
            width = compiler.col_count
            expressions = [select[0] for select in compiler.select[:width]]
            converters = tuple(
                (position, tuple(functions), expression)
                for position, (functions, expression) in compiler.get_converters(
                    expressions
                ).items()
            )
            found = _Compiled(sql, tuple(bound), converters, width)
            self._compiled[key] = found
        return found

    def rows(self, alias: str = "default", **values: Any) -> list[list[Any]]:
        """The rows for ``values`` (every parameter by name), converted as the ORM would."""
        compiled = self._compile(alias)
        params = [values[p.name] if type(p) is _Slot else p for p in compiled.params]
        connection = connections[alias]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            fetched = cursor.fetchall()
        rows = []
        for raw in fetched:
            row = list(raw[: compiled.width])
            for position, functions, expression in compiled.converters:
                value = row[position]
                for function in functions:
                    value = function(value, expression, connection)
                row[position] = value
            rows.append(row)
        return rows


def attnames(model: type[Model]) -> list[str]:
    """The model's columns in the order of its fields, for ``values_list`` and :func:`build`."""
    return [field.attname for field in model._meta.concrete_fields]


def build(model: type[_M], values: Sequence[Any], alias: str = "default") -> _M:
    """An instance of ``model`` from its columns (in :func:`attnames` order), as loaded."""
    return model.from_db(alias, attnames(model), list(values))


def related(prefix: str, model: type[Model]) -> list[str]:
    """``values_list`` names of a related model's columns: ``user__id``, ``user__username``…"""
    return [f"{prefix}__{name}" for name in attnames(model)]
