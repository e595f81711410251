"""Usage figures (read-only): sessions, CPU- and memory-hours per UTC day and environment, queue
waits, failures, top users and storage totals, for the staff dashboard and a user's own page.

Counts are aggregated in SQL. Hours are not: a session's hours are split across the days it
spans, which SQL cannot do portably (PostgreSQL and SQLite both run this); so the rows that
overlap the range are read as plain tuples, one pass, and the range (at most ``MAX_DAYS``) bounds
how many there are.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate

from sessions_app.models import Environment, Session
from storage_app.models import StorageAccount

DEFAULT_DAYS = 30
MAX_DAYS = 92  # a quarter: bounds the rows one dashboard reads
TOP_USERS = 10
DAY = timedelta(days=1)


@dataclass(frozen=True)
class UsageRange:
    """Whole UTC days ``first``..``last`` (inclusive); figures stop at ``now``."""

    first: date
    last: date
    now: datetime

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return min(self.now, datetime.combine(self.last + DAY, time.min, tzinfo=UTC))

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


def usage_range(now: datetime, days: int = DEFAULT_DAYS) -> UsageRange:
    """The last ``days`` UTC days, today included (clamped to 1..``MAX_DAYS``)."""
    days = max(1, min(MAX_DAYS, days))
    today = now.astimezone(UTC).date()
    return UsageRange(first=today - timedelta(days=days - 1), last=today, now=now)


@dataclass(frozen=True)
class DayRow:
    """One day and environment: sessions started and resource-hours used that day."""

    day: date
    environment: str  # the slug
    sessions_started: int
    cpu_hours: float
    memory_gb_hours: float


@dataclass(frozen=True)
class WaitRow:
    environment: str
    admitted: int
    median_seconds: float
    p95_seconds: float

    @property
    def median_minutes(self) -> float:
        return self.median_seconds / 60

    @property
    def p95_minutes(self) -> float:
        return self.p95_seconds / 60


@dataclass(frozen=True)
class UserHours:
    username: str
    cpu_hours: float
    memory_gb_hours: float


@dataclass(frozen=True)
class StorageTotals:
    accounts_measured: int
    private_bytes: int
    scratch_bytes: int


@dataclass(frozen=True)
class UsageReport:
    range: UsageRange
    environments: list[str]  # slugs, in the environments' order, those with any figure
    rows: list[DayRow]  # every day × every listed environment, zeros included
    waits: list[WaitRow]
    failures: list[tuple[str, int]]  # (reason label, count), most first
    top_users: list[UserHours]
    storage: StorageTotals

    def series(self, field: str) -> dict[str, list[float]]:
        """``field`` of the rows per environment, one value per day (for the charts)."""
        by_key = {(row.day, row.environment): getattr(row, field) for row in self.rows}
        return {
            slug: [by_key.get((day, slug), 0) for day in self.range.days]
            for slug in self.environments
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation between the closest ranks (as
    PostgreSQL's ``percentile_cont``); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def split_by_day(start: datetime, end: datetime) -> list[tuple[date, float]]:
    """The seconds of ``start``–``end`` that fall on each UTC day."""
    parts: list[tuple[date, float]] = []
    cursor = start.astimezone(UTC)
    end = end.astimezone(UTC)
    while cursor < end:
        midnight = datetime.combine(cursor.date() + DAY, time.min, tzinfo=UTC)
        stop = min(end, midnight)
        parts.append((cursor.date(), (stop - cursor).total_seconds()))
        cursor = stop
    return parts


@dataclass(frozen=True)
class _Use:
    day: date
    environment_id: int
    user_id: int
    cpu_hours: float
    memory_gb_hours: float


def _uses(sessions: Iterable[tuple[Any, ...]], span: UsageRange) -> Iterable[_Use]:
    """Each session's resource-hours per day inside the range: from its start to its end, or
    to now while it is active; an ended row without ``ended_at`` counts nothing (its end is
    unknown)."""
    active = set(Session.ACTIVE_STATES)
    for session_row in sessions:
        env_id, user_id, state, started, ended, cpus, memory_mb = session_row
        if ended is None:
            if state not in active:
                continue
            ended = span.now
        for day, seconds in split_by_day(max(started, span.start), min(ended, span.end)):
            hours = seconds / 3600
            yield _Use(day, env_id, user_id, hours * cpus, hours * memory_mb / 1024)


def _overlapping(
    span: UsageRange,
    user: AbstractBaseUser | None = None,
    user_ids: Sequence[Any] | None = None,
) -> Iterable[tuple[Any, ...]]:
    sessions = Session.objects.filter(started_at__isnull=False, started_at__lt=span.end).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=span.start)
    )
    if user is not None:
        sessions = sessions.filter(user_id=user.pk)
    if user_ids is not None:
        sessions = sessions.filter(user_id__in=user_ids)
    return sessions.values_list(
        "environment_id",
        "user_id",
        "state",
        "started_at",
        "ended_at",
        "environment__cpus",
        "environment__memory_mb",
    ).iterator()


def _started_per_day(
    span: UsageRange, user: AbstractBaseUser | None = None
) -> dict[tuple[date, int], int]:
    sessions = Session.objects.filter(started_at__gte=span.start, started_at__lt=span.end)
    if user is not None:
        sessions = sessions.filter(user_id=user.pk)
    counted = (
        sessions.annotate(day=TruncDate("started_at", tzinfo=UTC))
        .values("day", "environment_id")
        .annotate(n=Count("id"))
    )
    return {(row["day"], row["environment_id"]): row["n"] for row in counted}


def _day_rows(
    span: UsageRange, user: AbstractBaseUser | None = None
) -> tuple[dict[tuple[date, int], list[float]], dict[int, list[float]]]:
    """(day, environment) → [sessions started, CPU-hours, memory-GB-hours], and the hours per
    user."""
    table: dict[tuple[date, int], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    per_user: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for key, count in _started_per_day(span, user).items():
        table[key][0] = count
    for use in _uses(_overlapping(span, user), span):
        cell = table[(use.day, use.environment_id)]
        cell[1] += use.cpu_hours
        cell[2] += use.memory_gb_hours
        per_user[use.user_id][0] += use.cpu_hours
        per_user[use.user_id][1] += use.memory_gb_hours
    return table, per_user


def _waits(span: UsageRange, slugs: dict[int, str]) -> list[WaitRow]:
    waited: dict[int, list[float]] = defaultdict(list)
    admitted = Session.objects.filter(
        admitted_at__gte=span.start, admitted_at__lt=span.end
    ).values_list("environment_id", "created_at", "admitted_at")
    for env_id, created, admitted_at in admitted.iterator():
        assert admitted_at is not None  # the filter above
        waited[env_id].append(max(0.0, (admitted_at - created).total_seconds()))
    return [
        WaitRow(slugs[env_id], len(values), percentile(values, 50), percentile(values, 95))
        for env_id, values in waited.items()
    ]


def _failures(span: UsageRange) -> list[tuple[str, int]]:
    labels = dict(Session.Reason.choices)
    counted = (
        Session.objects.filter(
            state=Session.State.FAILED, created_at__gte=span.start, created_at__lt=span.end
        )
        .values("reason")
        .annotate(n=Count("id"))
        .order_by("-n", "reason")
    )
    return [(str(labels.get(row["reason"], row["reason"]) or "-"), row["n"]) for row in counted]


def storage_totals() -> StorageTotals:
    """The sum of the latest measurement of every account's private and scratch storage."""
    totals = StorageAccount.objects.aggregate(
        private=Sum("private_bytes"),
        scratch=Sum("scratch_bytes"),
        measured=Count(
            "id", filter=Q(private_bytes__isnull=False) | Q(scratch_bytes__isnull=False)
        ),
    )
    return StorageTotals(
        accounts_measured=totals["measured"] or 0,
        private_bytes=totals["private"] or 0,
        scratch_bytes=totals["scratch"] or 0,
    )


def _report_rows(
    span: UsageRange, table: dict[tuple[date, int], list[float]]
) -> tuple[list[str], list[DayRow], dict[int, str]]:
    env_ids = {env_id for _, env_id in table}
    environments = list(Environment.objects.filter(pk__in=env_ids).values_list("pk", "slug"))
    slugs = dict(Environment.objects.values_list("pk", "slug"))
    rows = [
        DayRow(
            day=day,
            environment=slug,
            sessions_started=int(table.get((day, env_id), [0])[0]),
            cpu_hours=table.get((day, env_id), [0, 0.0])[1],
            memory_gb_hours=table.get((day, env_id), [0, 0.0, 0.0])[2],
        )
        for day in span.days
        for env_id, slug in environments
    ]
    return [slug for _, slug in environments], rows, slugs


def usage_report(span: UsageRange) -> UsageReport:
    """Every figure of the staff dashboard for ``span``."""
    table, per_user = _day_rows(span)
    environments, rows, slugs = _report_rows(span, table)
    top = sorted(per_user.items(), key=lambda item: (-item[1][0], item[0]))[:TOP_USERS]
    names = dict(
        get_user_model().objects.filter(pk__in=[pk for pk, _ in top]).values_list("pk", "username")
    )
    return UsageReport(
        range=span,
        environments=environments,
        rows=rows,
        waits=sorted(_waits(span, slugs), key=lambda w: w.environment),
        failures=_failures(span),
        top_users=[UserHours(names.get(pk, str(pk)), cpu, mem) for pk, (cpu, mem) in top],
        storage=storage_totals(),
    )


def hours_per_user(span: UsageRange, user_ids: Sequence[Any]) -> dict[Any, tuple[float, float]]:
    """CPU- and memory-GB-hours of each of ``user_ids`` in ``span`` (the staff API's list of
    users, a page at a time); users without any are left out."""
    hours: dict[Any, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for use in _uses(_overlapping(span, user_ids=user_ids), span):
        hours[use.user_id][0] += use.cpu_hours
        hours[use.user_id][1] += use.memory_gb_hours
    return {user_id: (cpu, memory) for user_id, (cpu, memory) in hours.items()}


@dataclass(frozen=True)
class UserDay:
    day: date
    sessions_started: int
    cpu_hours: float


def user_usage(user: AbstractBaseUser, span: UsageRange) -> list[UserDay]:
    """One user's sessions started and CPU-hours per day (their own sessions only)."""
    table, _ = _day_rows(span, user)
    started: dict[date, int] = defaultdict(int)
    hours: dict[date, float] = defaultdict(float)
    for (day, _env), (count, cpu, _mem) in table.items():
        started[day] += int(count)
        hours[day] += cpu
    return [UserDay(day, started[day], hours[day]) for day in span.days]
