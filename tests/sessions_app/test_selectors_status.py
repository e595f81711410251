"""The state people are told (``phase``): "queued" and a place in the queue only for a session
that really waits for room; "starting" for one that only waits for its worker, or that fits now.
The page's estimate is the API's, rounded up to whole minutes, as its caption says."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app.models import Environment, Session
from sessions_app.selectors import (
    STARTING_SOON,
    session_phase,
    session_queue_estimate,
    session_status_payload,
)
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db

State = Session.State
WAITING_WORDS = "Waiting for resources."


def _queued(user: User, environment: Environment, **fields: Any) -> Session:
    fields.setdefault("created_at", timezone.now())
    return Session.objects.create(
        user=user, environment=environment, state=State.QUEUED, message=WAITING_WORDS, **fields
    )


def _running(user: User, environment: Environment) -> Session:
    now = timezone.now()
    return Session.objects.create(
        user=user,
        environment=environment,
        state=State.RUNNING,
        created_at=now,
        admitted_at=now,
        started_at=now,
        expires_at=now + environment.max_duration,
        url="http://127.0.0.1:1/user/x/lab",
    )


def _api(user: User) -> APIClient:
    api = APIClient()
    login_verified(api, user)
    return api


@pytest.fixture
def room_for_one(settings: Any, environment: Environment) -> None:
    settings.SESSION_POOL_CPUS = environment.cpus
    settings.SESSION_POOL_MEMORY_MB = environment.memory_mb


def test_an_admitted_session_waiting_for_its_worker_is_starting_with_no_place(
    owner: User, environment: Environment
) -> None:
    # Given a session admitted a moment ago that no worker picked up yet
    session = _queued(owner, environment, admitted_at=timezone.now())
    session.message = "Starting soon."
    session.save()

    # when the page and the API read it
    status = session_status_payload(session)
    body = _api(owner).get("/api/v1/session/").json()

    # then both say "starting", with no place in the queue and no wait
    assert (status["state"], status["phase"], status["state_label"]) == (
        "queued",
        "starting",
        "starting",
    )
    assert status["queue_position"] is None and status["queue_wait_minutes"] is None
    assert status["message"] == "Starting soon."
    assert (body["state"], body["phase"], body["state_label"]) == ("queued", "starting", "starting")
    assert body["queue_position"] is None and body["queue_wait_seconds"] is None
    assert body["admitted_at"] is not None


def test_a_session_that_fits_now_is_starting_before_admission_runs(
    owner: User, environment: Environment
) -> None:
    # Given an idle pool and a launch that admission has not seen yet
    session = _queued(owner, environment)

    status = session_status_payload(session)
    body = _api(owner).get("/api/v1/session/").json()

    # then the page shows no queue at all, and no "Waiting for resources"
    assert session_queue_estimate(session) == (1, 0.0)
    assert (status["phase"], status["state_label"]) == ("starting", "starting")
    assert status["queue_position"] is None and status["queue_wait_minutes"] is None
    assert status["message"] == STARTING_SOON
    # the API says the same in ``phase``; its place stays the admission order's (compatible)
    assert (body["state"], body["phase"]) == ("queued", "starting")
    assert body["queue_wait_seconds"] == 0


def test_a_session_that_waits_for_room_is_queued_with_its_place_and_wait(
    owner: User, other_user: User, environment: Environment, room_for_one: None
) -> None:
    # Given the pool's only room taken by a running session
    _running(other_user, environment)
    session = _queued(owner, environment)

    status = session_status_payload(session)
    body = _api(owner).get("/api/v1/session/").json()

    # then it is queued, first, with the wait the running one's time limit gives
    assert (status["phase"], status["state_label"]) == ("queued", "queued")
    assert status["queue_position"] == 1 == body["queue_position"]
    assert status["message"] == WAITING_WORDS
    assert body["phase"] == "queued"
    limit = environment.max_duration_minutes * 60
    assert limit - 60 <= body["queue_wait_seconds"] <= limit
    # and the page's minutes are the API's seconds rounded up, as its caption says
    assert status["queue_wait_minutes"] == math.ceil(body["queue_wait_seconds"] / 60)


def test_a_session_that_can_never_be_estimated_has_a_place_but_no_wait(
    owner: User, environment: Environment
) -> None:
    # Given an environment that may run no session at all for now
    environment.max_concurrent = 0
    environment.save()
    session = _queued(owner, environment)

    status = session_status_payload(session)

    assert status["phase"] == "queued"
    assert status["queue_position"] == 1
    assert status["queue_wait_minutes"] is None


def test_the_phase_of_other_states_is_the_state(owner: User, environment: Environment) -> None:
    session = _running(owner, environment)

    for state in (State.STARTING, State.RUNNING, State.STOPPING, State.STOPPED, State.FAILED):
        session.state = state
        assert session_phase(session, None) == state


def test_a_queued_session_missing_from_the_queue_was_just_admitted(
    owner: User, environment: Environment
) -> None:
    session = _queued(owner, environment)

    assert session_phase(session, None) == "starting"
    assert session_phase(session, (3, 120.0)) == "queued"
    assert session_phase(session, (1, None)) == "queued"
    assert session_phase(session, (1, 0.0)) == "starting"


def test_an_ended_session_says_when_for_the_page(owner: User, environment: Environment) -> None:
    session = _running(owner, environment)
    ended = timezone.now().replace(hour=9, minute=5) + timedelta(days=1)
    Session.objects.filter(pk=session.pk).update(
        state=State.STOPPED, ended_at=ended, reason=Session.Reason.USER_STOPPED
    )
    session.refresh_from_db()

    status = session_status_payload(session)

    assert status["active"] is False
    assert status["phase"] == "stopped"
    assert status["ended_at_display"] == f"09:05 UTC, {ended.day} {ended:%B %Y}"
    assert status["reason_label"] == "stopped by the user"
    assert status["remaining_seconds"] is None


def test_the_page_never_shows_none_or_queued_for_a_session_that_fits(
    client: Client, owner: User, environment: Environment
) -> None:
    _queued(owner, environment)
    login_verified(client, owner)

    page = client.get("/session/").content.decode()

    assert 'data-phase="starting"' in page
    assert '<span id="session-state" class="state-badge state-starting">starting</span>' in page
    assert "None" not in page
    assert WAITING_WORDS not in page
    assert '<div id="queue-info" data-show="queued" hidden>' in page
