"""Admission on the database: a full pool queues instead of failing, the queue drains in the
policy's order as sessions end, limits and group restrictions hold everywhere, and several
worker processes admitting at once never overcommit the pool."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app.models import Environment, Session
from sessions_app.services import (
    LaunchError,
    session_launch,
    session_request_stop,
    session_spawn,
    sessions_admit,
)
from terms_app.models import TermsVersion
from terms_app.services import terms_accept
from tests.conftest import _make_user, login_verified

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pool(settings: Any) -> Any:
    """A pool for two of the default environment's sessions (2 CPUs, 4 GB each)."""
    settings.SESSION_POOL_CPUS = 4
    settings.SESSION_POOL_MEMORY_MB = 16384
    return settings


@pytest.fixture
def large(environment: Environment) -> Environment:
    return Environment.objects.create(
        slug="large",
        name="Large",
        use_case="Big jobs",
        memory_mb=8192,
        cpus=4,
        max_duration_minutes=60,
        priority=0,
    )


def _user(name: str, terms: TermsVersion) -> User:
    user = _make_user(name)
    terms_accept(user=user, version=terms.version, ip_address="127.0.0.1", user_agent="pytest")
    return user


def _launch(user: User, slug: str = "ecmwf-dss") -> Session:
    return session_launch(user=user, environment_slug=slug, options={}).session


def _reload(session: Session) -> Session:
    return Session.objects.get(pk=session.pk)


@pytest.mark.django_db
def test_a_full_pool_queues_and_the_queue_drains_as_sessions_end(
    pool: Any, environment: Environment, terms: TermsVersion
) -> None:
    first, second, third = (_launch(_user(n, terms)) for n in ("ann", "ben", "cat"))

    assert sessions_admit() == 2
    first, second, third = map(_reload, (first, second, third))
    assert first.admitted_at and second.admitted_at and third.admitted_at is None
    assert third.state == Session.State.QUEUED

    # Nothing is admitted while nothing ends
    assert sessions_admit() == 0
    session_request_stop(str(first.pk), Session.Reason.USER_STOPPED)

    assert sessions_admit() == 1
    assert _reload(third).admitted_at is not None


@pytest.mark.django_db
def test_small_sessions_go_first_and_an_environment_limit_holds(
    pool: Any, environment: Environment, large: Environment, terms: TermsVersion
) -> None:
    environment.max_concurrent = 1
    environment.save()
    big = _launch(_user("big", terms), "large")  # first to come, but lower priority
    small_one = _launch(_user("s1", terms))
    small_two = _launch(_user("s2", terms))

    sessions_admit()

    assert _reload(small_one).admitted_at is not None
    assert _reload(small_two).admitted_at is None  # its environment's limit: 1 at once
    # The large one needs 4 CPUs: only 2 are left; it waits, and does not block the limit.
    assert _reload(big).admitted_at is None


@pytest.mark.django_db
def test_the_spawn_task_waits_for_admission(
    pool: Any, environment: Environment, terms: TermsVersion
) -> None:
    session = _launch(_user("ann", terms))

    session_spawn(str(session.pk))

    assert _reload(session).state == Session.State.QUEUED


@pytest.mark.django_db
def test_leaving_the_queue_moves_the_others_up(
    pool: Any, environment: Environment, terms: TermsVersion
) -> None:
    sessions = [_launch(_user(name, terms)) for name in ("ann", "ben", "cat", "dan")]
    sessions_admit()
    from sessions_app.selectors import session_queue_position

    assert [session_queue_position(_reload(s)) for s in sessions] == [None, None, 1, 2]

    assert session_request_stop(str(sessions[2].pk), Session.Reason.USER_STOPPED)

    assert _reload(sessions[2]).state == Session.State.STOPPED
    assert session_queue_position(_reload(sessions[3])) == 1


@pytest.mark.django_db
def test_an_environment_larger_than_the_pool_is_refused_at_launch(
    pool: Any, large: Environment, terms: TermsVersion
) -> None:
    pool.SESSION_POOL_CPUS = 2

    with pytest.raises(LaunchError) as refused:
        _launch(_user("ann", terms), "large")

    assert refused.value.code == "environment_too_large"
    assert Session.objects.count() == 0


@pytest.mark.django_db
def test_the_api_and_the_page_show_the_place_and_the_estimated_wait(
    pool: Any, environment: Environment, terms: TermsVersion, client: Client
) -> None:
    for name in ("ann", "ben"):
        _launch(_user(name, terms))
    sessions_admit()
    waiting_user = _user("cat", terms)
    waiting = _launch(waiting_user)
    api = APIClient()
    login_verified(api, waiting_user)
    login_verified(client, waiting_user)

    body = api.get("/api/v1/session/").json()
    page = client.get("/session/").content.decode()

    assert body["queue_position"] == 1
    # Both running sessions hold the pool until their time limit, 5 hours from now at most.
    assert 5 * 3600 - 60 <= body["queue_wait_seconds"] <= 5 * 3600
    assert body["id"] == str(waiting.pk)
    assert "Estimated wait: <strong" in page and "about 300 minutes" in page
    assert "Leave the queue" in page


@pytest.mark.django_db
def test_a_group_restricted_environment_is_only_for_its_group(
    environment: Environment, large: Environment, terms: TermsVersion, client: Client
) -> None:
    group = Group.objects.create(name="hpc")
    large.allowed_groups.add(group)
    outside, member = _user("outside", terms), _user("member", terms)
    member.groups.add(group)

    def listed(user: User) -> list[str]:
        api = APIClient()
        login_verified(api, user)
        return [e["slug"] for e in api.get("/api/v1/environments/").json()]

    assert listed(outside) == ["ecmwf-dss"]
    assert sorted(listed(member)) == ["ecmwf-dss", "large"]
    login_verified(client, outside)
    assert 'value="large"' not in client.get("/").content.decode()
    with pytest.raises(LaunchError) as refused:
        _launch(outside, "large")
    assert refused.value.code == "unknown_environment"
    assert _launch(member, "large").environment == large


ADMITTER = textwrap.dedent(
    """
    import sys, time
    import django
    django.setup()
    from django.conf import settings
    settings.SESSION_POOL_CPUS = int(sys.argv[1])
    settings.SESSION_POOL_MEMORY_MB = 10**6
    from sessions_app import services
    from sessions_app.models import Session

    # Widen the window between reading what is held and writing what is admitted, so that
    # passes without the lock would overlap (this is what the lock must make harmless).
    read_queue = services.queue_entries
    def slow_queue_entries(*args, **kwargs):
        time.sleep(0.05)
        return read_queue(*args, **kwargs)
    services.queue_entries = slow_queue_entries

    start = float(sys.argv[2])
    while time.time() < start:
        time.sleep(0.001)
    admitted, most = 0, 0
    for _ in range(12):
        # A user leaves: one admitted session ends (each process ends its own users' only).
        ending = Session.objects.filter(
            state="queued", admitted_at__isnull=False, user__username__startswith=sys.argv[3]
        ).first()
        if ending is not None:
            services.session_request_stop(str(ending.pk), "user_stopped")
        admitted += services.sessions_admit()
        held = Session.objects.filter(state="queued", admitted_at__isnull=False).count()
        most = max(most, held)
    print(admitted, most)
    """
)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_several_worker_processes_admitting_at_once_never_overcommit(
    environment: Environment, terms: TermsVersion, tmp_path: Path
) -> None:
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL (DATABASE_URL), as the README's test command sets")
    now = timezone.now()
    # Four groups of users, one per process: each process ends only its own users' sessions.
    users = [_make_user(f"p{i % 4}u{i}") for i in range(120)]
    Session.objects.bulk_create(
        Session(
            user=user,
            environment=environment,
            state=Session.State.QUEUED,
            created_at=now - timedelta(seconds=1000 - i),
        )
        for i, user in enumerate(users)
    )
    pool_cpus = 21  # room for 10 sessions of 2 CPUs (and 1 CPU to spare)
    script = tmp_path / "admit.py"
    script.write_text(ADMITTER)
    # The same start for all, so they meet in the same instants.
    start = str(timezone.now().timestamp() + 3)
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    # The test's database; a broker of their own (the spawn tasks they enqueue go nowhere).
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": "memory://",
        "PYTHONPATH": str(ROOT),
    }
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(pool_cpus), start, f"p{group}u"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for group in range(4)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]

    assert all(worker.returncode == 0 for worker in workers), [err for _, err in outputs]
    figures = [tuple(map(int, out.split())) for out, _ in outputs]
    # No process ever saw more than the pool holds: 10 sessions of 2 CPUs in 21.
    assert max(most for _, most in figures) <= 10
    held = Session.objects.filter(state=Session.State.QUEUED, admitted_at__isnull=False)
    assert held.count() == 10  # the pool is full again, not more
    ended = Session.objects.filter(state=Session.State.STOPPED).count()
    assert sum(admitted for admitted, _ in figures) == 10 + ended  # each admitted once


@pytest.mark.django_db
def test_a_queued_session_the_shrunk_pool_can_never_hold_ends_and_holds_nobody_back(
    pool: Any, environment: Environment, large: Environment, terms: TermsVersion
) -> None:
    big = _launch(_user("big", terms), "large")
    small = _launch(_user("small", terms))
    pool.SESSION_POOL_CPUS = 3  # an operator shrank the pool below the large environment

    assert sessions_admit() == 1

    big = _reload(big)
    assert big.state == Session.State.FAILED
    assert "needs more than the service can give" in big.message
    assert _reload(small).admitted_at is not None
