"""Staff run sessions, environments and terms from the Django admin, each as far as their
permissions go: stopping takes ``change_session``, a session's row is never edited by hand, and
no page shows a server's credentials."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
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


def _staff_with(username: str, *codenames: str) -> Client:
    """A client signed in (second factor passed) as a staff member holding only these
    permissions of sessions_app."""
    user = User.objects.create_user(username, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="sessions_app", codename__in=codenames)
    )
    client = Client()
    login_verified(client, user)
    return client


def _running(owner: Any, environment: Environment, **fields: Any) -> Session:
    now = timezone.now()
    return Session.objects.create(
        user=owner,
        environment=environment,
        state="running",
        created_at=now,
        started_at=now,
        expires_at=now + environment.max_duration,
        **fields,
    )


def test_staff_who_may_only_view_sessions_cannot_stop_one(
    owner: Any, environment: Environment
) -> None:
    # Given a running session and a staff member with the view permission only
    running = _running(owner, environment)
    client = _staff_with("viewer", "view_session")

    # When they send the "stop" action anyway
    response = client.post(
        "/admin/sessions_app/session/",
        {"action": "stop_sessions", "_selected_action": [str(running.pk)]},
    )

    # then the list is shown again without it, and the session still runs
    assert response.status_code == 200
    assert b"stop_sessions" not in response.content
    running.refresh_from_db()
    assert running.state == "running"


def test_staff_with_change_session_stop_sessions(
    owner: Any, environment: Environment, django_capture_on_commit_callbacks: Any
) -> None:
    running = _running(owner, environment)
    client = _staff_with("operator", "change_session")

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            "/admin/sessions_app/session/",
            {"action": "stop_sessions", "_selected_action": [str(running.pk)]},
        )

    assert response.status_code == 302
    running.refresh_from_db()
    assert (running.state, running.reason) == ("stopping", "staff_stopped")
    # recorded in the session's history with who stopped it, as the staff API's stop does
    entry = LogEntry.objects.get(object_id=str(running.pk))
    assert (entry.user.username, entry.change_message) == ("operator", "Stopped by staff.")


def test_the_session_page_shows_where_the_server_runs_but_never_its_token(
    admin_client: Client, owner: Any, environment: Environment
) -> None:
    # Given a running session whose spawner state holds the server's token and URL
    session = _running(
        owner,
        environment,
        url="http://127.0.0.1:8000/user/abc/lab?token=secret-jupyter-token",
        spawner_state={
            "pid": 4242,
            "uid": 30001,
            "token": "secret-jupyter-token",
            "url": "http://127.0.0.1:8000/user/abc/lab",
            "socket": "/run/jlp/abc.sock",
        },
    )

    # When a superuser opens its page
    page = admin_client.get(f"/admin/sessions_app/session/{session.pk}/change/").content.decode()

    # then the process is there, its credentials and address are not
    assert "pid: 4242" in page and "uid: 30001" in page
    for secret in ("secret-jupyter-token", "/user/abc/lab", "/run/jlp/abc.sock"):
        assert secret not in page


@pytest.mark.parametrize("holder", ["superuser", "change_session"])
def test_nobody_edits_a_sessions_admission_by_hand(
    admin_client: Client, owner: Any, environment: Environment, holder: str
) -> None:
    # Given a session waiting in the queue
    queued = Session.objects.create(
        user=owner, environment=environment, state="queued", created_at=timezone.now()
    )
    client = admin_client if holder == "superuser" else _staff_with("operator", "change_session")
    url = f"/admin/sessions_app/session/{queued.pk}/change/"

    # When staff post its admission time and a boost beyond the queue's bounds
    now = timezone.localtime()
    response = client.post(
        url,
        {
            "admitted_at_0": f"{now:%Y-%m-%d}",
            "admitted_at_1": f"{now:%H:%M:%S}",
            "queue_boost": "32767",
        },
    )

    # then nothing is saved: the page is read-only (the queue page moves sessions, bounded)
    assert response.status_code == 403
    queued.refresh_from_db()
    assert (queued.admitted_at, queued.queue_boost) == (None, 0)
    page = client.get(url).content.decode()
    assert 'name="queue_boost"' not in page and 'name="admitted_at_0"' not in page


def test_sessions_are_never_deleted_from_the_admin(
    admin_client: Client, owner: Any, environment: Environment
) -> None:
    running = _running(owner, environment)

    response = admin_client.post(
        f"/admin/sessions_app/session/{running.pk}/delete/", {"post": "yes"}
    )

    assert response.status_code == 403
    assert Session.objects.filter(pk=running.pk).exists()


def test_acceptances_are_read_only_in_the_admin(admin_client: Client, accepted: Any) -> None:
    acceptance = TermsAcceptance.objects.get(user=accepted)
    url = f"/admin/terms_app/termsacceptance/{acceptance.pk}/delete/"
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert TermsAcceptance.objects.filter(pk=acceptance.pk).exists()


@pytest.mark.parametrize(
    "lookup",
    ["spawner_state__token__startswith", "spawner_state__socket__contains", "spawner_state"],
)
def test_the_session_list_refuses_filters_that_would_read_a_servers_token(
    owner: Any, environment: Environment, lookup: str
) -> None:
    # A count of results per guessed prefix would read the token one character at a time.
    _running(owner, environment, spawner_state={"token": "gSDw-secret", "socket": "/run/859e"})
    client = _staff_with("viewer", "view_session")

    answer = client.get("/admin/sessions_app/session/", {lookup: "gS"})

    assert answer.status_code == 400
    assert b"gSDw" not in answer.content
