"""A queue for the staff queue's tests (admin page and staff API): a full pool, two sessions
running and three waiting, on a frozen clock. Test modules import the fixtures by name."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from sessions_app.models import Environment, Session
from tests.conftest import _make_user

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    # Each test makes half a dozen users: the production hasher would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _frozen() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


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


def _session(name: str, environment: Environment, state: str, since: timedelta) -> Session:
    running = state == Session.State.RUNNING
    return Session.objects.create(
        user=_make_user(name),
        environment=environment,
        state=state,
        created_at=NOW - since,
        started_at=NOW - since if running else None,
        expires_at=NOW - since + environment.max_duration if running else None,
    )


@pytest.fixture
def queue(settings: Any, environment: Environment, large: Environment) -> dict[str, Session]:
    """A full pool (two running sessions of 2 CPUs in 4) and three waiting: ``big`` (large,
    priority 0) waits longest, ``ann`` and ``ben`` (the default, priority 10) came later."""
    settings.SESSION_POOL_CPUS = 4
    settings.SESSION_POOL_MEMORY_MB = 16384
    for name, since in (("run1", timedelta(minutes=290)), ("run2", timedelta(minutes=200))):
        _session(name, environment, Session.State.RUNNING, since)
    return {
        "big": _session("big", large, Session.State.QUEUED, timedelta(minutes=20)),
        "ann": _session("ann", environment, Session.State.QUEUED, timedelta(minutes=5)),
        "ben": _session("ben", environment, Session.State.QUEUED, timedelta(minutes=3)),
    }
