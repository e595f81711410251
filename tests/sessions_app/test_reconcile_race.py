"""The reconcile sweep without its races: a server started while it runs is never taken for an
orphan (servers are listed before the active sessions are read, and a candidate's row is read
again just before its stop), and every running session is looked at in each pass, batch after
batch. Real local servers where a server matters.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from sessions_app import reconcile
from sessions_app.models import Environment, Session
from sessions_app.reconcile import session_server_gone, sessions_reconcile, stop_orphans
from sessions_app.services import session_launch, session_spawn, sessions_admit
from sessions_app.spawners import get_spawner
from sessions_app.spawners.base import PollResult, RunningServer, ServerStatus, SpawnRequest
from sessions_app.spawners.local import LocalProcessSpawner
from storage_app.layout import home_ensure
from terms_app.models import TermsVersion
from terms_app.services import terms_accept
from tests.conftest import _make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

State = Session.State


@pytest.fixture(autouse=True)
def _no_server_left() -> Iterator[None]:
    yield
    spawner = get_spawner()
    for server in spawner.list_servers():
        spawner.stop(server.state)


def _user(name: str, terms: TermsVersion) -> User:
    user = _make_user(name)
    terms_accept(user=user, version=terms.version, ip_address="127.0.0.1", user_agent="t")
    return user


def _running_row(user: User, environment: Environment, state: dict[str, Any]) -> Session:
    now = timezone.now()
    return Session.objects.create(
        user=user,
        environment=environment,
        state=State.RUNNING,
        created_at=now,
        started_at=now,
        expires_at=now + environment.max_duration,
        spawner_state=state,
    )


def test_a_session_launched_while_reconcile_lists_servers_is_not_taken_for_an_orphan(
    accepted: User, environment: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a launch whose row and server are made while reconcile is at work: just before the
    # back-end lists its servers (after the active sessions were read, in the order reconcile
    # used to have)
    launched: list[Session] = []
    list_servers = LocalProcessSpawner.list_servers

    def launch_then_list(self: LocalProcessSpawner) -> Iterable[RunningServer]:
        if not launched:
            result = session_launch(user=accepted, environment_slug="ecmwf-dss", options={})
            launched.append(result.session)
            assert sessions_admit() == 1
            session_spawn(str(result.session.pk))
        return list_servers(self)

    monkeypatch.setattr(LocalProcessSpawner, "list_servers", launch_then_list)

    # When reconcile runs
    outcome = sessions_reconcile()

    # then the new session's server is left running: no orphan was stopped
    [session] = launched
    session.refresh_from_db()
    assert outcome["orphans"] == 0
    assert session.state == State.STARTING and session.spawner_state
    assert get_spawner().poll(session.spawner_state).status != ServerStatus.GONE


def test_a_candidate_orphan_is_read_again_before_it_is_stopped(
    accepted: User, environment: Environment
) -> None:
    # Given two servers: one of a session whose row became active after the active sessions
    # were read (the set given is empty), one of no session at all
    spawner = get_spawner()
    session = session_launch(user=accepted, environment_slug="ecmwf-dss", options={}).session
    assert sessions_admit() == 1
    session_spawn(str(session.pk))
    stray = SpawnRequest(
        session_id=str(uuid.uuid4()),
        username="nobody",
        user_id=99_999,
        memory_mb=1024,
        cpus=1,
        duration_seconds=600,
        home_dir=home_ensure(999_999),
    )
    stray_state = spawner.start(stray, lambda message: None)
    servers = list(spawner.list_servers())
    assert len(servers) == 2

    # When the orphans are stopped with a set of active sessions older than the rows
    stopped = stop_orphans(spawner, servers, active=set())

    # then only the server of no session is stopped
    session.refresh_from_db()
    assert stopped == 1
    assert spawner.poll(stray_state).status == ServerStatus.GONE
    assert [s.session_id for s in spawner.list_servers()] == [str(session.pk)]


def test_every_running_session_is_looked_at_in_one_pass_batch_after_batch(
    terms: TermsVersion, environment: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given more running sessions whose servers are gone than one batch holds
    monkeypatch.setattr(reconcile, "SWEEP_BATCH", 2)
    sessions = [_running_row(_user(f"batch{n}", terms), environment, {}) for n in range(5)]

    # When reconcile runs once
    outcome = sessions_reconcile()

    # then every one of them ended, as failed because its server died
    assert outcome["died"] == 5
    for session in sessions:
        session.refresh_from_db()
        assert (session.state, session.reason) == (State.FAILED, Session.Reason.SERVER_DIED)
        assert session.message == "No server is recorded for this session."


def test_a_server_the_back_end_ended_at_its_deadline_ends_the_session_as_expired(
    accepted: User, environment: Environment
) -> None:
    # Given a running session whose back-end ended its server at the time limit
    session = _running_row(accepted, environment, {})
    result = PollResult(ServerStatus.GONE, "ended at its deadline", deadline_exceeded=True)

    # When it is found gone (by the reconcile sweep or the server watch: the same code)
    outcome = session_server_gone(get_spawner(), str(session.pk), {}, result)

    # then the session expired for its time limit, and only once
    session.refresh_from_db()
    assert outcome == "expired"
    assert (session.state, session.reason) == (State.EXPIRED, Session.Reason.TIME_LIMIT)
    assert session_server_gone(get_spawner(), str(session.pk), {}, result) == ""
