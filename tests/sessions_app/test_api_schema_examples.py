"""The OpenAPI document's examples are answers the API could give: each one validates against
the schema of the response (or request) it illustrates, with no field missing or unknown; the
main operations of the sessions API have examples; every documented status of theirs says what
it means."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from tests.conftest import login_verified

# The sessions API's main operations: each has examples of its answers.
WITH_EXAMPLES = [
    ("/api/v1/session/", "get"),
    ("/api/v1/session/", "post"),
    ("/api/v1/session/", "delete"),
    ("/api/v1/sessions/", "get"),
    ("/api/v1/sessions/{session_id}/", "get"),
    ("/api/v1/admin/sessions/", "get"),
    ("/api/v1/admin/sessions/{session_id}/stop/", "post"),
    ("/api/v1/admin/queue/{session_id}/move/", "post"),
    ("/api/v1/admin/users/", "get"),
    ("/api/v1/admin/usage/", "get"),
]


@pytest.fixture
def schema(staff: User) -> dict[str, Any]:
    client = APIClient()
    login_verified(client, staff)
    response = client.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _strict(node: Any, components: dict[str, Any], depth: int = 0) -> Any:
    """``node`` as plain JSON Schema: references resolved, OpenAPI 3.0's ``nullable`` turned
    into a null alternative, and objects closed (an example with a field the serializer does
    not have is stale)."""
    assert depth < 30, "a reference cycle"
    if isinstance(node, list):
        return [_strict(item, components, depth + 1) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        return _strict(copy.deepcopy(components[name]), components, depth + 1)
    result = {key: _strict(value, components, depth + 1) for key, value in node.items()}
    if result.get("type") == "object" and "properties" in result:
        result.setdefault("additionalProperties", False)
    if result.pop("nullable", False):
        return {"anyOf": [result, {"type": "null"}]}
    return result


def _examples(schema: dict[str, Any]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(where, example value, the schema it illustrates) for every example in the document."""
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            bodies = [("request", operation.get("requestBody", {}))] + [
                (status, answer) for status, answer in operation.get("responses", {}).items()
            ]
            for where, body in bodies:
                for media, content in body.get("content", {}).items():
                    for name, example in content.get("examples", {}).items():
                        label = f"{method.upper()} {path} {where} {media} {name}"
                        yield label, example["value"], content["schema"]


def test_every_example_validates_against_its_schema(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    checked = 0
    for label, value, body_schema in _examples(schema):
        try:
            jsonschema.validate(value, _strict(body_schema, components))
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{label}: {exc.message} at {list(exc.absolute_path)}")
        checked += 1
    assert checked >= 25  # this test's own examples at least: not vacuous


@pytest.mark.parametrize(("path", "method"), WITH_EXAMPLES)
def test_the_main_operations_have_examples_and_described_statuses(
    schema: dict[str, Any], path: str, method: str
) -> None:
    operation = schema["paths"][path][method]
    assert operation.get("description", "").strip()
    examples = [
        name
        for answer in operation["responses"].values()
        for content in answer.get("content", {}).values()
        for name in content.get("examples", {})
    ]
    assert examples, f"{method.upper()} {path} has no example"
    for status, answer in operation["responses"].items():
        assert answer.get("description", "").strip(), f"{method.upper()} {path} {status}"


def test_the_queue_wait_is_documented_as_it_is_computed(schema: dict[str, Any]) -> None:
    text = schema["components"]["schemas"]["Session"]["properties"]["queue_wait_seconds"][
        "description"
    ]

    assert "median" in text
    assert "if every session ran to its time limit" not in text


def test_no_component_is_described_by_a_base_class_of_its_serializer(
    schema: dict[str, Any],
) -> None:
    # A serializer without a docstring of its own is described by the first base class with
    # one: FieldsBuiltOnce's, about DRF's internals, not about the body.
    from portal.api_serializers import FieldsBuiltOnce

    base = " ".join((FieldsBuiltOnce.__doc__ or "").split())
    described = {
        name: " ".join(component.get("description", "").split())
        for name, component in schema["components"]["schemas"].items()
    }

    assert [name for name, text in described.items() if text == base] == []
