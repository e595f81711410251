"""The history of one's sessions: the page ``/sessions/``, one session's page, and the API's
history (``GET /api/v1/sessions/``, ``…/<id>/``) telling the same facts; what of a server's log
is kept on the row when a session ends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from sessions_app import history
from sessions_app.history import LOG_TAIL_LINES, safe_log_tail, server_log_tail
from sessions_app.models import Environment, Session
from sessions_app.spawners.local import LocalProcessSpawner
from sessions_app.spawners.session_files import log_path
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db

State = Session.State
Reason = Session.Reason
LAUNCHED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def owner_client(client: Client, owner: User) -> Client:
    login_verified(client, owner)
    return client


def _session(
    user: User,
    environment: Environment,
    state: str,
    reason: str = "",
    *,
    hours_ago: float = 1,
    ran_seconds: int | None = 600,
    **fields: object,
) -> Session:
    created = LAUNCHED - timedelta(hours=hours_ago)
    started = created + timedelta(seconds=30) if ran_seconds is not None else None
    ended = (started or created) + timedelta(seconds=ran_seconds or 40)
    return Session.objects.create(
        user=user,
        environment=environment,
        state=state,
        reason=reason,
        created_at=created,
        started_at=started,
        ended_at=ended if state in (State.STOPPED, State.EXPIRED, State.FAILED) else None,
        **fields,
    )


def _failed(user: User, environment: Environment, **fields: Any) -> Session:
    values: dict[str, Any] = {
        "message": "The server could not be started: The server stopped unexpectedly: it "
        "exited with code 3. Last lines of its log:\nno such kernel",
        "log_tail": "Loading kernel.json\nno such kernel",
        **fields,
    }
    return _session(
        user, environment, State.FAILED, Reason.BACKEND_ERROR, ran_seconds=None, **values
    )


# --- The page -----------------------------------------------------------------------------------


def test_the_page_lists_ones_sessions_newest_first_with_how_each_ended(
    owner_client: Client, owner: User, environment: Environment
) -> None:
    # Given three sessions that ended in three ways
    expired = _session(owner, environment, State.EXPIRED, Reason.TIME_LIMIT, hours_ago=9,
                       ran_seconds=5 * 3600)  # fmt: skip
    failed = _failed(owner, environment, hours_ago=2)
    stopped = _session(owner, environment, State.STOPPED, Reason.USER_STOPPED, ran_seconds=250)

    # When the owner opens their history
    response = owner_client.get("/sessions/")

    # then each is there, newest first, with its environment, times, duration and end in words
    assert response.status_code == 200
    page = response.content.decode()
    rows = [page.index(f'id="history-{s.pk}"') for s in (stopped, failed, expired)]
    assert rows == sorted(rows)
    assert environment.name in page
    assert "Stopped by the user" in page and "4 min 10 s" in page
    assert "Time limit reached" in page and "5 h 00 min" in page
    assert "The server could not be started" in page and "did not start" in page
    assert f'href="/sessions/{failed.pk}/"' in page
    assert '<table class="data-table"' in page


@pytest.mark.parametrize(
    ("state", "reason", "words"),
    [
        (State.STOPPED, Reason.USER_STOPPED, "Stopped by the user"),
        (State.EXPIRED, Reason.TIME_LIMIT, "Time limit reached"),
        (State.STOPPED, Reason.STAFF_STOPPED, "Stopped by staff"),
        (State.STOPPED, Reason.SUSPENDED, "User suspended"),
        (State.FAILED, Reason.SERVER_DIED, "The server stopped on its own"),
        (State.FAILED, Reason.BACKEND_ERROR, "The server could not be started"),
        (State.STOPPED, Reason.NONE, "Stopped"),
        (State.RUNNING, Reason.NONE, "Still running"),
    ],
)
def test_each_way_of_ending_has_its_words_on_the_page_and_in_the_api(
    owner_client: Client, owner: User, environment: Environment, state: str, reason: str,
    words: str,
) -> None:  # fmt: skip
    session = _session(owner, environment, state, reason)

    page = owner_client.get("/sessions/").content.decode()
    detail = owner_client.get(f"/sessions/{session.pk}/").content.decode()
    body = owner_client.get(f"/api/v1/sessions/{session.pk}/").json()

    assert words in page and words in detail
    assert body["ended_how"] == words
    assert body["reason"] == reason
    assert body["reason_label"] == (Reason(reason).label if reason else "")


def test_a_failed_sessions_page_says_why_and_shows_the_last_lines_of_its_log(
    owner_client: Client, owner: User, environment: Environment
) -> None:
    session = _failed(owner, environment)

    response = owner_client.get(f"/sessions/{session.pk}/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "Why it failed" in page
    assert "The server could not be started: The server stopped unexpectedly: it exited with " \
        "code 3." in page  # fmt: skip
    # The log's lines once, in their own block (not again inside the reason)
    assert '<pre id="history-log"' in page
    assert "Loading kernel.json\nno such kernel" in page
    assert page.count("no such kernel") == 1
    assert "did not start" in page


def test_the_history_is_paginated_25_to_a_page(
    owner_client: Client, owner: User, environment: Environment
) -> None:
    # Given one more session than a page holds
    for hours in range(history.PAGE_SIZE + 1):
        _session(owner, environment, State.STOPPED, Reason.USER_STOPPED, hours_ago=hours + 1)

    first = owner_client.get("/sessions/").content.decode()
    second = owner_client.get("/sessions/?page=2").content.decode()
    beyond = owner_client.get("/sessions/?page=99").content.decode()

    assert first.count('class="history-row"') == 25
    assert "Page 1 of 2 (26 sessions)" in first and 'href="?page=2"' in first
    assert second.count('class="history-row"') == 1
    assert "Page 2 of 2" in second and 'href="?page=1"' in second
    assert "Page 2 of 2" in beyond  # out of range: the last page


def test_nobody_sees_another_persons_sessions(
    client: Client, owner: User, other_user: User, environment: Environment
) -> None:
    # Given the owner's failed session
    session = _failed(owner, environment)
    login_verified(client, other_user)

    # When someone else looks for it
    listing = client.get("/sessions/")
    detail = client.get(f"/sessions/{session.pk}/")
    unknown = client.get(f"/sessions/{uuid.uuid4()}/")
    api = client.get(f"/api/v1/sessions/{session.pk}/")

    # then it is not in their list, and its page is not found, as an unknown one's
    assert "no such kernel" not in listing.content.decode()
    assert str(session.pk) not in listing.content.decode()
    assert "You have not launched a session yet." in listing.content.decode()
    assert detail.status_code == unknown.status_code == 404
    assert str(session.pk) not in detail.content.decode()
    assert "no such kernel" not in detail.content.decode()
    assert api.status_code == 404 and api.json()["code"] == "session_not_found"


def test_the_pages_need_a_signed_in_person(client: Client, owner: User, db: None) -> None:
    response = client.get("/sessions/")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_an_active_session_points_to_the_session_page(
    owner_client: Client, owner: User, environment: Environment
) -> None:
    session = _session(owner, environment, State.RUNNING)

    page = owner_client.get(f"/sessions/{session.pk}/").content.decode()

    assert "Still running" in page and 'href="/session/"' in page


# --- The API -------------------------------------------------------------------------------------


def test_the_api_tells_the_same_facts_as_the_page(owner: User, environment: Environment) -> None:
    # Given a failed start and a session that ran 70 minutes
    failed = _failed(owner, environment, hours_ago=2)
    stopped = _session(owner, environment, State.STOPPED, Reason.USER_STOPPED, ran_seconds=4200,
                       log_tail="[I ServerApp] Shutting down")  # fmt: skip
    api = APIClient()
    login_verified(api, owner)

    # When the history and one session are read
    listing = api.get("/api/v1/sessions/").json()
    one = api.get(f"/api/v1/sessions/{failed.pk}/").json()

    # then both say how each ended, why, the log's lines and how long it ran
    assert [r["id"] for r in listing["results"]] == [str(stopped.pk), str(failed.pk)]
    assert listing["results"][1] == one
    assert one["state"] == "failed" and one["reason"] == "backend_error"
    assert one["reason_label"] == "the server could not be started"
    assert one["ended_how"] == "The server could not be started"
    assert one["failure_detail"] == (
        "The server could not be started: The server stopped unexpectedly: it exited with code 3."
    )
    assert one["log_tail"] == ["Loading kernel.json", "no such kernel"]
    assert one["duration_seconds"] is None
    # the message itself is as before (compatibility)
    assert one["message"] == failed.message
    ran = listing["results"][0]
    assert ran["duration_seconds"] == 4200
    assert ran["failure_detail"] is None
    assert ran["log_tail"] == ["[I ServerApp] Shutting down"]
    assert ran["reason_label"] == "stopped by the user"


# --- What of a log is kept ------------------------------------------------------------------------


def test_a_log_tail_keeps_no_token_no_absolute_path_and_no_control_characters(
    tmp_path: Path,
) -> None:
    # Given a local server's log with a path, its own URL with a token, a secret in a setting,
    # its token bare, a terminal's colours and a carriage return
    spawner = LocalProcessSpawner(tmp_path / "run", socket_dir=tmp_path / "sockets")
    session_id = uuid.uuid4().hex
    token = "4f1c2a9be07d4c3fa1b2c3d4e5f60718"
    log = log_path(spawner.runtime_dir, session_id)
    log.parent.mkdir(parents=True)
    lines = [
        "Cannot read /srv/portal/var/home/u~7/secret/kernel.json: no such kernel",
        "Running at http+unix://%2Frun%2Fjlp%2Fs.sock/user/ann/lab?token=" + token,
        'c.ServerApp.password = "argon2:abc"; API_KEY=ZmFrZS1rZXktZm9yLXRlc3Q',
        f"Authorization: token {token}",
        "\x1b[31mERROR\x1b[0m kernel died\r",
        "\x07bell\x00and\x1b]0;title\x07 nul",
    ]
    log.write_text("\n".join(lines) + "\n")
    state = {"session_id": session_id, "token": token}

    # When the session ends and its tail is kept
    tail = server_log_tail(spawner, state)

    # then the lines are there, in order, without any of it
    kept = tail.splitlines()
    assert kept[0] == "Cannot read kernel.json: no such kernel"
    assert kept[1] == "Running at /user/ann/lab"
    assert kept[3] == "Authorization: token [hidden]"
    assert kept[4] == "ERROR kernel died"
    assert kept[5] == "belland nul"
    for secret in (token, "/srv", "u~7", "%2F", "argon2:abc", "ZmFrZS1rZXktZm9yLXRlc3Q", "\x1b"):
        assert secret not in tail, secret
    assert all(ch == "\n" or ch.isprintable() for ch in tail)


def test_a_log_tail_is_the_last_lines_within_its_cap() -> None:
    text = "\n".join(f"line {n} " + "x" * 150 for n in range(100))

    tail = safe_log_tail(text)

    lines = tail.splitlines()
    assert len(lines) <= LOG_TAIL_LINES
    assert len(tail) <= history.LOG_TAIL_MAX_CHARS
    assert lines[-1].startswith("line 99 ")
    assert safe_log_tail("\n\n  \n") == ""


def test_a_session_without_a_server_or_log_keeps_no_tail(tmp_path: Path) -> None:
    spawner = LocalProcessSpawner(tmp_path / "run", socket_dir=tmp_path / "sockets")

    assert server_log_tail(spawner, {}) == ""
    assert server_log_tail(spawner, {"session_id": uuid.uuid4().hex}) == ""
    assert server_log_tail(spawner, {"session_id": "../../etc/passwd"}) == ""
