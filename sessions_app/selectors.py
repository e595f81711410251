"""Reads of sessions and environments."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.db.models import Q, QuerySet
from django.utils import timezone

from portal.prepared import Param, PreparedRead, attnames, build, related
from sessions_app.admission import (
    AdmissionPolicy,
    Holding,
    QueueEntry,
    estimate_waits,
    round_up_minutes,
)
from sessions_app.models import Environment, EnvironmentOption, Session


def _launchable_by_member(environments: QuerySet[Environment], user_pk: Any) -> QuerySet[Any]:
    # The user's groups as a subquery, not a list read first: one query fewer.
    groups = Group.objects.filter(user__pk=user_pk).values("pk")
    return environments.filter(
        Q(allowed_groups__isnull=True) | Q(allowed_groups__in=groups)
    ).distinct()


# What every read of the list asks (portal/prepared.py): the environments, and the options of
# every enabled one (a handful), which the read hands to those it returns.
_LAUNCHABLE = PreparedRead(
    lambda param: _launchable_by_member(
        Environment.objects.filter(enabled=True), param.number("user")
    ).values_list(*attnames(Environment)),
    "user",
)
_ENABLED_OPTIONS = PreparedRead(
    lambda param: EnvironmentOption.objects.filter(environment__enabled=True).values_list(
        *attnames(EnvironmentOption)
    )
)


class _Launchable(QuerySet[Environment]):
    """The list as ``environments_launchable`` describes it, with its options prefetched. Read
    with the two prepared reads above when it is only iterated (the API's list, the launcher
    page): building the ORM's query alone cost more than the rest of an API read of the list.
    The ORM's query is built on first use of ``query``: counting it, ``exists()``, anything
    chained (``filter``…) is the ORM's own."""

    def __init__(self, *args: Any, for_user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._for_user = for_user  # until the query is built

    @property
    def query(self) -> Any:
        if self._for_user is not None:
            user_pk, self._for_user = self._for_user, None
            built = _launchable_by_member(Environment.objects.filter(enabled=True), user_pk)
            self._query = built.query
        return self._query

    @query.setter
    def query(self, value: Any) -> None:
        QuerySet.query.fset(self, value)  # type: ignore[attr-defined]

    def _fetch_all(self) -> None:
        if self._result_cache is None and self._for_user is not None:
            self._result_cache = _launchable_with_options(self._for_user)  # type: ignore[assignment]
            self._prefetch_done = True
        super()._fetch_all()


def _launchable_with_options(user_pk: Any) -> list[Environment]:
    environments = [build(Environment, row) for row in _LAUNCHABLE.rows(user=user_pk)]
    options: dict[Any, list[EnvironmentOption]] = {env.pk: [] for env in environments}
    for row in _ENABLED_OPTIONS.rows():
        option = build(EnvironmentOption, row)
        if option.environment_id in options:
            options[option.environment_id].append(option)
    for environment in environments:
        # As prefetch_related leaves it: the manager's queryset, filled.
        related = environment.options.all()
        related._result_cache = options[environment.pk]
        related._prefetch_done = True  # type: ignore[attr-defined]
        environment._prefetched_objects_cache = {"options": related}  # type: ignore[attr-defined]
        for option in options[environment.pk]:
            option.environment = environment
    return environments


def environments_launchable(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Environment]:
    """The enabled environments ``user`` may launch: those open to everyone, and those limited
    to groups the user is in (superusers: all)."""
    environments = Environment.objects.filter(enabled=True).prefetch_related("options")
    if getattr(user, "is_superuser", False):
        return environments
    if not user.is_authenticated:
        return environments.filter(allowed_groups__isnull=True)
    launchable = _Launchable(Environment, for_user=user.pk)
    launchable._prefetch_related_lookups = ("options",)  # type: ignore[attr-defined]
    return launchable


def environment_allowed_for(
    environment: Environment, user: AbstractBaseUser | AnonymousUser
) -> bool:
    return environments_launchable(user).filter(pk=environment.pk).exists()


def admission_policy() -> AdmissionPolicy:
    return AdmissionPolicy(
        aging_minutes=settings.QUEUE_AGING_MINUTES,
        reserve_after_minutes=settings.QUEUE_RESERVE_AFTER_MINUTES,
    )


# How many ended sessions per environment the typical length is taken from.
TYPICAL_SAMPLE = 200


def typical_durations() -> dict[str, float]:
    """Per environment, the median length in seconds of its recent sessions (those that ran);
    environments without any have none (the estimate takes their time limit)."""
    typical: dict[str, float] = {}
    for slug in Environment.objects.values_list("slug", flat=True):
        lengths = [
            (ended - started).total_seconds()
            for started, ended in Session.objects.filter(
                environment__slug=slug, started_at__isnull=False, ended_at__isnull=False
            )
            .order_by("-ended_at")
            .values_list("started_at", "ended_at")[:TYPICAL_SAMPLE]
            if started is not None and ended is not None
        ]
        if lengths:
            typical[slug] = statistics.median(lengths)
    return typical


def queue_entries(typical: dict[str, float] | None = None) -> list[QueueEntry]:
    """Every session waiting for room, as admission sees it (``typical``: expected lengths by
    environment, for estimates; else the time limit)."""
    waiting = Session.objects.filter(
        state=Session.State.QUEUED, admitted_at__isnull=True
    ).select_related("environment")
    return [_entry(session, typical or {}) for session in waiting]


def _entry(session: Session, typical: dict[str, float]) -> QueueEntry:
    environment = session.environment
    limit = environment.max_duration_minutes * 60
    return QueueEntry(
        key=str(session.pk),
        environment=environment.slug,
        cpus=environment.cpus,
        memory_mb=environment.memory_mb,
        priority=environment.priority,
        queued_at=session.created_at,
        boost=session.queue_boost,
        duration_seconds=round(min(limit, typical.get(environment.slug, limit))),
    )


def queue_holdings(now: datetime, typical: dict[str, float] | None = None) -> list[Holding]:
    """What admitted and running sessions hold, and until when: their deadline, or (with
    ``typical``) when sessions of their environment usually end, if that comes first."""
    typical = typical or {}
    holding = Session.objects.filter(
        Q(state__in=[Session.State.STARTING, Session.State.RUNNING, Session.State.STOPPING])
        | Q(state=Session.State.QUEUED, admitted_at__isnull=False)
    ).select_related("environment")
    holdings = []
    for session in holding:
        environment = session.environment
        deadline = session.expires_at or now + environment.max_duration
        release = deadline
        if environment.slug in typical:
            usual_end = (session.started_at or now) + timedelta(seconds=typical[environment.slug])
            release = min(deadline, max(now, usual_end))
        holdings.append(Holding(environment.slug, environment.cpus, environment.memory_mb, release))
    return holdings


def _queue_snapshot() -> tuple[list[str], dict[str, float | None]]:
    """Every waiting session's key in admission order, and its estimated wait."""
    now = timezone.now()
    policy = admission_policy()
    typical = typical_durations()
    entries = queue_entries(typical)
    keys = [entry.key for entry in policy.order(entries, now)]
    limits = dict(Environment.objects.values_list("slug", "max_concurrent"))
    waits = estimate_waits(
        policy,
        entries,
        queue_holdings(now, typical),
        settings.SESSION_POOL_CPUS,
        settings.SESSION_POOL_MEMORY_MB,
        limits,
        now,
    )
    return keys, dict(waits)


# The event streams of every queued person re-read at each change of the queue: they share
# one computation per process for this long (measured: 15 ms each, 50 streams on one thread
# delayed everyone's wake-up by seconds; bench/waiting.py).
SHARED_QUEUE_SECONDS = 1.0
_shared_queue: tuple[float, list[str], dict[str, float | None]] | None = None
_shared_queue_lock = threading.Lock()


def _queue_snapshot_shared() -> tuple[list[str], dict[str, float | None]]:
    global _shared_queue
    with _shared_queue_lock:
        if _shared_queue is None or time.monotonic() - _shared_queue[0] > SHARED_QUEUE_SECONDS:
            keys, waits = _queue_snapshot()
            _shared_queue = (time.monotonic(), keys, waits)
        return _shared_queue[1], _shared_queue[2]


def session_queue_estimate(
    session: Session, shared: bool = False
) -> tuple[int, float | None] | None:
    """A queued session's place (1: next) and its estimated wait in seconds (None: cannot be
    told); None when it is not waiting. ``shared``: from the process's computation of the last
    second (the event streams), not a fresh one."""
    if session.state != Session.State.QUEUED or session.admitted_at is not None:
        return None
    keys, waits = _queue_snapshot_shared() if shared else _queue_snapshot()
    if str(session.pk) not in keys:
        return None
    return keys.index(str(session.pk)) + 1, waits.get(str(session.pk))


def _active_session_query(param: Param) -> QuerySet[Any]:
    return (
        Session.objects.filter(user_id=param.number("user"), state__in=Session.ACTIVE_STATES)
        .order_by("-created_at")
        .values_list(*attnames(Session), *related("environment", Environment))[:1]
    )


# The session read of the API, the pages and the forward-auth: written once (portal/prepared.py).
_ACTIVE_SESSION = PreparedRead(_active_session_query, "user")


def session_active_for(user: AbstractBaseUser | AnonymousUser) -> Session | None:
    """The user's active session (at most one: a constraint), with its environment."""
    if not user.is_authenticated:
        return None
    rows = _ACTIVE_SESSION.rows(user=user.pk)
    if not rows:
        return None
    width = len(attnames(Session))
    session = build(Session, rows[0][:width])
    session.environment = build(Environment, rows[0][width:])
    return session


ROUTABLE_STATES = (Session.State.STARTING, Session.State.RUNNING)


def session_routable_for(
    user: AbstractBaseUser | AnonymousUser, session_id: str | None = None
) -> Session | None:
    """The session whose server requests from ``user`` may reach: their own, starting or
    running (a stopping one's server is on its way out); the one named ``session_id`` (a
    session's own Ingress asks), else their active one (the local router asks by route)."""
    if not user.is_authenticated:
        return None
    sessions = Session.objects.filter(user_id=user.pk, state__in=ROUTABLE_STATES)
    if session_id is not None:
        sessions = sessions.filter(pk=session_id)
    return sessions.only("id", "state", "spawner_state", "user_id").first()


def sessions_for_user(user: AbstractBaseUser, state: str | None = None) -> QuerySet[Session]:
    """The user's sessions, newest first (only those in ``state``, if given)."""
    # The primary key breaks ties, so pages of the history never shift.
    sessions = (
        Session.objects.select_related("environment")
        .filter(user_id=user.pk)
        .order_by("-created_at", "-pk")
    )
    return sessions if state is None else sessions.filter(state=state)


def session_of_user(user: AbstractBaseUser, session_id: Any) -> Session | None:
    """One of the user's own sessions, whatever its state; None for anyone else's (or none)."""
    return sessions_for_user(user).filter(pk=session_id).first()


def sessions_filtered(
    *,
    state: str | None = None,
    active: bool | None = None,
    username: str | None = None,
    environment: str | None = None,
) -> QuerySet[Session]:
    """Everyone's sessions for staff, newest first, with their user and environment; each
    filter narrows them (``active``: only active, or only ended, sessions)."""
    sessions = Session.objects.select_related("user", "environment").order_by("-created_at", "-pk")
    if state is not None:
        sessions = sessions.filter(state=state)
    if active is not None:
        sessions = (
            sessions.filter(state__in=Session.ACTIVE_STATES)
            if active
            else sessions.exclude(state__in=Session.ACTIVE_STATES)
        )
    if username is not None:
        sessions = sessions.filter(user__username=username)
    if environment is not None:
        sessions = sessions.filter(environment__slug=environment)
    return sessions


def session_remaining_seconds(session: Session, now: datetime | None = None) -> int | None:
    """Whole seconds until the deadline (0 once passed), or None before the server runs."""
    if session.expires_at is None or not session.is_active:
        return None
    now = now or timezone.now()
    return max(0, int((session.expires_at - now).total_seconds()))


def session_current_for(user: AbstractBaseUser) -> Session | None:
    """The active session, else the latest one that ended."""
    return session_active_for(user) or sessions_for_user(user).first()


# What a session that fits now but is not admitted yet says: the next admission pass (a task
# sent at launch, beat's sweep at the latest) takes it within moments.
STARTING_SOON = "Starting soon."


def session_phase(session: Session, estimate: tuple[int, float | None] | None) -> str:
    """The state as people are told it: ``state``, except that a queued session which does not
    really wait is ``starting``: admitted already (only its worker has yet to pick it up), or
    fitting now (``estimate``: its place and wait, ``session_queue_estimate``, says 0 s) so the
    next admission pass takes it. Only a session that waits for room is ``queued``."""
    if session.state != Session.State.QUEUED:
        return str(session.state)
    if session.admitted_at is not None or estimate is None:
        # None while not admitted: admitted between the row's read and the queue's.
        return str(Session.State.STARTING)
    wait = estimate[1]
    return str(Session.State.STARTING) if wait is not None and wait <= 0 else str(session.state)


def phase_message(session: Session, phase: str) -> str:
    """The progress words that go with ``phase``: the row's, except "Waiting for resources"
    (written at launch) for a session that does not wait."""
    if phase == Session.State.STARTING and session.state == Session.State.QUEUED:
        return session.message if session.admitted_at is not None else STARTING_SOON
    return session.message


def _display_time(moment: datetime | None) -> str:
    # As the page's template writes times ("14:05 UTC, 7 December 2026"), for in-place updates.
    if moment is None:
        return ""
    local = timezone.localtime(moment)
    return f"{local:%H:%M} {local.tzname()}, {local.day} {local:%B %Y}"


def session_status_payload(session: Session, shared: bool = False) -> dict[str, Any]:
    """What the session page, its event stream and JupyterLab's status bar show: the state as
    people are told it (``phase``, ``state_label``: :func:`session_phase`), progress, the place
    in the queue and the estimated wait (only while it really waits: never a place for a
    session that is starting), time left, and how it ended, as JSON."""
    remaining = session_remaining_seconds(session)
    estimate = session_queue_estimate(session, shared=shared)
    phase = session_phase(session, estimate)
    waiting = estimate is not None and phase == Session.State.QUEUED
    return {
        "id": str(session.id),
        "state": session.state,
        "phase": phase,
        "state_label": Session.State(phase).label,
        "active": session.is_active,
        "message": phase_message(session, phase),
        "queue_position": estimate[0] if waiting and estimate else None,
        "queue_wait_minutes": round_up_minutes(estimate[1]) if waiting and estimate else None,
        "remaining_seconds": remaining,
        "expires_at": session.expires_at.isoformat() if session.expires_at else None,
        "expires_at_display": _display_time(session.expires_at),
        "ended_at": session.ended_at.isoformat() if session.ended_at else None,
        "ended_at_display": _display_time(session.ended_at),
        "url": session.open_url,
        "library_status": session.library_status,
        "reason": session.reason,
        "reason_label": session.get_reason_display() if session.reason else "",
        # When the session page and JupyterLab's status bar warn that the time is nearly up.
        "warning_minutes": settings.SESSION_WARNING_MINUTES,
    }


def session_queue_position(session: Session) -> int | None:
    """1 for the next session to be admitted; None when not waiting."""
    estimate = session_queue_estimate(session)
    return estimate[0] if estimate else None


@dataclass(frozen=True)
class QueuePlace:
    """One waiting session as staff see it: where it stands and why."""

    session: Session
    position: int  # 1: next
    waited_seconds: float
    effective_priority: float
    estimated_wait_seconds: float | None  # None: cannot be told


def queue_overview(now: datetime | None = None) -> list[QueuePlace]:
    """The waiting sessions in admission order, with their place, wait so far, effective
    priority and estimated wait (the same estimate the owner sees on the session page)."""
    now = now or timezone.now()
    policy = admission_policy()
    typical = typical_durations()
    entries = queue_entries(typical)
    ordered = policy.order(entries, now)
    limits = dict(Environment.objects.values_list("slug", "max_concurrent"))
    waits = estimate_waits(
        policy,
        entries,
        queue_holdings(now, typical),
        settings.SESSION_POOL_CPUS,
        settings.SESSION_POOL_MEMORY_MB,
        limits,
        now,
    )
    sessions = {
        str(session.pk): session
        for session in Session.objects.select_related("user", "environment").filter(
            pk__in=[entry.key for entry in ordered],
            state=Session.State.QUEUED,
            admitted_at__isnull=True,
        )
    }
    places: list[QueuePlace] = []
    for entry in ordered:
        session = sessions.get(entry.key)
        if session is None:
            continue  # admitted or gone between the two reads
        places.append(
            QueuePlace(
                session=session,
                position=len(places) + 1,
                waited_seconds=max(0.0, (now - entry.queued_at).total_seconds()),
                effective_priority=policy.effective_priority(entry, now),
                estimated_wait_seconds=waits.get(entry.key),
            )
        )
    return places
