"""The cast of the suspension tests: staff clients signed in, sessions, a suspension."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app.models import Environment, Session
from suspension_app.models import Suspension
from suspension_app.services import suspension_impose
from tests.conftest import login_verified


@pytest.fixture
def staff_client(staff: User) -> Client:
    """The admin, as a staff member who passed the second factor."""
    client = Client()
    login_verified(client, staff)
    return client


@pytest.fixture
def staff_api(staff: User) -> APIClient:
    client = APIClient()
    login_verified(client, staff)
    return client


def make_session(user: User, environment: Environment, state: str = "running") -> Session:
    now = timezone.now()
    running = state in ("starting", "running")
    return Session.objects.create(
        user=user,
        environment=environment,
        state=state,
        created_at=now,
        started_at=now if running else None,
        expires_at=now + environment.max_duration if state == "running" else None,
    )


def suspend_by_rule(user: User, reason: str = "Rule broken.") -> Suspension:
    return suspension_impose(user=user, rule="test_rule", reason=reason)
