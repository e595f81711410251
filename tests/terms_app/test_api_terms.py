"""REST API: reading and accepting the terms of use."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from terms_app.models import TermsAcceptance, TermsVersion
from tests.conftest import login_verified

CURRENT = "/api/v1/terms/current/"
ACCEPT = "/api/v1/terms/accept/"


def _publish(version: str, body: str = "New terms.") -> TermsVersion:
    return TermsVersion.objects.create(
        version=version, title=f"Terms {version}", body=body, published_at=timezone.now()
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_current_terms_show_the_latest_published_version(
    api: APIClient, terms: TermsVersion
) -> None:
    response = api.get(CURRENT)

    assert response.status_code == 200
    body = response.json()
    assert body["version"] == terms.version
    assert body["title"] == terms.title
    assert body["body"] == terms.body
    assert body["published_at"] is not None
    assert body["accepted"] is False


def test_current_terms_render_the_markdown_body_as_html(
    api: APIClient, terms: TermsVersion
) -> None:
    # given: the first version has "**Experimental service.**" in its Markdown
    response = api.get(CURRENT)

    assert "<strong>Experimental service.</strong>" in response.json()["body_html"]


def test_current_terms_html_has_no_script_or_javascript_links(api: APIClient, db: None) -> None:
    # given: a version whose Markdown carries raw HTML and a javascript: link
    _publish("2", body='Hi <script>alert("x")</script> [click](javascript:alert(1)) **ok**')
    # when
    html = api.get(CURRENT).json()["body_html"]
    # then
    assert "<strong>ok</strong>" in html
    assert "<script" not in html
    assert "javascript:" not in html


def test_current_terms_say_accepted_once_the_caller_accepted(
    accepted: User, api: APIClient
) -> None:
    assert api.get(CURRENT).json()["accepted"] is True


def test_acceptance_by_another_user_does_not_count_for_the_caller(
    accepted: User, other_user: User
) -> None:
    # given: the owner accepted, the other user did not
    client = APIClient()
    login_verified(client, other_user)
    # when
    response = client.get(CURRENT)
    # then
    assert response.json()["accepted"] is False


def test_current_terms_are_a_404_when_none_are_published(api: APIClient, db: None) -> None:
    # given: the migration's version turned back into a draft, and a future version
    TermsVersion.objects.update(published_at=None)
    TermsVersion.objects.create(
        version="9", title="Later", body="…", published_at=timezone.now() + timedelta(days=1)
    )
    # when
    response = api.get(CURRENT)
    # then
    assert response.status_code == 404
    assert response.json()["code"] == "terms_not_published"
    assert response.json()["detail"]


def test_accepting_the_current_version_records_who_when_where(
    api: APIClient, owner: User, terms: TermsVersion
) -> None:
    # given: an hour after the terms were published
    moment = timezone.now().replace(microsecond=0) + timedelta(hours=1)
    # when
    with time_machine.travel(moment, tick=False):
        response = api.post(
            ACCEPT,
            {"version": terms.version},
            format="json",
            REMOTE_ADDR="192.0.2.7",
            HTTP_USER_AGENT="portal-cli/1.0",
        )
    # then
    assert response.status_code == 201
    assert response.json() == {"version": terms.version, "accepted_at": _iso(moment)}
    acceptance = TermsAcceptance.objects.get(user=owner)
    assert acceptance.version == terms
    assert acceptance.ip_address == "192.0.2.7"
    assert acceptance.user_agent == "portal-cli/1.0"


def test_accepting_twice_keeps_the_first_acceptance(
    api: APIClient, owner: User, terms: TermsVersion
) -> None:
    # given
    first = timezone.now().replace(microsecond=0) + timedelta(hours=1)
    with time_machine.travel(first, tick=False):
        api.post(ACCEPT, {"version": terms.version}, format="json")
    # when
    with time_machine.travel(first + timedelta(days=1), tick=False):
        response = api.post(ACCEPT, {"version": terms.version}, format="json")
    # then
    assert response.status_code == 201
    assert response.json()["accepted_at"] == _iso(first)
    assert TermsAcceptance.objects.filter(user=owner).count() == 1


def test_accepting_a_superseded_version_is_a_409_and_records_nothing(
    api: APIClient, terms: TermsVersion
) -> None:
    # given: version 2 replaced the version the client read
    _publish("2")
    # when
    response = api.post(ACCEPT, {"version": terms.version}, format="json")
    # then
    assert response.status_code == 409
    assert response.json()["code"] == "terms_version_stale"
    assert "current version (2)" in response.json()["detail"]
    assert not TermsAcceptance.objects.exists()


def test_accepting_an_unknown_version_is_a_409_and_records_nothing(
    api: APIClient, terms: TermsVersion
) -> None:
    response = api.post(ACCEPT, {"version": "no-such-version"}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "terms_version_stale"
    assert not TermsAcceptance.objects.exists()


@pytest.mark.parametrize("payload", [{}, {"version": ""}, {"version": None}])
def test_accepting_without_a_version_is_a_400(
    api: APIClient, terms: TermsVersion, payload: dict[str, object]
) -> None:
    response = api.post(ACCEPT, payload, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["detail"].startswith("version: ")
    assert not TermsAcceptance.objects.exists()


def test_accepting_when_nothing_is_published_is_a_404(api: APIClient, db: None) -> None:
    TermsVersion.objects.update(published_at=None)

    response = api.post(ACCEPT, {"version": "1"}, format="json")

    assert response.status_code == 404
    assert response.json()["code"] == "terms_not_published"
    assert not TermsAcceptance.objects.exists()


@pytest.mark.parametrize(("method", "url"), [("get", CURRENT), ("post", ACCEPT)])
def test_terms_endpoints_refuse_anonymous_callers(db: None, method: str, url: str) -> None:
    response = getattr(APIClient(), method)(url, {"version": "1"}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
