"""At most one suspension in force per user: suspending twice, and simultaneously."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, connection
from django.utils import timezone

from suspension_app.models import Suspension
from suspension_app.services import suspension_impose, suspension_lift

SIMULTANEOUS = 20


@pytest.mark.django_db
def test_suspending_a_suspended_user_returns_the_suspension_in_force_and_mails_once(
    owner: User, staff: User, mailoutbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    # Given a suspended user
    with django_capture_on_commit_callbacks(execute=True):
        first = suspension_impose(user=owner, reason="First.", imposed_by=staff)
    # When a rule suspends them again
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = suspension_impose(user=owner, rule="some_rule", reason="Second.")
    # then the first suspension stands, unchanged, and no second mail goes out
    assert again.pk == first.pk and again.reason == "First."
    assert Suspension.objects.count() == 1
    assert callbacks == []
    assert len(mailoutbox) == 1


@pytest.mark.django_db
def test_the_database_allows_one_suspension_in_force_per_user(owner: User, staff: User) -> None:
    suspension_impose(user=owner, reason="First.", imposed_by=staff)

    with pytest.raises(IntegrityError):
        Suspension.objects.create(
            user=owner, created_at=timezone.now(), rule="some_rule", reason="Second."
        )


@pytest.mark.django_db
def test_a_reinstated_user_can_be_suspended_again_and_both_are_kept(
    owner: User, staff: User
) -> None:
    # Given a suspension, lifted after an investigation
    first = suspension_impose(user=owner, reason="First.", imposed_by=staff)
    suspension_lift(suspension=first, lifted_by=staff, note="False positive.")
    # When the user is suspended again
    second = suspension_impose(user=owner, reason="Second.", imposed_by=staff)
    # then it is a new suspension, and the history holds both
    assert second.pk != first.pk and second.is_active
    assert list(Suspension.objects.filter(user=owner).order_by("pk")) == [first, second]


@pytest.mark.django_db(transaction=True)
def test_simultaneous_suspensions_of_one_user_give_one_and_one_mail(
    owner: User, staff: User, mailoutbox: list[Any]
) -> None:
    # Given 20 suspensions of one user (staff and a rule) that start at the same instant
    start = Barrier(SIMULTANEOUS)

    def impose(index: int) -> int:
        start.wait()
        try:
            if index % 2:
                return suspension_impose(user=owner, rule="some_rule", reason=f"Rule {index}.").pk
            return suspension_impose(user=owner, imposed_by=staff, reason=f"Staff {index}.").pk
        finally:
            connection.close()

    # When they all run
    with ThreadPoolExecutor(max_workers=SIMULTANEOUS) as pool:
        results = list(pool.map(impose, range(SIMULTANEOUS)))

    # then one suspension exists, every call returned it, and the user got one e-mail
    suspension = Suspension.objects.get()
    assert set(results) == {suspension.pk}
    assert len(mailoutbox) == 1
