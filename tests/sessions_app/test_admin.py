"""Staff run sessions, environments and terms from the Django admin."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from sessions_app.models import Environment, Session
from terms_app.models import TermsAcceptance
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(staff: Any) -> Client:
    client = Client()
    login_verified(client, staff)
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/admin/sessions_app/environment/",
        "/admin/sessions_app/environment/add/",
        "/admin/sessions_app/session/",
        "/admin/sessions_app/session/?state__exact=running",
        "/admin/terms_app/termsversion/",
        "/admin/terms_app/termsacceptance/",
        "/admin/portal/apitoken/",
    ],
)
def test_staff_pages_of_the_admin_answer(
    admin_client: Client, environment: Environment, url: str
) -> None:
    assert admin_client.get(url).status_code == 200


def test_the_environment_page_shows_its_options_inline(
    admin_client: Client, environment: Environment
) -> None:
    page = admin_client.get(f"/admin/sessions_app/environment/{environment.pk}/change/")
    assert b"Environment options" in page.content or b"environment option" in page.content


def test_the_stop_action_asks_running_sessions_to_stop(
    admin_client: Client,
    owner: Any,
    environment: Environment,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given a running and a queued session
    now = timezone.now()
    running = Session.objects.create(
        user=owner,
        environment=environment,
        state="running",
        created_at=now,
        started_at=now,
        expires_at=now + environment.max_duration,
    )
    # When staff use the "stop" action on it
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            "/admin/sessions_app/session/",
            {"action": "stop_sessions", "_selected_action": [str(running.pk)]},
        )

    # then it is stopping for that reason, and a stop task is enqueued on commit
    assert response.status_code == 302
    running.refresh_from_db()
    assert (running.state, running.reason) == ("stopping", "staff_stopped")
    assert len(callbacks) == 1


def test_acceptances_are_read_only_in_the_admin(admin_client: Client, accepted: Any) -> None:
    acceptance = TermsAcceptance.objects.get(user=accepted)
    url = f"/admin/terms_app/termsacceptance/{acceptance.pk}/delete/"
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert TermsAcceptance.objects.filter(pk=acceptance.pk).exists()
