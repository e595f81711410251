"""The access policy: who may use the portal, and why someone may not.

Pages (``accounts_app.middleware``) and the API (``accounts_app.permissions``) both ask
``access_refusal``, so the two can't drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.db.models import Exists, OuterRef, QuerySet

from portal.prepared import Param, PreparedRead
from suspension_app.selectors import suspension_active_exists, suspension_active_for

NOT_OPEN_MESSAGE = (
    "This service is not open to you: during the experimental phase only the operator's "
    "staff may use it."
)


@dataclass(frozen=True)
class Refusal:
    """Why a signed-in user may not act: a stable ``code`` and a message for people."""

    code: str
    message: str
    suspension: Any = None


def oidc_enabled() -> bool:
    return bool(settings.OIDC_RP_CLIENT_ID)


def local_login_enabled() -> bool:
    return bool(settings.LOCAL_LOGIN)


def access_group() -> Group | None:
    """The group whose members may use the portal; None when the portal is open to all."""
    name = settings.ACCESS_GROUP
    if not name:
        return None
    group, _ = Group.objects.get_or_create(name=name)
    return group


def access_allowed(user: AbstractBaseUser | AnonymousUser) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    if getattr(user, "is_staff", False) or getattr(user, "is_superuser", False):
        return True
    return not settings.ACCESS_GROUP or _standing(user)[1]


def _admitted(user: AbstractBaseUser | AnonymousUser, in_group: bool) -> bool:
    if getattr(user, "is_staff", False) or getattr(user, "is_superuser", False):
        return True
    return in_group or not settings.ACCESS_GROUP


def _standing_query(param: Param) -> QuerySet[Any]:
    return (
        get_user_model()
        .objects.filter(pk=param.number("user"))
        .order_by()
        .values_list(
            suspension_active_exists(),
            Exists(Group.objects.filter(name=param.text("group"), user=OuterRef("pk"))),
        )
    )


# Asked on every request of a signed-in user: one query, written once (portal/prepared.py).
_STANDING = PreparedRead(_standing_query, "user", "group")


def _standing(user: AbstractBaseUser | AnonymousUser) -> tuple[bool, bool]:
    """Whether ``user`` is suspended, and whether they are in ACCESS_GROUP: read now, in one
    query, never kept."""
    rows = _STANDING.rows(user=user.pk, group=settings.ACCESS_GROUP)
    if not rows:
        return False, False
    return bool(rows[0][0]), bool(rows[0][1])


def suspension_message(suspension: Any) -> str:
    contact = settings.SUSPENSION_APPEAL_CONTACT
    reason = str(suspension.reason).strip()
    if reason and reason[-1] not in ".!?":
        reason += "."
    return (
        f"Your access is suspended since {suspension.created_at:%Y-%m-%d %H:%M} UTC: "
        f"{reason} To appeal, contact {contact}."
    )


def access_refusal(user: AbstractBaseUser | AnonymousUser) -> Refusal | None:
    """Why ``user`` (signed in, second factor passed) may not act; None when they may."""
    if not user.is_authenticated:
        return Refusal("access_denied", NOT_OPEN_MESSAGE)
    suspended, in_group = _standing(user)
    if suspended:
        suspension = suspension_active_for(user)
        if suspension is not None:  # else lifted since: the policy below decides
            return Refusal("suspended", suspension_message(suspension), suspension)
    if not user.is_active or not _admitted(user, in_group):
        return Refusal("access_denied", NOT_OPEN_MESSAGE)
    return None
