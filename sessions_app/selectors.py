"""Reads of sessions and environments."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.db.models import Q, QuerySet
from django.utils import timezone

from sessions_app.admission import (
    AdmissionPolicy,
    Holding,
    QueueEntry,
    estimate_waits,
    round_up_minutes,
)
from sessions_app.models import Environment, Session


def environments_launchable(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Environment]:
    """The enabled environments ``user`` may launch: those open to everyone, and those limited
    to groups the user is in (superusers: all)."""
    environments = Environment.objects.filter(enabled=True).prefetch_related("options")
    if getattr(user, "is_superuser", False):
        return environments
    groups = (
        list(Group.objects.filter(user__pk=user.pk).values_list("pk", flat=True))
        if user.is_authenticated
        else []
    )
    return environments.filter(
        Q(allowed_groups__isnull=True) | Q(allowed_groups__in=groups)
    ).distinct()


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


def queue_ordered(now: datetime) -> list[QueueEntry]:
    """The waiting sessions in the order admission takes them."""
    return admission_policy().order(queue_entries(), now)


def session_queue_estimate(session: Session) -> tuple[int, float | None] | None:
    """A queued session's place (1: next) and its estimated wait in seconds (None: cannot be
    told); None when it is not waiting."""
    if session.state != Session.State.QUEUED or session.admitted_at is not None:
        return None
    now = timezone.now()
    policy = admission_policy()
    typical = typical_durations()
    entries = queue_entries(typical)
    ordered = policy.order(entries, now)
    keys = [entry.key for entry in ordered]
    if str(session.pk) not in keys:
        return None
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
    return keys.index(str(session.pk)) + 1, waits.get(str(session.pk))


def session_active_for(user: AbstractBaseUser | AnonymousUser) -> Session | None:
    if not user.is_authenticated:
        return None
    return (
        Session.objects.select_related("environment")
        .filter(user_id=user.pk, state__in=Session.ACTIVE_STATES)
        .first()
    )


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


def sessions_for_user(user: AbstractBaseUser) -> QuerySet[Session]:
    # The primary key breaks ties, so pages of the history never shift.
    return (
        Session.objects.select_related("environment")
        .filter(user_id=user.pk)
        .order_by("-created_at", "-pk")
    )


def session_remaining_seconds(session: Session, now: datetime | None = None) -> int | None:
    """Whole seconds until the deadline (0 once passed), or None before the server runs."""
    if session.expires_at is None or not session.is_active:
        return None
    now = now or timezone.now()
    return max(0, int((session.expires_at - now).total_seconds()))


def session_current_for(user: AbstractBaseUser) -> Session | None:
    """The active session, else the latest one that ended."""
    return session_active_for(user) or sessions_for_user(user).first()


def session_status_payload(session: Session) -> dict[str, Any]:
    """What the session page, its event stream and JupyterLab's status bar show: the state,
    progress, place in the queue and time left, as JSON."""
    remaining = session_remaining_seconds(session)
    estimate = session_queue_estimate(session)
    return {
        "id": str(session.id),
        "state": session.state,
        "state_label": session.get_state_display(),
        "active": session.is_active,
        "message": session.message,
        "queue_position": estimate[0] if estimate else None,
        "queue_wait_minutes": round_up_minutes(estimate[1]) if estimate else None,
        "remaining_seconds": remaining,
        "expires_at": session.expires_at.isoformat() if session.expires_at else None,
        "url": session.open_url,
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
