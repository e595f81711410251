"""REST API: the OpenAPI document describes every v1 endpoint and its bodies."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from tests.conftest import login_verified


@pytest.fixture
def schema(owner: User) -> dict[str, Any]:
    client = APIClient()
    login_verified(client, owner)
    response = client.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/api/v1/environments/", {"get"}),
        ("/api/v1/terms/current/", {"get"}),
        ("/api/v1/terms/accept/", {"post"}),
        ("/api/v1/session/", {"get", "post", "delete"}),
        ("/api/v1/sessions/", {"get"}),
        ("/api/v1/tokens/", {"get", "post"}),
        ("/api/v1/tokens/{token_id}/", {"delete"}),
        ("/api/v1/admin/suspensions/", {"get", "post"}),
        ("/api/v1/admin/suspensions/{id}/lift/", {"post"}),
    ],
)
def test_schema_documents_each_endpoint(
    schema: dict[str, Any], path: str, methods: set[str]
) -> None:
    assert set(schema["paths"][path]) >= methods


def test_schema_documents_the_launch_request_and_its_answers(schema: dict[str, Any]) -> None:
    # given
    launch = schema["paths"]["/api/v1/session/"]["post"]
    # then
    request_ref = launch["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = schema["components"]["schemas"][request_ref.rsplit("/", 1)[1]]
    assert request["required"] == ["environment"]
    assert set(request["properties"]) == {"environment", "options"}
    assert set(launch["responses"]) >= {"200", "201", "400", "403", "409"}
    error_ref = launch["responses"]["403"]["content"]["application/json"]["schema"]["$ref"]
    error = schema["components"]["schemas"][error_ref.rsplit("/", 1)[1]]
    assert {"detail", "code"} <= set(error["properties"])


def test_schema_documents_the_session_fields(schema: dict[str, Any]) -> None:
    session = schema["components"]["schemas"]["Session"]

    assert set(session["properties"]) == {
        "id", "state", "phase", "state_label", "environment", "options", "created_at",
        "admitted_at", "started_at", "expires_at", "ended_at", "remaining_seconds",
        "queue_position", "queue_wait_seconds", "url", "message", "reason", "library_status",
    }  # fmt: skip


def test_schema_generates_without_warnings(db: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Warnings mean a guessed or clashing component: the document would mislead clients.
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")
    assert "Warning" not in capsys.readouterr().err
