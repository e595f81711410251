"""Reinstating a user: only by staff, only with an investigation note, only once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import IntegrityError
from django.utils import timezone

from suspension_app.models import Suspension
from suspension_app.services import SuspensionError, suspension_impose, suspension_lift
from tests.suspension_app.conftest import suspend_by_rule

pytestmark = pytest.mark.django_db

MOMENT = datetime(2030, 1, 3, 9, 30, tzinfo=UTC)


def test_lifting_records_who_when_and_the_investigation_note(owner: User, staff: User) -> None:
    # Given
    suspension = suspend_by_rule(owner)
    # When
    with time_machine.travel(MOMENT, tick=False):
        lifted = suspension_lift(
            suspension=suspension, lifted_by=staff, note="  Checked the logs: a bug.  "
        )
    # then
    lifted.refresh_from_db()
    assert not lifted.is_active
    assert (lifted.lifted_at, lifted.lifted_by) == (MOMENT, staff)
    assert lifted.investigation_note == "Checked the logs: a bug."


@pytest.mark.parametrize("note", ["", "  \n\t "])
def test_lifting_without_a_note_is_refused_and_changes_nothing(
    owner: User, staff: User, note: str
) -> None:
    suspension = suspend_by_rule(owner)

    with pytest.raises(SuspensionError, match="investigation note") as error:
        suspension_lift(suspension=suspension, lifted_by=staff, note=note)

    assert error.value.code == "note_required"
    suspension.refresh_from_db()
    assert suspension.is_active and suspension.lifted_by is None


def test_lifting_twice_is_refused_and_says_who_lifted_it(
    owner: User, staff: User, django_user_model: type[User]
) -> None:
    # Given a suspension lifted by one staff member
    suspension = suspend_by_rule(owner)
    suspension_lift(suspension=suspension, lifted_by=staff, note="Fine.")
    colleague = django_user_model.objects.create_user("colleague", is_staff=True)
    # When a colleague lifts it too
    with pytest.raises(SuspensionError, match="already lifted .* by staff") as error:
        suspension_lift(suspension=suspension, lifted_by=colleague, note="Also fine.")
    # then the first reinstatement stands
    assert error.value.code == "already_lifted"
    suspension.refresh_from_db()
    assert (suspension.lifted_by, suspension.investigation_note) == (staff, "Fine.")


def test_a_lift_from_a_stale_copy_loses_to_the_one_that_came_first(
    owner: User, staff: User, django_user_model: type[User]
) -> None:
    # Given two staff members who opened the same suspension at the same time
    suspension = suspend_by_rule(owner)
    mine = Suspension.objects.get(pk=suspension.pk)
    theirs = Suspension.objects.get(pk=suspension.pk)
    colleague = django_user_model.objects.create_user("colleague", is_staff=True)
    # When both lift it
    suspension_lift(suspension=theirs, lifted_by=colleague, note="Theirs.")
    with pytest.raises(SuspensionError) as error:
        suspension_lift(suspension=mine, lifted_by=staff, note="Mine.")
    # then only the first counts (a conditional UPDATE decides, not the copy in memory)
    assert error.value.code == "already_lifted"
    suspension.refresh_from_db()
    assert (suspension.lifted_by, suspension.investigation_note) == (colleague, "Theirs.")


def test_only_staff_lift_suspensions(owner: User, other_user: User) -> None:
    suspension = suspend_by_rule(owner)

    with pytest.raises(SuspensionError) as error:
        suspension_lift(suspension=suspension, lifted_by=other_user, note="Let me in.")

    assert error.value.code == "not_staff"
    suspension.refresh_from_db()
    assert suspension.is_active


def test_staff_cannot_lift_their_own_suspension(staff: User) -> None:
    suspension = suspension_impose(user=staff, rule="some_rule", reason="Quota.")

    with pytest.raises(SuspensionError) as error:
        suspension_lift(suspension=suspension, lifted_by=staff, note="It was me, all fine.")

    assert error.value.code == "own_suspension"


def test_the_database_refuses_a_lift_without_a_note(owner: User, staff: User) -> None:
    suspension = suspend_by_rule(owner)

    with pytest.raises(IntegrityError):
        Suspension.objects.filter(pk=suspension.pk).update(
            lifted_at=timezone.now(), lifted_by=staff
        )
