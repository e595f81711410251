"""Reads of suspensions."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Exists, OuterRef, QuerySet

from suspension_app.models import Suspension


def suspension_active_for(user: AbstractBaseUser | AnonymousUser) -> Suspension | None:
    """The user's suspension in force, or None.

    Cheap enough for every request: one query on the partial unique index
    ``one_active_suspension_per_user``, no joins.
    """
    if not user.is_authenticated:
        return None
    return Suspension.objects.filter(user_id=user.pk, lifted_at__isnull=True).first()


def suspension_active_exists(user_column: str = "pk") -> Exists:
    """Whether the user in the outer query's ``user_column`` is suspended, as a subquery: the
    access policy asks it in the one query of its check (accounts_app.policy)."""
    return Exists(Suspension.objects.filter(user_id=OuterRef(user_column), lifted_at__isnull=True))


def suspensions_for_user(user: AbstractBaseUser) -> QuerySet[Suspension]:
    """Every suspension of the user, lifted ones included, newest first."""
    return suspensions_filtered(user=user)


def suspensions_filtered(
    *,
    active: bool | None = None,
    user: AbstractBaseUser | None = None,
    username: str | None = None,
) -> QuerySet[Suspension]:
    """Suspensions newest first, optionally only active (or lifted) ones, of one user."""
    queryset = Suspension.objects.select_related("user", "imposed_by", "lifted_by").order_by(
        "-created_at", "-pk"
    )
    if active is not None:
        queryset = queryset.filter(lifted_at__isnull=active)
    if user is not None:
        queryset = queryset.filter(user_id=user.pk)
    if username is not None:
        queryset = queryset.filter(user__username=username)
    return queryset


def suspension_by_id(pk: int) -> Suspension | None:
    return suspensions_filtered().filter(pk=pk).first()
