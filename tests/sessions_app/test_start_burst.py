"""A burst of starts on a slow back-end delays no stop and no deadline (issue 12, "Starts that do
not block"): 50 launches whose servers never answer in time, while one running session is
stopped and another's deadline comes due. The tests' one worker consumes every queue with 8
threads: a spawn task that waited for its server would hold a thread until the server answers
(or the spawn timeout), and the stop and the deadline would wait for one.

Local servers in single-user mode (``LOCAL_ISOLATION=off``): their starts cost the worker a
fork each, so what is measured is the waiting, not 50 sandboxes' set-up on a small machine.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from sessions_app import tasks
from sessions_app.models import Environment, Session
from sessions_app.services import session_launch, session_request_stop
from sessions_app.spawners import get_spawner
from terms_app.models import TermsVersion
from terms_app.services import terms_accept
from tests.conftest import _make_user
from tests.sessions_app.lifecycle import in_state, wait_for
from tests.sessions_app.test_start_watch import SLEEPER

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BURST = 50
# The bound: a stop and a deadline are done this soon after they are due.
DUE_WITHIN = timedelta(seconds=2)


@pytest.fixture
def single_user(settings: Any) -> None:
    settings.LOCAL_ISOLATION = "off"
    settings.SPAWN_TIMEOUT_SECONDS = 600  # slow servers, not lost ones
    get_spawner.cache_clear()


def _launch(name: str, terms: TermsVersion, environment: str = "ecmwf-dss") -> str:
    user = _make_user(name)
    terms_accept(user=user, version=terms.version, ip_address="127.0.0.1", user_agent="pytest")
    return str(session_launch(user=user, environment_slug=environment, options={}).session.pk)


def test_a_stop_and_a_deadline_are_on_time_during_a_burst_of_slow_starts(
    single_user: None, celery_worker: Any, terms: TermsVersion, environment: Environment
) -> None:
    # Given two running sessions
    stopped, expired = _launch("ann", terms), _launch("ben", terms)
    for session_id in (stopped, expired):
        wait_for(session_id, in_state(Session.State.RUNNING), timeout=90)
    # and an environment whose servers never answer in time
    Environment.objects.create(
        slug="slow",
        name="Slow",
        use_case="a server that takes its time",
        memory_mb=256,
        cpus=1,
        max_duration_minutes=60,
        command=SLEEPER,
    )

    # When 50 people launch it, and meanwhile one running session is stopped and the other's
    # deadline comes due
    burst = [_launch(f"burst{index}", terms, "slow") for index in range(BURST)]
    due = timezone.now() + timedelta(seconds=2)
    Session.objects.filter(pk=expired).update(expires_at=due)
    tasks.expire_session.apply_async(args=(expired,), eta=due)
    asked = timezone.now()
    assert session_request_stop(stopped, Session.Reason.USER_STOPPED)

    # then both end within the bound of when they were due
    ended = wait_for(stopped, in_state(Session.State.STOPPED), timeout=60)
    assert ended.ended_at is not None and ended.ended_at - asked < DUE_WITHIN
    timed_out = wait_for(expired, in_state(Session.State.EXPIRED), timeout=60)
    assert timed_out.reason == Session.Reason.TIME_LIMIT
    assert timed_out.ended_at is not None and timed_out.expires_at == due
    assert timed_out.ended_at - due < DUE_WITHIN
    # and every server of the burst was asked for, none answering: no spawn task waits for one
    for session_id in burst:
        wait_for(session_id, lambda s: bool(s.spawner_state), timeout=120)
    starting = Session.objects.filter(pk__in=burst, state=Session.State.STARTING)
    assert starting.count() == BURST
