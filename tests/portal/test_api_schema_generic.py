"""The OpenAPI document lists, for every operation, what the layers around every view can
answer (``portal.api_openapi``): 401 and 403 where authentication and permissions run, 429 and
503 with ``Retry-After``, 400 and 406 everywhere, 404 where the path names an object, 413 and
415 where a body is read; every answer has a description, and the document names its server.
Each status is one the generic layer really answers: ``tests/portal/test_api_errors_json.py``,
``test_api_parser.py``, and the contract run (``test_api_contract.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from tests.conftest import login_verified

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def schema(owner: User) -> dict[str, Any]:
    client = APIClient()
    login_verified(client, owner)
    response = client.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _error_schema(schema: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    ref = response["content"]["application/json"]["schema"]["$ref"]
    component: dict[str, Any] = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return component


def test_every_operation_lists_the_answers_any_request_can_get(schema: dict[str, Any]) -> None:
    operations = list(_operations(schema))
    assert len(operations) >= 15

    for path, method, operation in operations:
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        # Authentication runs for every endpoint (a bad token is 401 even where none is
        # needed), and every endpoint has a permission beyond AllowAny.
        assert {"400", "401", "403", "406", "429", "503"} <= set(responses), where
        assert "WWW-Authenticate" in responses["401"]["headers"], where
        for status in ("429", "503"):
            assert "Retry-After" in responses[status]["headers"], (where, status)
        for status in ("400", "401", "403", "406", "429", "503"):
            assert {"detail", "code"} <= set(
                _error_schema(schema, responses[status])["properties"]
            ), (where, status)
        if "{" in path:
            assert "404" in responses, where
        if method in ("post", "put", "patch"):
            assert {"413", "415"} <= set(responses), where


def test_a_paginated_list_documents_the_404_of_a_page_past_the_last(
    schema: dict[str, Any],
) -> None:
    listing = schema["paths"]["/api/v1/sessions/"]["get"]

    assert "page" in {parameter["name"] for parameter in listing["parameters"]}
    assert "404" in listing["responses"]


def test_every_answer_has_a_description(schema: dict[str, Any]) -> None:
    empty = [
        f"{method.upper()} {path} {status}"
        for path, method, operation in _operations(schema)
        for status, response in operation["responses"].items()
        if not response.get("description", "").strip()
    ]

    assert empty == []


def test_the_document_names_the_server_that_served_it(schema: dict[str, Any]) -> None:
    assert schema["servers"] == [{"url": "http://testserver", "description": "This portal."}]


def test_the_document_generated_offline_names_the_public_address(
    db: None, settings: Any, tmp_path: Any
) -> None:
    import yaml
    from django.core.management import call_command

    settings.PORTAL_PUBLIC_URL = "https://portal.example.org"
    target = tmp_path / "schema.yaml"

    call_command("spectacular", "--file", str(target))

    document = yaml.safe_load(target.read_text())
    assert document["servers"][0]["url"] == "https://portal.example.org"


def test_every_201_names_its_location_and_a_views_own_403_keeps_the_generic_causes(
    schema: dict[str, Any],
) -> None:
    created = [
        (path, method, operation["responses"]["201"])
        for path, method, operation in _operations(schema)
        if "201" in operation["responses"]
    ]
    assert created
    for path, method, response in created:
        assert "Location" in response.get("headers", {}), f"{method.upper()} {path}"
    launch = schema["paths"]["/api/v1/session/"]["post"]["responses"]
    assert "terms_not_accepted" in launch["403"]["description"]
    assert "suspended" in launch["403"]["description"]
    assert "too_deep" in launch["400"]["description"]
