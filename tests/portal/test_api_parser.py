"""What the API accepts as input: NUL, lone surrogates and deep nesting are refused with 400
in every body and query string, before any view (``portal.api_parser``); each used to be a
500 somewhere (a text option, suspension evidence, any body nested a thousand deep)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from portal.api_parser import MAX_DEPTH, too_deep
from sessions_app.models import Environment, EnvironmentOption, Session
from suspension_app.models import Suspension
from terms_app.models import TermsAcceptance, TermsVersion
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(owner: User) -> APIClient:
    client = APIClient(raise_request_exception=False)
    login_verified(client, owner)
    return client


@pytest.fixture
def staff_api(staff: User) -> APIClient:
    client = APIClient(raise_request_exception=False)
    login_verified(client, staff)
    return client


def _post_json(client: APIClient, url: str, data: Any) -> Any:
    # json.dumps escapes what is not ASCII: lone surrogates travel as "\ud800", as from a
    # client in any language whose strings are UTF-16.
    return client.post(url, data=json.dumps(data), content_type="application/json")


def _refused(response: Any, code: str) -> None:
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- the refusals, on a real endpoint -------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"version": "1\u0000"},
        {"version": "\ud800"},
        {"version": "1", "\u0000": "x"},  # keys too
        {"version": "1", "extra": ["ok", {"deeper": "\udfff"}]},  # at any depth
    ],
)
def test_nul_and_lone_surrogates_are_refused_anywhere_in_a_body(
    api: APIClient, owner: User, terms: TermsVersion, body: dict[str, Any]
) -> None:
    _refused(_post_json(api, "/api/v1/terms/accept/", body), "invalid_characters")
    assert not TermsAcceptance.objects.filter(user=owner).exists()


def test_a_paired_surrogate_is_one_character_and_accepted(
    api: APIClient, terms: TermsVersion
) -> None:
    # "\ud83d\ude00" is one emoji: not a version, so 409, but it got through the parser.
    response = _post_json(api, "/api/v1/terms/accept/", {"version": "\U0001f600"})

    assert response.status_code == 409
    assert response.json()["code"] == "terms_version_stale"


def test_a_text_option_with_nul_is_refused_before_the_launch(
    api: APIClient, accepted: User, environment: Environment
) -> None:
    # given
    EnvironmentOption.objects.create(
        environment=environment, name="note", label="Note", kind="text", default=""
    )
    # when
    response = _post_json(
        api, "/api/v1/session/", {"environment": "ecmwf-dss", "options": {"note": "a\u0000b"}}
    )
    # then
    _refused(response, "invalid_characters")
    assert not Session.objects.exists()


def test_suspension_evidence_with_a_lone_surrogate_is_refused(
    staff_api: APIClient, other_user: User
) -> None:
    body = {"user": "other", "reason": "Mining.", "evidence": {"process": "\udc80miner"}}

    _refused(_post_json(staff_api, "/api/v1/admin/suspensions/", body), "invalid_characters")
    assert not Suspension.objects.exists()


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_000, 100_000])
def test_a_body_nested_too_deep_is_refused_without_recursion(
    api: APIClient, terms: TermsVersion, depth: int
) -> None:
    body = '{"version": ' + _nested(depth) + "}"

    response = api.post("/api/v1/terms/accept/", data=body, content_type="application/json")

    _refused(response, "too_deep")


def test_a_body_nested_to_the_limit_reaches_the_view(api: APIClient, terms: TermsVersion) -> None:
    body = '{"version": "1", "extra": ' + _nested(MAX_DEPTH - 1) + "}"

    response = api.post("/api/v1/terms/accept/", data=body, content_type="application/json")

    assert response.status_code in (201, 409), response.content


@pytest.mark.parametrize(
    "body",
    [
        b'{"version": ',  # cut short
        b'{"version": NaN}',
        b'{"version": 1e999}',  # infinite
        b'{"version": "\xff"}',  # not UTF-8
        b'{"version": "\\ud800"',  # cut short after a surrogate: still "not JSON"
    ],
)
def test_a_body_that_is_not_json_is_refused(
    api: APIClient, terms: TermsVersion, body: bytes
) -> None:
    response = api.post("/api/v1/terms/accept/", data=body, content_type="application/json")

    _refused(response, "invalid_json")


def test_a_form_body_with_nul_is_refused(api: APIClient, terms: TermsVersion) -> None:
    response = api.post(
        "/api/v1/terms/accept/",
        data="version=1%00",
        content_type="application/x-www-form-urlencoded",
    )

    _refused(response, "invalid_characters")


def test_a_multipart_body_with_nul_is_refused(api: APIClient, terms: TermsVersion) -> None:
    response = api.post("/api/v1/terms/accept/", {"version": "1\u0000"}, format="multipart")

    _refused(response, "invalid_characters")


@pytest.mark.parametrize("query", ["state=%00", "%00=1", "page=1&state=a%00b"])
def test_a_query_string_with_nul_is_refused(api: APIClient, query: str) -> None:
    _refused(api.get(f"/api/v1/sessions/?{query}"), "invalid_characters")


def test_a_page_query_string_is_not_the_apis_concern(client: Any) -> None:
    response = client.get("/login/?next=%00")

    assert response.status_code == 200


# --- the depth count -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "deep"),
    [
        ('{"a": [1, {"b": 2}], "c": []}', False),
        ('"[[[[[[[["', False),  # brackets in a string are not nesting
        ('["\\"[[[[[[["]', False),  # nor after an escaped quote
        ('[[["\\\\"]]]', False),  # an escaped backslash ends before the quote
        ("[[[[", True),
        ('[[[["]]]]"', True),
    ],
)
def test_nesting_is_counted_outside_strings(text: str, deep: bool) -> None:
    assert too_deep(text, limit=3) is deep
