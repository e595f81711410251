"""Writes of suspensions: impose and lift (service rule 11).

The database has the last word on "one suspension in force per user" (a partial unique index)
and on "lifted only by staff with a note" (a check constraint); the services check first so
that people get a clear message. The side effects (the e-mail; the
``suspension_imposed`` signal, on which sessions_app stops the session) run on commit, so they
only ever follow a suspension that really exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.errors import ServiceError
from suspension_app.mail import format_utc, mail_reinstated, mail_suspended
from suspension_app.models import Suspension
from suspension_app.selectors import suspension_active_for
from suspension_app.signals import suspension_imposed

log = logging.getLogger(__name__)


class SuspensionError(ServiceError):
    """A suspension that cannot be imposed or lifted."""

    statuses = {"not_staff": 403, "already_lifted": 409}


def _is_staff(user: AbstractBaseUser) -> bool:
    return bool(getattr(user, "is_staff", False))


def _after_commit(func: Callable[[int], None], arg: int) -> None:
    """``func(arg)`` once the transaction commits.

    Robust: the change stands even if the broker or the mail server fails; the failure is
    logged (and the expiry sweep re-sends a lost stop).
    """

    def callback() -> None:
        func(arg)

    # Django names the callback in its log line when it fails.
    callback.__qualname__ = func.__qualname__
    transaction.on_commit(callback, robust=True)


def _announce_imposed(user_id: int) -> None:
    # After commit: the receivers (sessions_app stops the active session) only follow a
    # suspension that exists.
    suspension_imposed.send(sender=Suspension, user_id=user_id)


def suspension_impose(
    *,
    user: AbstractBaseUser,
    reason: str,
    imposed_by: AbstractBaseUser | None = None,
    rule: str = "",
    evidence: dict[str, Any] | None = None,
) -> Suspension:
    """Suspend ``user``, by a staff member (``imposed_by``) or a rule (its name in ``rule``).

    On commit, the user's active session is asked to stop (reason ``suspended``) and the user
    is told by e-mail why, since when and how to appeal. If the user is already suspended,
    the suspension in force is returned unchanged and nothing is sent again; the same holds
    when a concurrent call wins the race (the partial unique index decides).
    Raises :class:`SuspensionError` for a blank reason or an unclear origin.
    """
    reason = (reason or "").strip()
    rule = (rule or "").strip()
    if not reason:
        raise SuspensionError(
            "Give a reason: it is shown to the user and sent to them.", "reason_required"
        )
    if (imposed_by is None) == (not rule):
        raise SuspensionError(
            "A suspension is imposed either by a staff member or by a rule, not both or neither.",
            "invalid_origin",
        )
    if imposed_by is not None and not _is_staff(imposed_by):
        raise SuspensionError("Only staff can suspend users.", "not_staff")
    if imposed_by is not None and imposed_by.pk == user.pk:
        raise SuspensionError("You cannot suspend yourself.", "own_suspension")
    if evidence is not None and not isinstance(evidence, dict):
        raise SuspensionError("Evidence must be a JSON object.", "invalid_evidence")

    existing = suspension_active_for(user)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            suspension = Suspension.objects.create(
                user_id=user.pk,
                created_at=timezone.now(),
                imposed_by_id=imposed_by.pk if imposed_by is not None else None,
                rule=rule,
                reason=reason,
                evidence=evidence or {},
            )
            _after_commit(_announce_imposed, user.pk)
            _after_commit(mail_suspended, suspension.pk)
    except IntegrityError:
        # A concurrent call suspended the user first: theirs is the suspension in force.
        existing = suspension_active_for(user)
        if existing is None:
            raise
        return existing
    log.info(
        "suspended %s (%s): %s",
        user.get_username(),
        f"rule {rule}" if rule else f"by {imposed_by.get_username() if imposed_by else '?'}",
        reason,
    )
    return suspension


def suspension_lift(
    *, suspension: Suspension, lifted_by: AbstractBaseUser, note: str
) -> Suspension:
    """Reinstate the user after an investigation, recorded in ``note`` (internal).

    On commit, the user is told by e-mail that and when they were reinstated (not the note).
    Raises :class:`SuspensionError` if the note is blank, ``lifted_by`` is not staff or is the
    suspended user, or the suspension was already lifted (also by a concurrent call).
    """
    note = (note or "").strip()
    if not note:
        raise SuspensionError(
            "Write an investigation note: a suspension is lifted only after staff have "
            "investigated.",
            "note_required",
        )
    if not _is_staff(lifted_by):
        raise SuspensionError("Only staff can reinstate users.", "not_staff")
    if lifted_by.pk == suspension.user_id:
        raise SuspensionError(
            "You cannot lift your own suspension: another staff member must investigate.",
            "own_suspension",
        )
    now = timezone.now()
    with transaction.atomic():
        lifted = Suspension.objects.filter(pk=suspension.pk, lifted_at__isnull=True).update(
            lifted_at=now, lifted_by_id=lifted_by.pk, investigation_note=note
        )
        if lifted:
            _after_commit(mail_reinstated, suspension.pk)
    suspension.refresh_from_db()
    if not lifted:
        by = suspension.lifted_by.get_username() if suspension.lifted_by else "?"
        when = format_utc(suspension.lifted_at) if suspension.lifted_at else "?"
        raise SuspensionError(
            f"This suspension was already lifted on {when} by {by}.", "already_lifted"
        )
    log.info("reinstated %s by %s", suspension.user, lifted_by.get_username())
    return suspension
