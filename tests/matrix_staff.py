"""The authorization matrix's rules for what staff change in the admin: its actions, the user
form, the session form and the suspension form, and what its pages must never show.

Each rule is requested as every actor (``tests/test_authorization_matrix.py``) and then reads
back whether the change was made (``Rule.effect``): a refusal that still changed something
fails, and so does a permitted action that changed nothing. An action the staff member may not
use is not offered to them, so their POST shows the list again (200: the roles that only see a
list have no action on it) and changes nothing; a staff member who may not even see the list
gets 403.

The objects acted on belong to the bystander (or, for the superuser rules, to a second
superuser), never to the actor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts_app.models import SecondFactorReset
from accounts_app.policy import access_group
from portal.models import ApiToken
from sessions_app.models import Session
from storage_app.accounts import storage_account_for
from storage_app.models import StorageAccount
from suspension_app.models import Suspension
from tests.matrix_rules import (
    ADMIN,
    API_ADMIN_GUARD,
    API_STAFF_ONLY,
    FORBIDDEN,
    OK,
    STAFF,
    STAFF_ROLES,
    Expect,
    Rule,
    World,
    by_permission,
    role_holds,
)

MATRIX_TOKEN = "matrix-token"  # the Jupyter token in the running sessions' spawner state


def _changelist(model: str) -> str:
    return f"admin:{model}_changelist"


# --- What is acted on -------------------------------------------------------------------------


def _bystander_session(world: World) -> Session:
    # ``others`` already plants the bystander's running session (one active session per user).
    if "session" not in world.planted:
        world.planted["session"] = world.running_session(world.bystander)
    session: Session = world.planted["session"]
    return session


def _bystander_account(world: World) -> StorageAccount:
    return storage_account_for(world.bystander)


def _bystander_with_device(world: World) -> User:
    TOTPDevice.objects.get_or_create(user=world.bystander, name="app", confirmed=True)
    return world.bystander


def _queued_session(world: World) -> Session:
    user = User.objects.create_user("queued-matrix")
    session = Session.objects.create(
        user=user,
        environment=world.environment,
        state=Session.State.QUEUED,
        created_at=timezone.now(),
    )
    world.planted["queued"] = session
    return session


def _action(
    model: str, action: str, target: Callable[[World], Any]
) -> tuple[Callable[[World], str], Callable[[World], Mapping[str, Any]]]:
    """The changelist's URL and the POST that applies ``action`` to ``target``."""

    def form(world: World) -> Mapping[str, Any]:
        return {"action": action, "_selected_action": [str(target(world).pk)]}

    return (lambda world: reverse(_changelist(model))), form


def _user_form(user: User, **changes: Any) -> dict[str, Any]:
    """The admin's user form as the page would send it back, with ``changes``; booleans are
    checkboxes (absent: off), many-to-many fields lists of ids."""
    user.refresh_from_db()
    joined = timezone.localtime(user.date_joined)
    fields: dict[str, Any] = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "groups": [group.pk for group in user.groups.all()],
        "user_permissions": [perm.pk for perm in user.user_permissions.all()],
        "date_joined_0": joined.strftime("%Y-%m-%d"),
        "date_joined_1": joined.strftime("%H:%M:%S"),
        **changes,
    }
    return {
        name: ("on" if value else None) if isinstance(value, bool) else value
        for name, value in fields.items()
        if value is not False
    }


def _permission(label: str) -> Permission:
    app_label, _, codename = label.partition(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def _remember(world: World, key: str, value: Any) -> None:
    world.planted.setdefault(key, value)


# --- The effects, read back -------------------------------------------------------------------


def _stopped(world: World) -> bool:
    session = Session.objects.get(pk=_bystander_session(world).pk)
    return session.state == Session.State.STOPPING


def _revoked(world: World) -> bool:
    return ApiToken.objects.get(pk=world.bystander_token.pk).revoked_at is not None


def _scratch_measured(world: World) -> bool:
    return StorageAccount.objects.get(user=world.bystander).scratch_measured_at is not None


def _bystander_without_access(world: World) -> User:
    group = access_group()
    assert group is not None, "the matrix runs with ACCESS_GROUP set"
    world.bystander.groups.remove(group)
    return world.bystander


def _bystander_with_access(world: World) -> User:
    group = access_group()
    assert group is not None, "the matrix runs with ACCESS_GROUP set"
    world.bystander.groups.add(group)
    return world.bystander


def _bystander_has_access(world: World) -> bool:
    return world.bystander.groups.filter(name=settings.ACCESS_GROUP).exists()


def _bystander_lost_access(world: World) -> bool:
    return not _bystander_has_access(world)


def _second_factor_reset(world: World) -> bool:
    return SecondFactorReset.objects.filter(user=world.bystander).exists()


def _became_superuser(world: World) -> bool:
    return not world.planted["was_superuser"] and User.objects.get(pk=world.target.pk).is_superuser


def _granted_token_deletion(world: World) -> bool:
    user = User.objects.get(pk=world.target.pk)
    return user.user_permissions.filter(pk=_permission("portal.delete_apitoken").pk).exists()


def _peer_deactivated(world: World) -> bool:
    return not User.objects.get(pk=world.superuser_peer.pk).is_active


def _peer_suspended(world: World) -> bool:
    return Suspension.objects.filter(user=world.superuser_peer).exists()


def _admission_edited(world: World) -> bool:
    session = Session.objects.get(pk=world.planted["queued"].pk)
    return session.admitted_at is not None or session.queue_boost != 0


# --- The forms --------------------------------------------------------------------------------


def _own_account_url(world: World) -> str:
    _remember(world, "was_superuser", world.target.is_superuser)
    return reverse("admin:auth_user_change", args=[world.target.pk])


def _make_superuser(world: World) -> Mapping[str, Any]:
    return _user_form(world.target, is_staff=True, is_superuser=True)


def _grant_token_deletion(world: World) -> Mapping[str, Any]:
    current = list(world.target.user_permissions.values_list("pk", flat=True))
    return _user_form(
        world.target, user_permissions=[*current, _permission("portal.delete_apitoken").pk]
    )


def _queued_session_url(world: World) -> str:
    return reverse("admin:sessions_app_session_change", args=[_queued_session(world).pk])


def _admit_and_boost(world: World) -> Mapping[str, Any]:
    now = timezone.localtime()
    return {
        "admitted_at_0": now.strftime("%Y-%m-%d"),
        "admitted_at_1": now.strftime("%H:%M:%S"),
        "queue_boost": "32767",
    }


SUSPEND_PEER_REASON = "Matrix test: a superuser suspended."

# The answers of a POST to an admin page that the actor may use: the page again (a refused
# action is not offered; a form with an error), or on to the list.
LIST_AGAIN = Expect(200)
DONE = Expect(302, effect=True)
SAVED = Expect(302)
ERROR_SHOWN = Expect(200)


def _holds_any(role: str, permissions: tuple[str, ...]) -> bool:
    return any(role_holds(role, permission) for permission in permissions)


def _action_rule(
    model: str,
    action: str,
    target: Callable[[World], Any],
    *permissions: str,
    effect: Callable[[World], bool],
    viewers: tuple[str, ...],
) -> Rule:
    """An admin action: done for holders of ``permissions``; shown the list again, without
    the action, for holders of a ``viewers`` permission; 403 for everyone else."""
    url, form = _action(model, action, target)

    def answer(role: str) -> Expect:
        if _holds_any(role, permissions):
            return DONE
        return LIST_AGAIN if _holds_any(role, viewers) else FORBIDDEN

    return Rule(
        _changelist(model),
        "POST",
        {**ADMIN, STAFF: DONE, **{role: answer(role) for role in STAFF_ROLES}},
        url=url,
        form=form,
        effect=effect,
        case=action,
    )


STAFF_RULES: list[Rule] = [
    # --- Actions ------------------------------------------------------------------------------
    _action_rule(
        "sessions_app_session",
        "stop_sessions",
        _bystander_session,
        "sessions_app.change_session",
        effect=_stopped,
        viewers=("sessions_app.view_session",),
    ),
    _action_rule(
        "portal_apitoken",
        "revoke",
        lambda w: w.bystander_token,
        "portal.delete_apitoken",
        effect=_revoked,
        viewers=("portal.view_apitoken", "portal.change_apitoken"),
    ),
    _action_rule(
        "storage_app_storageaccount",
        "cleanup_now",
        _bystander_account,
        "storage_app.run_cleanup",
        effect=_scratch_measured,
        viewers=("storage_app.view_storageaccount", "storage_app.change_storageaccount"),
    ),
    _action_rule(
        "storage_app_storageaccount",
        "scan_now",
        _bystander_account,
        "storage_app.change_storageaccount",
        effect=_scratch_measured,
        viewers=("storage_app.view_storageaccount",),
    ),
    _action_rule(
        "auth_user",
        "reset_second_factor",
        _bystander_with_device,
        "auth.change_user",
        effect=_second_factor_reset,
        viewers=("auth.view_user",),
    ),
    _action_rule(
        "auth_user",
        "grant_portal_access",
        _bystander_without_access,
        "auth.change_user",
        effect=_bystander_has_access,
        viewers=("auth.view_user",),
    ),
    _action_rule(
        "auth_user",
        "revoke_portal_access",
        _bystander_with_access,
        "auth.change_user",
        effect=_bystander_lost_access,
        viewers=("auth.view_user",),
    ),
    # --- The user form: nobody grants what they do not hold -----------------------------------
    # Superuser and staff status are not in the form of a staff member who is not a superuser:
    # what they send for them is ignored.
    Rule(
        "admin:auth_user_change",
        "POST",
        {**ADMIN, STAFF: SAVED, **by_permission(SAVED, "auth.change_user")},
        url=_own_account_url,
        form=_make_superuser,
        effect=_became_superuser,
        case="make oneself superuser",
    ),
    Rule(
        "admin:auth_user_change",
        "POST",
        {
            **ADMIN,
            STAFF: Expect(302, effect=True),
            **by_permission(ERROR_SHOWN, "auth.change_user"),
        },
        url=_own_account_url,
        form=_grant_token_deletion,
        effect=_granted_token_deletion,
        case="grant a permission not held",
    ),
    # A superuser's account is out of reach of every staff member who is not one.
    Rule(
        "admin:auth_user_change",
        "POST",
        {**ADMIN, STAFF: Expect(302, effect=True), **dict.fromkeys(STAFF_ROLES, FORBIDDEN)},
        url=lambda w: reverse("admin:auth_user_change", args=[w.superuser_peer.pk]),
        form=lambda w: _user_form(w.superuser_peer, is_active=False),
        effect=_peer_deactivated,
        case="deactivate a superuser",
    ),
    # --- A session's row: never edited by hand, admission fields above all ------------------
    Rule(
        "admin:sessions_app_session_change",
        "POST",
        {**ADMIN, STAFF: FORBIDDEN, **dict.fromkeys(STAFF_ROLES, FORBIDDEN)},
        url=_queued_session_url,
        form=_admit_and_boost,
        effect=_admission_edited,
        case="admit and boost a queued session",
    ),
    # Read-only for whoever sees it, and never with the server's Jupyter token.
    Rule(
        "admin:sessions_app_session_change",
        "GET",
        {
            **ADMIN,
            STAFF: OK,
            **by_permission(OK, "sessions_app.view_session", "sessions_app.change_session"),
        },
        url=lambda w: reverse("admin:sessions_app_session_change", args=[_bystander_session(w).pk]),
        secret=lambda w: MATRIX_TOKEN,
        case="no spawner state",
    ),
    # --- Suspending a superuser: superusers only ----------------------------------------------
    Rule(
        "admin:suspension_app_suspension_add",
        "POST",
        {
            **ADMIN,
            STAFF: DONE,
            **by_permission(ERROR_SHOWN, "suspension_app.add_suspension"),
        },
        form=lambda w: {"user": w.superuser_peer.pk, "reason": SUSPEND_PEER_REASON, "evidence": ""},
        effect=_peer_suspended,
        case="suspend a superuser",
    ),
    Rule(
        "api-admin-suspensions",
        "POST",
        {
            **API_ADMIN_GUARD,
            STAFF: Expect(201, effect=True),
            **dict.fromkeys(STAFF_ROLES, API_STAFF_ONLY),
        },
        form=lambda w: {"user": w.superuser_peer.username, "reason": SUSPEND_PEER_REASON},
        effect=_peer_suspended,
        case="suspend a superuser",
    ),
]
