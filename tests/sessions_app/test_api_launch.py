"""REST API: launching a session with ``POST /api/v1/session/``, and every way it is refused."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from portal.broker import PUBLISH_RETRY_POLICY
from sessions_app.models import Environment, EnvironmentOption, Session
from terms_app.models import TermsVersion
from tests.conftest import login_verified

URL = "/api/v1/session/"


@pytest.fixture
def api(api: APIClient, accepted: User) -> APIClient:
    """The owner, logged in, having accepted the current terms."""
    return api


@pytest.fixture
def with_options(environment: Environment) -> Environment:
    """The default environment with one option of each kind."""
    EnvironmentOption.objects.create(
        environment=environment, name="flavour", label="Flavour", kind="choice",
        choices=["small", "large"], default="small",
    )  # fmt: skip
    EnvironmentOption.objects.create(
        environment=environment, name="gpu", label="GPU", kind="boolean", default="false"
    )
    EnvironmentOption.objects.create(
        environment=environment, name="workers", label="Workers", kind="integer", default="2",
        min_value=1, max_value=8,
    )  # fmt: skip
    EnvironmentOption.objects.create(
        environment=environment, name="note", label="Note", kind="text", default=""
    )
    return environment


def test_launch_creates_a_queued_session_and_answers_201(
    api: APIClient, accepted: User, environment: Environment
) -> None:
    # when
    response = api.post(URL, {"environment": "ecmwf-dss"}, format="json")
    # then
    assert response.status_code == 201
    session = Session.objects.get(user=accepted)
    body = response.json()
    assert body["id"] == str(session.id)
    assert body["state"] == "queued"
    assert body["environment"] == "ecmwf-dss"
    assert body["options"] == {}
    assert body["queue_position"] == 1
    assert body["url"] is None
    assert body["remaining_seconds"] is None
    assert body["started_at"] is None
    assert body["expires_at"] is None
    assert body["message"] == "Waiting for resources."
    assert body["reason"] == ""


def test_launch_asks_for_an_admission_pass_once_committed(
    api: APIClient, environment: Environment, django_capture_on_commit_callbacks: Any
) -> None:
    # given: the broker is not part of this test; the worker path is covered by the
    # integration tests, so only the hand-over to Celery is replaced here.
    with mock.patch("sessions_app.tasks.admit_sessions.apply_async") as apply_async:
        # when
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = api.post(URL, {"environment": "ecmwf-dss"}, format="json")
    # then: the session waits for admission, which starts its spawn (tests/sessions_app/
    # test_admission.py)
    assert response.status_code == 201
    assert len(callbacks) == 1
    apply_async.assert_called_once_with(args=[], retry=True, retry_policy=PUBLISH_RETRY_POLICY)


def test_launch_stores_the_options_typed_with_defaults_filled_in(
    api: APIClient, with_options: Environment
) -> None:
    # when
    response = api.post(
        URL,
        {"environment": "ecmwf-dss", "options": {"flavour": "large", "workers": 8, "gpu": True}},
        format="json",
    )
    # then
    assert response.status_code == 201
    expected = {"flavour": "large", "gpu": True, "workers": 8, "note": ""}
    assert response.json()["options"] == expected
    assert Session.objects.get().options == expected


def test_launch_with_null_options_takes_the_defaults(
    api: APIClient, with_options: Environment
) -> None:
    response = api.post(URL, {"environment": "ecmwf-dss", "options": None}, format="json")

    assert response.status_code == 201
    assert response.json()["options"] == {
        "flavour": "small",
        "gpu": False,
        "workers": 2,
        "note": "",
    }


def test_launch_with_a_session_active_answers_200_with_that_session(
    api: APIClient, accepted: User, environment: Environment
) -> None:
    # given
    first = api.post(URL, {"environment": "ecmwf-dss"}, format="json").json()
    # when
    response = api.post(URL, {"environment": "ecmwf-dss"}, format="json")
    # then
    assert response.status_code == 200
    assert response.json()["id"] == first["id"]
    assert Session.objects.filter(user=accepted).count() == 1


def test_launch_after_a_finished_session_creates_a_new_one(
    api: APIClient, accepted: User, environment: Environment
) -> None:
    # given
    Session.objects.create(
        user=accepted, environment=environment, state=Session.State.EXPIRED,
        reason=Session.Reason.TIME_LIMIT, created_at=timezone.now(),
    )  # fmt: skip
    # when
    response = api.post(URL, {"environment": "ecmwf-dss"}, format="json")
    # then
    assert response.status_code == 201
    assert Session.objects.filter(user=accepted).count() == 2


# (body, status, code, words the detail must contain). Sent as JSON unless it is a str.
BAD_LAUNCHES = {
    "unknown environment": (
        {"environment": "no-such-env"}, 400, "unknown_environment", "'no-such-env'",
    ),
    "unknown option": (
        {"environment": "ecmwf-dss", "options": {"colour": "red"}}, 400, "invalid_options",
        "Unknown option(s) for this environment: colour",
    ),
    "integer option given a word": (
        {"environment": "ecmwf-dss", "options": {"workers": "lots"}}, 400, "invalid_options",
        "'workers' must be a whole number",
    ),
    "integer option given a fraction": (
        {"environment": "ecmwf-dss", "options": {"workers": 2.5}}, 400, "invalid_options",
        "'workers' must be a whole number",
    ),
    "integer option above its maximum": (
        {"environment": "ecmwf-dss", "options": {"workers": 9}}, 400, "invalid_options",
        "'workers' must be at most 8",
    ),
    "integer option below its minimum": (
        {"environment": "ecmwf-dss", "options": {"workers": 0}}, 400, "invalid_options",
        "'workers' must be at least 1",
    ),
    "boolean option given a number": (
        {"environment": "ecmwf-dss", "options": {"gpu": 3}}, 400, "invalid_options",
        "'gpu' must be true or false",
    ),
    "choice not allowed": (
        {"environment": "ecmwf-dss", "options": {"flavour": "huge"}}, 400, "invalid_options",
        "'flavour' must be one of: small, large",
    ),
    "choice option given a number": (
        {"environment": "ecmwf-dss", "options": {"flavour": 1}}, 400, "invalid_options",
        "'flavour' must be a string",
    ),
    "text option given a list": (
        {"environment": "ecmwf-dss", "options": {"note": ["a"]}}, 400, "invalid_options",
        "'note' must be a string",
    ),
    "options not an object": (
        {"environment": "ecmwf-dss", "options": ["gpu"]}, 400, "invalid_options",
        "Options must be an object",
    ),
    "environment missing": (
        {"options": {}}, 400, "invalid", "environment: This field is required.",
    ),
    "environment not a string": (
        {"environment": ["ecmwf-dss"]}, 400, "invalid", "environment: Not a valid string.",
    ),
    "body not an object": (
        ["ecmwf-dss"], 400, "invalid", "Expected a dictionary",
    ),
    "body not JSON": (
        '{"environment": "ecmwf-dss",', 400, "invalid_json", "The body is not valid JSON",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "status", "code", "detail"), BAD_LAUNCHES.values(), ids=BAD_LAUNCHES.keys()
)
def test_a_bad_launch_is_a_4xx_with_a_detail_and_code_and_creates_nothing(
    api: APIClient, with_options: Environment, payload: Any, status: int, code: str, detail: str
) -> None:
    # when
    if isinstance(payload, str):
        response = api.post(URL, payload, content_type="application/json")
    else:
        response = api.post(URL, payload, format="json")
    # then
    assert response.status_code == status
    assert response.json()["code"] == code
    assert detail in response.json()["detail"]
    assert Session.objects.count() == 0


def test_launching_a_disabled_environment_is_an_unknown_environment(
    api: APIClient, environment: Environment
) -> None:
    # given
    environment.enabled = False
    environment.save(update_fields=["enabled"])
    # when
    response = api.post(URL, {"environment": "ecmwf-dss"}, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_environment"
    assert Session.objects.count() == 0


def test_launch_without_accepting_the_terms_is_a_403_and_creates_nothing(
    owner: User, terms: TermsVersion, environment: Environment
) -> None:
    # given: the owner never accepted
    client = APIClient()
    login_verified(client, owner)
    # when
    response = client.post(URL, {"environment": "ecmwf-dss"}, format="json")
    # then
    assert response.status_code == 403
    assert response.json()["code"] == "terms_not_accepted"
    assert f"version {terms.version}" in response.json()["detail"]
    assert Session.objects.count() == 0


def test_launch_after_new_terms_are_published_needs_them_accepted(
    api: APIClient, environment: Environment
) -> None:
    # given: the owner accepted version 1, then version 2 came out
    TermsVersion.objects.create(
        version="2", title="Terms 2", body="New.", published_at=timezone.now()
    )
    # when
    response = api.post(URL, {"environment": "ecmwf-dss"}, format="json")
    # then
    assert response.status_code == 403
    assert response.json()["code"] == "terms_not_accepted"
    assert "version 2" in response.json()["detail"]
    assert Session.objects.count() == 0


def test_launch_refuses_anonymous_callers(environment: Environment) -> None:
    response = APIClient().post(URL, {"environment": "ecmwf-dss"}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert Session.objects.count() == 0


def test_a_new_session_answers_201_with_its_address_in_location(
    api: APIClient, environment: Environment
) -> None:
    # when
    response = api.post(URL, {"environment": "ecmwf-dss"}, format="json")
    # then Location is the session's own address, which answers with the same session
    assert response.status_code == 201
    session = Session.objects.get()
    assert response["Location"] == f"http://testserver/api/v1/sessions/{session.id}/"
    assert api.get(response["Location"]).json()["id"] == str(session.id)


def test_the_existing_session_answers_200_without_location(
    api: APIClient, environment: Environment
) -> None:
    api.post(URL, {"environment": "ecmwf-dss"}, format="json")

    response = api.post(URL, {"environment": "ecmwf-dss"}, format="json")

    assert response.status_code == 200
    assert "Location" not in response


@pytest.mark.parametrize("asked", ["ecmwf-dss", "other-env"], ids=["same", "another"])
def test_a_launch_while_the_last_session_stops_is_a_409_with_retry_after(
    api: APIClient, accepted: User, environment: Environment, asked: str
) -> None:
    # given the caller's session is on its way down (the stop task has not finished yet)
    Environment.objects.create(
        slug="other-env", name="Other", use_case="x", memory_mb=1024, cpus=1,
        max_duration_minutes=60,
    )  # fmt: skip
    now = timezone.now()
    stopping = Session.objects.create(
        user=accepted, environment=environment, state=Session.State.STOPPING, created_at=now,
        started_at=now, expires_at=now + environment.max_duration,
        reason=Session.Reason.USER_STOPPED,
    )  # fmt: skip
    # when they launch again at once, the same environment or another
    response = api.post(URL, {"environment": asked}, format="json")
    # then: refused, told when to come back, and nothing was queued
    assert response.status_code == 409
    assert response.json()["code"] == "still_stopping"
    assert "still stopping" in response.json()["detail"]
    assert response["Retry-After"] == "5"
    assert list(Session.objects.filter(user=accepted)) == [stopping]
    # and once the stop is done, the same launch is a new session
    Session.objects.filter(pk=stopping.pk).update(state=Session.State.STOPPED, ended_at=now)
    again = api.post(URL, {"environment": asked}, format="json")
    assert again.status_code == 201
    assert again.json()["environment"] == asked
