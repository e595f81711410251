"""Reads: the check every request makes, and a user's suspension history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import AnonymousUser, User
from django.utils import timezone

from suspension_app.selectors import suspension_active_for, suspensions_for_user
from suspension_app.services import suspension_impose, suspension_lift
from tests.suspension_app.conftest import suspend_by_rule

pytestmark = pytest.mark.django_db


def test_the_suspension_in_force_is_found_with_one_query(
    owner: User, django_assert_num_queries: Any
) -> None:
    suspension = suspend_by_rule(owner)

    with django_assert_num_queries(1):
        found = suspension_active_for(owner)

    assert found == suspension


def test_nobody_signed_out_is_suspended_and_it_costs_no_query(
    django_assert_num_queries: Any,
) -> None:
    with django_assert_num_queries(0):
        assert suspension_active_for(AnonymousUser()) is None


def test_a_user_never_suspended_or_reinstated_is_not_suspended(
    owner: User, other_user: User, staff: User
) -> None:
    suspension = suspend_by_rule(owner)
    suspension_lift(suspension=suspension, lifted_by=staff, note="Checked.")

    assert suspension_active_for(owner) is None
    assert suspension_active_for(other_user) is None


def test_the_history_lists_a_users_suspensions_newest_first(
    owner: User, other_user: User, staff: User
) -> None:
    # Given two suspensions of the owner a day apart, and one of someone else
    with time_machine.travel(timezone.now() - timedelta(days=1), tick=False):
        first = suspend_by_rule(owner, "First.")
    suspension_lift(suspension=first, lifted_by=staff, note="Checked.")
    second = suspension_impose(user=owner, reason="Second.", imposed_by=staff)
    suspend_by_rule(other_user)
    # then
    assert list(suspensions_for_user(owner)) == [second, first]
