"""Admitting people to the portal: membership of the access policy's group (ACCESS_GROUP).

Staff grant and revoke it from the admin's user list (accounts_app/admin.py) under the same
rules as every other change to an account (accounts_app/ranks.py): never on an account that
holds more than they do, and never a group carrying a permission they lack. The group itself
is made by a data migration on a new installation; ``access_group`` (accounts_app/policy.py)
makes it again when ACCESS_GROUP names a new one, so a grant always has a group to add to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from accounts_app.policy import access_group
from accounts_app.ranks import outranks, permissions_not_held

NO_GROUP = (
    "ACCESS_GROUP is empty: the portal is open to everyone who signs in, there is no access "
    "to grant or revoke."
)


class AccessChangeRefused(Exception):
    """The whole change is refused (the reason is for the acting staff member)."""


@dataclass
class AccessChange:
    """What a grant or a revoke did: the accounts changed, those already so, and those left
    alone because they hold more than the acting staff member."""

    changed: list[Any] = field(default_factory=list)
    unchanged: list[Any] = field(default_factory=list)
    outranking: list[Any] = field(default_factory=list)


def has_portal_access() -> Q:
    """Users the access policy admits (accounts_app/policy.py, suspensions aside): active, and
    staff, superuser or a member of ACCESS_GROUP (everyone when ACCESS_GROUP is empty)."""
    admitted = Q(is_staff=True) | Q(is_superuser=True)
    if settings.ACCESS_GROUP:
        member = Group.objects.filter(name=settings.ACCESS_GROUP, user=OuterRef("pk"))
        admitted |= Q(Exists(member))
    else:
        admitted = Q(pk__isnull=False)
    return Q(is_active=True) & admitted


def _group_for(editor: Any) -> Group:
    group = access_group()
    if group is None:
        raise AccessChangeRefused(NO_GROUP)
    carried = Permission.objects.filter(group=group).select_related("content_type")
    missing = permissions_not_held(editor, carried)
    if missing:
        raise AccessChangeRefused(
            f"The group {group.name!r} carries permissions you do not hold: " + ", ".join(missing)
        )
    return group


def _change(users: Iterable[Any], editor: Any, *, grant: bool) -> AccessChange:
    group = _group_for(editor)
    outcome = AccessChange()
    with transaction.atomic():
        members = set(group.user_set.values_list("pk", flat=True))
        for user in users:
            if outranks(user, editor):
                outcome.outranking.append(user)
            elif (user.pk in members) == grant:
                outcome.unchanged.append(user)
            else:
                (user.groups.add if grant else user.groups.remove)(group)
                outcome.changed.append(user)
    return outcome


def portal_access_grant(*, users: Iterable[Any], editor: Any) -> AccessChange:
    """Add ``users`` to the access group, except accounts that outrank ``editor``."""
    return _change(users, editor, grant=True)


def portal_access_revoke(*, users: Iterable[Any], editor: Any) -> AccessChange:
    """Remove ``users`` from the access group, except accounts that outrank ``editor``. Staff
    and superusers keep their access whatever their groups (the policy admits them)."""
    return _change(users, editor, grant=False)
