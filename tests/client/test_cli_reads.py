"""``jlp``'s reads against a live portal: what a person sees, and the API's JSON for scripts."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from sessions_app.models import Environment, EnvironmentOption, Session
from tests.client.conftest import Jlp

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def logged_in(jlp: Jlp, portal_url: str, token: str) -> Jlp:
    jlp.env.update(JLP_URL=portal_url, JLP_TOKEN=token)
    return jlp


@pytest.fixture
def ended(owner: User, environment: Environment) -> Session:
    started = timezone.now() - timedelta(hours=2)
    return Session.objects.create(
        user=owner, environment=environment, state=Session.State.FAILED,
        reason=Session.Reason.BACKEND_ERROR, message="The server could not be started.",
        created_at=started,
    )  # fmt: skip


def test_environments_show_resources_limits_and_options(
    logged_in: Jlp, environment: Environment
) -> None:
    EnvironmentOption.objects.create(
        environment=environment, name="workers", label="Workers", kind="integer", default="2",
        min_value=1, max_value=8,
    )  # fmt: skip

    ran = logged_in("environments")

    assert ran.code == 0, ran.err
    first, *rest = ran.out.splitlines()
    assert first.startswith(f"ecmwf-dss: {environment.name} ({environment.cpus} CPU, ")
    assert "    -o workers=…  Workers: 1…8 (default 2)" in rest


def test_history_and_one_session_say_how_it_ended(logged_in: Jlp, ended: Session) -> None:
    history = logged_in("history")
    one = logged_in("session", str(ended.pk))

    assert history.code == 0, history.err
    assert history.out.splitlines() == [
        f"{ended.created_at:%Y-%m-%d %H:%M} UTC  ecmwf-dss  failed (backend_error)  {ended.pk}"
    ]
    assert one.code == 0, one.err
    assert one.out.splitlines() == [
        f"Session {ended.pk} (ecmwf-dss): failed",
        "  Ended (backend_error): The server could not be started.",
    ]


def test_json_is_the_apis_own_answer(logged_in: Jlp, ended: Session) -> None:
    status = logged_in("--json", "status")
    history = logged_in("history", "--json")

    assert (status.code, json.loads(status.out)) == (0, None)
    assert history.code == 0, history.err
    [row] = json.loads(history.out)
    assert (row["id"], row["state"], row["reason"]) == (str(ended.pk), "failed", "backend_error")


def test_storage_shows_use_against_quotas_and_the_cleanup_history(
    logged_in: Jlp, owner: User, settings: Any
) -> None:
    settings.STORAGE_PRIVATE_QUOTA_BYTES = 2 * 1024**3
    settings.STORAGE_SCRATCH_QUOTA_BYTES = 100 * 1024**3

    ran = logged_in("storage")

    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert lines[0] == "Private: not measured yet (quota 2.0 GB)"
    assert lines[1] == "Scratch: not measured yet (quota 100.0 GB)"
    assert lines[-1] == "Cleanup history: 0 files removed."
