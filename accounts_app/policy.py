"""The access policy: who may use the portal, and why someone may not.

Pages (``accounts_app.middleware``) and the API (``accounts_app.permissions``) both ask
``access_refusal``, so the two can't drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group

from suspension_app.selectors import suspension_active_for

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
    name = settings.ACCESS_GROUP
    if not name:
        return True
    return bool(user.groups.filter(name=name).exists())  # type: ignore[attr-defined]


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
    if user.is_authenticated:
        suspension = suspension_active_for(user)
        if suspension is not None:
            return Refusal("suspended", suspension_message(suspension), suspension)
    if not access_allowed(user):
        return Refusal("access_denied", NOT_OPEN_MESSAGE)
    return None
