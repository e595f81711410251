"""Reads of users for staff (the staff API's list of users): who they are, whether they are
suspended, their session now, and their use of the service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from sessions_app.models import Session
from sessions_app.usage import UsageRange, hours_per_user
from suspension_app.models import Suspension
from suspension_app.selectors import suspension_active_exists


def users_for_staff(
    span: UsageRange, *, suspended: bool | None = None, search: str | None = None
) -> QuerySet[Any]:
    """Every user by username, each annotated with their suspension in force (``suspended``,
    ``suspension_id``, ``suspension_reason``, ``suspended_since``), their active session
    (``active_session_id``, ``active_session_state``) and how many sessions they launched,
    in all and in ``span`` (``sessions_total``, ``sessions_in_range``). ``suspended`` keeps
    only (un)suspended users; ``search`` those whose username or e-mail contains it."""
    in_force = Suspension.objects.filter(user_id=OuterRef("pk"), lifted_at__isnull=True)
    active = Session.objects.filter(
        user_id=OuterRef("pk"), state__in=Session.ACTIVE_STATES
    ).order_by("-created_at")
    users = (
        get_user_model()
        .objects.select_related("storage_account")
        .annotate(
            suspended=suspension_active_exists("pk"),
            suspension_id=Subquery(in_force.values("pk")[:1]),
            suspension_reason=Subquery(in_force.values("reason")[:1]),
            suspended_since=Subquery(in_force.values("created_at")[:1]),
            active_session_id=Subquery(active.values("pk")[:1]),
            active_session_state=Subquery(active.values("state")[:1]),
            sessions_total=Count("jupyter_sessions", distinct=True),
            sessions_in_range=Count(
                "jupyter_sessions",
                filter=Q(
                    jupyter_sessions__created_at__gte=span.start,
                    jupyter_sessions__created_at__lt=span.end,
                ),
                distinct=True,
            ),
        )
        .order_by("username", "pk")
    )
    if suspended is not None:
        users = users.filter(suspended=suspended)
    if search:
        users = users.filter(Q(username__icontains=search) | Q(email__icontains=search))
    return users


@dataclass(frozen=True)
class UserHoursInRange:
    cpu_hours: float
    memory_gb_hours: float


def users_hours(span: UsageRange, users: Sequence[Any]) -> dict[Any, UserHoursInRange]:
    """The CPU- and memory-GB-hours of each of ``users`` (a page of them) in ``span``; one
    read for the page, as the usage page counts them."""
    hours = hours_per_user(span, [user.pk for user in users])
    return {user.pk: UserHoursInRange(*hours.get(user.pk, (0.0, 0.0))) for user in users}
