"""The forward-auth endpoints that the routers ask before each request into a session: the
Kubernetes Ingress's (``/auth/session/<id>/``) and the local nginx's (``/auth/route/``, the route
in ``X-Original-URI``), and the refusal page nginx shows.

The authorization matrix covers every kind of caller; this file covers the session's side (its
state, an id that does not exist, someone else's route) and what the answer carries: the
server's credential and socket for the router, the caller's cookies without the portal's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from portal.tokens import token_issue, token_revoke, tokens_live_for
from sessions_app.models import Environment, Session
from sessions_app.spawners import get_spawner
from sessions_app.spawners.base import route_name
from sessions_app.spawners.socket_route import socket_pin
from suspension_app.services import suspension_impose
from tests.conftest import _make_user, login_verified
from tests.sessions_app.pinned import pinned_state, pinned_upstream, server_socket

pytestmark = pytest.mark.django_db

TOKEN = "the-servers-own-token"


@pytest.fixture(autouse=True)
def _local_spawner(settings: Any) -> Iterator[None]:
    settings.SPAWNER = "local"
    get_spawner.cache_clear()
    yield
    get_spawner.cache_clear()


def _session(user: User, environment: Environment, state: str) -> Session:
    now = timezone.now()
    running = state in (Session.State.RUNNING, Session.State.STOPPING)
    return Session.objects.create(
        user=user,
        environment=environment,
        state=state,
        created_at=now - timedelta(seconds=30),
        started_at=now if running else None,
        expires_at=now + environment.max_duration if running else None,
        ended_at=now if state in ("stopped", "expired", "failed") else None,
        # What the local back-end keeps for a server (sessions_app/spawners/local.py).
        spawner_state=pinned_state(TOKEN),
    )


def _ask(client: Client, session_id: uuid.UUID) -> tuple[int, str]:
    response = client.get(reverse("session-route-auth", args=[session_id]))
    return response.status_code, response.content.decode()


def _ask_route(client: Client, uri: str, **headers: str) -> Any:
    return client.get(reverse("route-auth"), headers={"X-Original-URI": uri, **headers})


# --- one session's route (the Ingress) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("starting", 200),  # JupyterLab's first requests may come before the row says running
        ("running", 200),
        ("queued", 403),
        ("stopping", 403),
        ("stopped", 403),
        ("expired", 403),
        ("failed", 403),
    ],
)
def test_only_a_starting_or_running_session_of_ones_own_lets_requests_through(
    client: Client, owner: User, environment: Environment, state: str, status: int
) -> None:
    session = _session(owner, environment, state)
    login_verified(client, owner)

    assert _ask(client, session.pk)[0] == status
    assert _ask_route(client, "/user/owner/lab").status_code == status


def test_the_answer_is_never_a_redirect_and_hands_the_router_the_credential(
    client: Client, owner: User, environment: Environment
) -> None:
    session = _session(owner, environment, "running")

    anonymous = client.get(reverse("session-route-auth", args=[session.pk]))
    login_verified(client, owner)
    allowed = client.get(reverse("session-route-auth", args=[session.pk]))

    assert anonymous.status_code == 401
    assert "Location" not in anonymous.headers
    assert TOKEN not in str(anonymous.headers)
    assert allowed.status_code == 200
    assert allowed.headers["X-Portal-User"] == "owner"
    assert allowed.headers["Authorization"] == f"token {TOKEN}"
    assert "no-cache" in allowed.headers["Cache-Control"]


def test_an_unknown_session_is_refused(client: Client, owner: User) -> None:
    login_verified(client, owner)

    status, body = _ask(client, uuid.uuid4())

    assert status == 403
    assert "not your session" in body


def test_a_suspension_refuses_the_next_request_while_the_session_still_runs(
    client: Client, owner: User, staff: User, environment: Environment
) -> None:
    session = _session(owner, environment, "running")
    login_verified(client, owner)
    assert _ask(client, session.pk)[0] == 200
    assert _ask_route(client, "/user/owner/lab").status_code == 200

    suspension_impose(user=owner, reason="Cleanup circumvented.", imposed_by=staff)

    status, body = _ask(client, session.pk)
    assert status == 403
    assert "Cleanup circumvented." in body
    refused = _ask_route(client, "/user/owner/api/kernels")
    assert refused.status_code == 403
    assert "Authorization" not in refused.headers


def test_only_get_is_answered(client: Client, owner: User, environment: Environment) -> None:
    session = _session(owner, environment, "running")
    login_verified(client, owner)

    response = client.post(reverse("session-route-auth", args=[session.pk]))

    assert response.status_code == 405


# --- the local router: the route in the URI -----------------------------------------------------


def test_the_owner_passes_to_their_own_servers_socket(
    client: Client, owner: User, environment: Environment
) -> None:
    session = _session(owner, environment, "running")
    login_verified(client, owner)

    response = _ask_route(client, "/user/owner/api/kernels?x=1")

    assert response.status_code == 200
    assert response.headers["Authorization"] == f"token {TOKEN}"
    assert response.headers["X-Jupyter-Upstream"] == pinned_upstream(session.spawner_state)


def test_the_router_is_never_sent_to_the_path_in_the_persons_own_folder(
    client: Client, owner: User, environment: Environment
) -> None:
    # Given a running session whose person replaced their socket with a link to another
    # socket (the server's own was pinned when it answered)
    session = _session(owner, environment, "running")
    elsewhere = server_socket()
    own = Path(session.spawner_state["socket"])
    own.unlink()
    own.symlink_to(elsewhere)
    login_verified(client, owner)

    # then the router is still sent to the pinned server's socket
    response = _ask_route(client, "/user/owner/lab")
    assert response.headers["X-Jupyter-Upstream"] == pinned_upstream(session.spawner_state)
    # and a link at the pin itself is not followed: no route at all
    link = Path(pinned_upstream(session.spawner_state).removeprefix("unix:"))
    link.unlink()
    link.symlink_to(elsewhere)
    assert _ask_route(client, "/user/owner/lab").status_code == 403


def test_a_planted_link_is_never_pinned(tmp_path: Path) -> None:
    target = server_socket()
    planted = tmp_path / "jupyter.sock"
    planted.symlink_to(target)

    assert not socket_pin(planted, tmp_path / "routes" / "s.sock", None, None)
    assert not (tmp_path / "routes" / "s.sock").exists()


def test_someone_elses_route_is_refused_even_with_a_running_session_of_ones_own(
    client: Client, owner: User, other_user: User, environment: Environment
) -> None:
    _session(owner, environment, "running")
    _session(other_user, environment, "running")
    login_verified(client, other_user)

    for uri in ("/user/owner/lab", "/user/owner/api/kernels", "/user/%6Fwner/lab", "/elsewhere"):
        response = _ask_route(client, uri)

        assert response.status_code == 403, uri
        assert "Authorization" not in response.headers
    assert _ask_route(client, "/user/other/lab").status_code == 200


def test_a_portal_token_opens_ones_own_route_and_a_revoked_one_does_not(
    client: Client, owner: User, environment: Environment
) -> None:
    session = _session(owner, environment, "running")
    raw = token_issue(user=owner)

    allowed = _ask_route(client, "/user/owner/api/status", Authorization=f"Bearer {raw}")
    token_revoke(tokens_live_for(owner).get())
    revoked = _ask_route(client, "/user/owner/api/status", Authorization=f"Bearer {raw}")

    assert allowed.status_code == 200
    assert allowed.headers["X-Jupyter-Upstream"] == pinned_upstream(session.spawner_state)
    assert revoked.status_code == 401
    assert "Authorization" not in revoked.headers


def test_a_signed_in_browser_without_the_second_factor_is_asked_to_finish(
    client: Client, owner: User, environment: Environment
) -> None:
    _session(owner, environment, "running")
    client.force_login(owner)

    response = _ask_route(client, "/user/owner/lab")

    assert response.status_code == 401
    assert "Finish signing in" in response.content.decode()


def test_the_servers_get_the_callers_cookies_without_the_portals(
    client: Client, owner: User, environment: Environment
) -> None:
    _session(owner, environment, "running")
    login_verified(client, owner)
    client.cookies["_xsrf"] = "jupyters-own"
    client.cookies[django_settings.CSRF_COOKIE_NAME] = "portal-csrf"

    response = _ask_route(client, "/user/owner/lab")

    forwarded = response.headers["Cookie"]
    assert "_xsrf=jupyters-own" in forwarded
    assert django_settings.SESSION_COOKIE_NAME not in forwarded
    assert "portal-csrf" not in forwarded


def test_every_copy_of_a_portal_cookie_is_stripped() -> None:
    from sessions_app.route_auth import without_portal_cookies

    header = "sessionid=planted; a=1; sessionid=real;csrftoken=c; _xsrf=x"

    assert without_portal_cookies(header) == "a=1; _xsrf=x"
    assert without_portal_cookies("sessionid=only") == ""


# --- what nginx shows when it refused -----------------------------------------------------------


def _refusal(client: Client, uri: str, accept: str, method: str = "GET") -> Any:
    return client.get(
        reverse("route-refusal"),
        headers={"X-Original-URI": uri, "X-Original-Method": method, "Accept": accept},
    )


def test_a_browser_that_is_not_signed_in_goes_to_the_sign_in_and_comes_back(
    client: Client, owner: User, environment: Environment
) -> None:
    _session(owner, environment, "running")

    response = _refusal(client, "/user/owner/lab/tree/a b.ipynb?x=1&y=2", "text/html,*/*")

    assert response.status_code == 302
    assert response.headers["Location"] == (
        "/login/?next=%2Fuser%2Fowner%2Flab%2Ftree%2Fa+b.ipynb%3Fx%3D1%26y%3D2"
    )


def test_programs_get_the_apis_json_errors(
    client: Client, owner: User, other_user: User, environment: Environment
) -> None:
    _session(owner, environment, "running")

    anonymous = _refusal(client, "/user/owner/api/status", "*/*")
    login_verified(client, other_user)
    not_theirs = _refusal(client, "/user/owner/api/status", "application/json")

    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert not_theirs.status_code == 403
    assert not_theirs.json() == {
        "detail": "This is not your session, or it is not running.",
        "code": "not_your_session",
    }


def test_a_person_refused_sees_a_page_that_says_why(
    client: Client, owner: User, staff: User, environment: Environment
) -> None:
    _session(owner, environment, "running")
    login_verified(client, owner)
    suspension_impose(user=owner, reason="Cleanup circumvented.", imposed_by=staff)

    response = _refusal(client, "/user/owner/lab", "text/html")

    assert response.status_code == 403
    page = response.content.decode()
    assert "You cannot open this session" in page
    assert "Cleanup circumvented." in page
    assert TOKEN not in page


# --- header values that cannot go into a header ---------------------------------------------------


@pytest.mark.parametrize(
    ("username", "sent"),
    [
        ("mallory\r\nX-Portal-Staff: yes", "mallory%0D%0AX-Portal-Staff: yes"),
        ("line\nbreak", "line%0Abreak"),
        ("zoë@example.org", "zo%C3%AB@example.org"),
        ("50%", "50%25"),
        ("owner.name@example.org", "owner.name@example.org"),
    ],
)
def test_a_username_that_cannot_be_a_header_is_sent_percent_encoded(
    client: Client, environment: Environment, username: str, sent: str
) -> None:
    # given an identity provider's username with CR/LF (Django refuses such a header: a 500)
    user = _make_user(username)
    session = _session(user, environment, "running")
    login_verified(client, user)
    # when
    by_session = client.get(reverse("session-route-auth", args=[session.pk]))
    by_route = _ask_route(client, f"/user/{route_name(username)}/lab")
    # then
    for response in (by_session, by_route):
        assert response.status_code == 200
        assert response.headers["X-Portal-User"] == sent
        assert "X-Portal-Staff" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Original-URI": "/user/owner/lab\r\nX-Evil: 1"},
        {"X-Original-URI": "\x00\xff"},
        {"Cookie": "a=1\r\nX-Evil: 1; b=2"},
        {"Cookie": "\x00=\x00; ;=; c"},
        {"Authorization": "Bearer \r\n"},
        {"Authorization": "Bearer jlp_\x00\xff"},
        {"Authorization": "Bearer a b c"},
        {"Authorization": "\xff"},
    ],
)
def test_no_header_value_makes_the_forward_auth_fail(
    client: Client, owner: User, environment: Environment, headers: dict[str, str]
) -> None:
    session = _session(owner, environment, "running")
    raw = token_issue(user=owner)  # a Cookie header replaces the session's; the token stays
    headers = {"Authorization": f"Bearer {raw}", "X-Original-URI": "/user/owner/lab", **headers}
    failing = Client(raise_request_exception=False)

    for name in ("session-route-auth", "route-auth"):
        args = [session.pk] if name == "session-route-auth" else []
        response = failing.get(reverse(name, args=args), headers=headers)

        assert response.status_code in (200, 401, 403), (name, response.content)
        assert "X-Evil" not in response.headers
        if "Cookie" in headers and response.status_code == 200:
            assert "\n" not in response.headers.get("Cookie", "")
