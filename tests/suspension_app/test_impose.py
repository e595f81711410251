"""Suspending a user: the record, the session stopped on commit, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import IntegrityError
from django.utils import timezone

from sessions_app.models import Environment
from suspension_app.models import Suspension
from suspension_app.services import SuspensionError, suspension_impose
from tests.suspension_app.conftest import make_session

pytestmark = pytest.mark.django_db

MOMENT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_staff_suspension_records_who_when_why_and_evidence(owner: User, staff: User) -> None:
    # When
    with time_machine.travel(MOMENT, tick=False):
        suspension = suspension_impose(
            user=owner, reason="Mining crypto.", imposed_by=staff, evidence={"ticket": "T-1"}
        )
    # then
    suspension.refresh_from_db()
    assert suspension.user == owner
    assert suspension.created_at == MOMENT
    assert (suspension.imposed_by, suspension.rule) == (staff, "")
    assert suspension.reason == "Mining crypto."
    assert suspension.evidence == {"ticket": "T-1"}
    assert suspension.is_active and suspension.lifted_by is None


def test_a_rule_suspension_names_the_rule_and_no_staff_member(owner: User) -> None:
    suspension = suspension_impose(user=owner, rule="repeated_scratch_quota", reason="Quota.")

    assert (suspension.imposed_by, suspension.rule) == (None, "repeated_scratch_quota")
    assert suspension.imposed_by_display == "rule repeated_scratch_quota"


def test_the_running_session_is_asked_to_stop_once_the_suspension_is_committed(
    owner: User, staff: User, environment: Environment, django_capture_on_commit_callbacks: Any
) -> None:
    # Given a running session
    session = make_session(owner, environment, "running")
    # When staff suspend its owner, before the commit
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        suspension_impose(user=owner, reason="Abuse.", imposed_by=staff)
    session.refresh_from_db()
    assert session.state == "running"
    # and after it
    for callback in callbacks:
        callback()
    # then the session is stopping because its owner is suspended
    session.refresh_from_db()
    assert (session.state, session.reason) == ("stopping", "suspended")


def test_a_queued_session_ends_at_once(
    owner: User, staff: User, environment: Environment, django_capture_on_commit_callbacks: Any
) -> None:
    session = make_session(owner, environment, "queued")

    with django_capture_on_commit_callbacks(execute=True):
        suspension_impose(user=owner, reason="Abuse.", imposed_by=staff)

    session.refresh_from_db()
    assert (session.state, session.reason) == ("stopped", "suspended")


def test_other_users_sessions_keep_running(
    owner: User,
    other_user: User,
    staff: User,
    environment: Environment,
    django_capture_on_commit_callbacks: Any,
) -> None:
    others = make_session(other_user, environment, "running")

    with django_capture_on_commit_callbacks(execute=True):
        suspension_impose(user=owner, reason="Abuse.", imposed_by=staff)

    others.refresh_from_db()
    assert others.state == "running"


@pytest.mark.parametrize("reason", ["", "   \n"])
def test_a_blank_reason_is_refused_and_nothing_is_written(
    owner: User, staff: User, reason: str
) -> None:
    with pytest.raises(SuspensionError) as error:
        suspension_impose(user=owner, reason=reason, imposed_by=staff)

    assert error.value.code == "reason_required"
    assert not Suspension.objects.exists()


@pytest.mark.parametrize("origin", ["both", "neither"])
def test_a_suspension_is_imposed_by_staff_or_a_rule_never_both_or_neither(
    owner: User, staff: User, origin: str
) -> None:
    kwargs: dict[str, Any] = {"imposed_by": staff, "rule": "some_rule"} if origin == "both" else {}
    with pytest.raises(SuspensionError) as error:
        suspension_impose(user=owner, reason="Why.", **kwargs)

    assert error.value.code == "invalid_origin"
    assert not Suspension.objects.exists()


def test_only_staff_suspend_by_hand(owner: User, other_user: User) -> None:
    with pytest.raises(SuspensionError) as error:
        suspension_impose(user=owner, reason="Why.", imposed_by=other_user)

    assert error.value.code == "not_staff"
    assert not Suspension.objects.exists()


def test_staff_cannot_suspend_themselves(staff: User) -> None:
    with pytest.raises(SuspensionError) as error:
        suspension_impose(user=staff, reason="Oops.", imposed_by=staff)

    assert error.value.code == "own_suspension"


def test_evidence_must_be_an_object(owner: User, staff: User) -> None:
    with pytest.raises(SuspensionError) as error:
        suspension_impose(user=owner, reason="Why.", imposed_by=staff, evidence=[1, 2])  # type: ignore[arg-type]

    assert error.value.code == "invalid_evidence"


def test_the_database_refuses_a_suspension_by_both_staff_and_a_rule(
    owner: User, staff: User
) -> None:
    with pytest.raises(IntegrityError):
        Suspension.objects.create(
            user=owner, created_at=timezone.now(), imposed_by=staff, rule="x", reason="Why."
        )


def test_the_database_refuses_a_suspension_without_a_reason(owner: User) -> None:
    with pytest.raises(IntegrityError):
        Suspension.objects.create(user=owner, created_at=timezone.now(), rule="x", reason="")
