"""The admin's user list: who may use the portal, and the two actions that admit or shut out.

An operator admits a person in the admin: Users → Add user (a username and a password the
person signs in with; the second factor is set up by the person at the first sign-in), then,
in the list, tick them and run "Grant portal access". The actions need Django's
``auth.change_user`` (the action's ``permissions``) and leave alone an account that holds more
than the acting staff member (accounts_app/ranks.py); each change is in the user's history.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts_app.access_grants import (
    AccessChange,
    AccessChangeRefused,
    has_portal_access,
    portal_access_grant,
    portal_access_revoke,
)

GRANT = "Grant portal access"
REVOKE = "Revoke portal access"
# On the admin's "Add user" page: what the person does with what the operator types here,
# and the one step left after saving.
ADD_USER_HELP = (
    "A local account: the person signs in on the portal with this username and password, "
    "then sets up their second factor (an authenticator app) at the first sign-in. "
    f'To let them use the portal: in the list of users, tick them and run "{GRANT}".'
)


def _names(users: list[Any]) -> str:
    return ", ".join(sorted(user.get_username() for user in users))


class PortalAccessFilter(admin.SimpleListFilter):
    """Admitted by the access policy (a member of ACCESS_GROUP, staff or superuser) or not."""

    title = "portal access"
    parameter_name = "portal_access"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(has_portal_access())
        if self.value() == "no":
            return queryset.exclude(has_portal_access())
        return queryset


class PortalAccessActions(admin.ModelAdmin):
    """The user admin's "Grant portal access" and "Revoke portal access" actions."""

    @admin.action(description=GRANT, permissions=["change"])
    def grant_portal_access(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        try:
            outcome = portal_access_grant(users=list(queryset), editor=request.user)
        except AccessChangeRefused as refused:
            self.message_user(request, str(refused), messages.ERROR)
            return
        self._report(request, outcome, grant=True)

    @admin.action(description=REVOKE, permissions=["change"])
    def revoke_portal_access(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        try:
            outcome = portal_access_revoke(users=list(queryset), editor=request.user)
        except AccessChangeRefused as refused:
            self.message_user(request, str(refused), messages.ERROR)
            return
        self._report(request, outcome, grant=False)
        # The policy admits staff whatever their groups.
        kept = [u for u in outcome.changed + outcome.unchanged if u.is_staff or u.is_superuser]
        if kept:
            self.message_user(
                request,
                f"Still admitted, as staff: {_names(kept)}. Untick "
                '"Staff status" on their page to shut them out.',
                messages.WARNING,
            )

    def _report(self, request: HttpRequest, outcome: AccessChange, *, grant: bool) -> None:
        group = settings.ACCESS_GROUP
        for user in outcome.changed:
            verb = "Added to" if grant else "Removed from"
            self.log_change(request, user, f"{verb} the group {group!r} (portal access).")
        if outcome.changed:
            done = "granted to" if grant else "revoked from"
            self.message_user(
                request,
                f"Portal access {done} {_names(outcome.changed)} (group {group!r}).",
                messages.SUCCESS,
            )
        if outcome.unchanged:
            state = "Already in" if grant else "Not in"
            self.message_user(
                request, f"{state} the group {group!r}: {_names(outcome.unchanged)}.", messages.INFO
            )
        if outcome.outranking:
            self.message_user(
                request,
                "Left unchanged, as they hold permissions you do not hold: "
                f"{_names(outcome.outranking)}.",
                messages.ERROR,
            )
