"""The sessions service guards itself against suspended users, beside pages and API: a
launch is refused, and a session launched just before a suspension never starts."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from sessions_app.models import Environment, Session
from sessions_app.services import LaunchError, session_launch, session_spawn, sessions_admit
from suspension_app.models import Suspension

pytestmark = pytest.mark.django_db


def _suspend(user: User, staff: User) -> None:
    Suspension.objects.create(
        user=user, imposed_by=staff, reason="Testing.", created_at=user.date_joined
    )


def test_a_suspended_user_cannot_launch(
    accepted: User, staff: User, environment: Environment
) -> None:
    _suspend(accepted, staff)

    with pytest.raises(LaunchError) as refused:
        session_launch(user=accepted, environment_slug="ecmwf-dss", options={})

    assert refused.value.code == "suspended"
    assert not Session.objects.exists()


def test_a_session_queued_before_the_suspension_never_starts(
    accepted: User, staff: User, environment: Environment
) -> None:
    result = session_launch(user=accepted, environment_slug="ecmwf-dss", options={})
    assert sessions_admit() == 1
    _suspend(accepted, staff)

    session_spawn(str(result.session.id))

    session = Session.objects.get(pk=result.session.id)
    assert (session.state, session.reason) == (Session.State.STOPPED, Session.Reason.SUSPENDED)
    assert session.spawner_state == {}
