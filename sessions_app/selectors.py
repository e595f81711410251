"""Reads of sessions and environments."""

from __future__ import annotations

import time
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.utils import timezone

from sessions_app.models import Environment, Session


def environments_launchable() -> QuerySet[Environment]:
    return Environment.objects.filter(enabled=True).prefetch_related("options")


def session_active_for(user: AbstractBaseUser | AnonymousUser) -> Session | None:
    if not user.is_authenticated:
        return None
    return (
        Session.objects.select_related("environment")
        .filter(user_id=user.pk, state__in=Session.ACTIVE_STATES)
        .first()
    )


def session_routable_for(user: AbstractBaseUser | AnonymousUser, session_id: str) -> bool:
    """Whether requests to this session's server may pass for ``user``: their own session,
    starting or running (a stopping one's server is on its way out)."""
    if not user.is_authenticated:
        return False
    return Session.objects.filter(
        pk=session_id,
        user_id=user.pk,
        state__in=[Session.State.STARTING, Session.State.RUNNING],
    ).exists()


def session_wait_settled(
    user: AbstractBaseUser, timeout: float, interval: float = 0.1
) -> Session | None:
    """The active session once it is no longer queued or starting, or as it is at ``timeout``.

    Lets a client wait for its server in one request instead of polling (a long poll). While
    waiting it reads only the state column, every ``interval``: many clients waiting at once
    must not take the CPU that their servers need to start.
    """
    deadline = time.monotonic() + timeout
    waiting = (Session.State.QUEUED, Session.State.STARTING)
    active = Session.objects.filter(user_id=user.pk, state__in=Session.ACTIVE_STATES)
    while time.monotonic() < deadline:
        state = active.values_list("state", flat=True).first()
        if state not in waiting:
            break
        time.sleep(interval)
    return session_active_for(user)


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


def session_queue_position(session: Session) -> int | None:
    """1 for the next session to be admitted; None when not queued."""
    if session.state != Session.State.QUEUED:
        return None
    ahead = Session.objects.filter(
        state=Session.State.QUEUED, created_at__lt=session.created_at
    ).count()
    return ahead + 1
