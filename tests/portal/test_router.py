"""The router on the portal's one address: real nginx (portal/router.py) in front of the portal
(pytest-django's live server) and of servers on Unix sockets: a real JupyterLab, and a server
that answers with the request it received.

Only the session's owner passes (signed in with the second factor, or with their portal token),
websockets included; everyone else gets 401/403 from the router; the Jupyter token is never in
a response; the forward-auth endpoints do not exist from outside; the server never receives
portal credentials.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import websocket
from django.conf import settings
from django.contrib.auth.models import User

from portal.router import render_config
from portal.tokens import token_issue
from sessions_app.models import Environment
from suspension_app.services import suspension_impose
from tests.portal.router_world import browser_for, nginx_router, router_base, running_session

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def _run_code(url: str, headers: dict[str, str], code: str) -> str:
    """Start a kernel over the REST API and run ``code`` on its websocket, through the router;
    returns what it printed."""
    started = requests.post(
        f"{url}api/kernels", json={"name": "python3"}, headers=headers, timeout=60
    )
    assert started.status_code == 201, started.text
    kernel = started.json()["id"]
    channel = url.replace("http://", "ws://", 1) + f"api/kernels/{kernel}/channels"
    connection = websocket.create_connection(
        channel, header=[f"{name}: {value}" for name, value in headers.items()], timeout=60
    )
    msg_id = uuid.uuid4().hex
    connection.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "session": uuid.uuid4().hex,
                    "username": "test",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False, "allow_stdin": False},
                "buffers": [],
                "channel": "shell",
            }
        )
    )
    printed: list[str] = []
    try:
        while True:
            message = json.loads(connection.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "stream":
                printed.append(message["content"]["text"])
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                return "".join(printed)
    finally:
        connection.close()
        requests.delete(f"{url}api/kernels/{kernel}", headers=headers, timeout=30)


def _cookie_header(browser: requests.Session) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{c.name}={c.value}" for c in browser.cookies)}


def test_the_owner_uses_their_jupyterlab_through_the_router_and_never_sees_its_token(
    router_url: str, router_lab: tuple[Path, str], owner: User, environment: Environment
) -> None:
    socket_path, token = router_lab
    running_session(owner, environment, socket_path, token)
    browser = browser_for(owner)

    page = browser.get(f"{router_url}/user/owner/lab", headers=HTML, timeout=30)
    status = browser.get(f"{router_url}/user/owner/api/status", timeout=30)
    printed = _run_code(f"{router_url}/user/owner/", _cookie_header(browser), "print(6 * 7)")

    assert page.status_code == 200
    assert "JupyterLab" in page.text
    # JupyterLab writes its token into the page config: the router_url blanks it.
    assert token not in page.text
    assert token not in str(page.headers) and token not in str(status.headers)
    assert status.status_code == 200 and "started" in status.json()
    assert printed == "42\n"


def test_a_rest_client_reaches_its_own_session_with_its_portal_token(
    router_url: str, router_lab: tuple[Path, str], owner: User, environment: Environment
) -> None:
    socket_path, token = router_lab
    running_session(owner, environment, socket_path, token)
    bearer = {"Authorization": f"Bearer {token_issue(user=owner)}"}

    status = requests.get(f"{router_url}/user/owner/api/status", headers=bearer, timeout=30)
    printed = _run_code(f"{router_url}/user/owner/", bearer, "print('over the websocket')")

    assert status.status_code == 200
    assert printed == "over the websocket\n"


def test_everyone_but_the_owner_is_refused_by_the_router(
    router_url: str,
    router_lab: tuple[Path, str],
    owner: User,
    other_user: User,
    staff: User,
    environment: Environment,
) -> None:
    socket_path, token = router_lab
    running_session(owner, environment, socket_path, token)
    lab_url = f"{router_url}/user/owner/lab"
    api_url = f"{router_url}/user/owner/api/status"

    # Anonymous: a browser is sent to sign in and comes back; a program gets the API's 401.
    anonymous = requests.get(lab_url, headers=HTML, allow_redirects=False, timeout=30)
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"] == "/login/?next=%2Fuser%2Fowner%2Flab"
    program = requests.get(api_url, timeout=30)
    assert program.status_code == 401
    assert program.json()["code"] == "not_authenticated"
    # Knowing the server's own token does not help: the router_url asks the portal first.
    for stolen in (
        requests.get(api_url, headers={"Authorization": f"token {token}"}, timeout=30),
        requests.get(f"{api_url}?token={token}", timeout=30),
    ):
        assert stolen.status_code == 401
    # Another signed-in user (even staff), with a running session of their own elsewhere.
    for someone in (other_user, staff):
        refused = browser_for(someone).get(lab_url, headers=HTML, timeout=30)
        assert refused.status_code == 403
        assert "You cannot open this session" in refused.text
    # Someone else's websocket upgrade is refused before it reaches the server.
    with pytest.raises(websocket.WebSocketBadStatusException) as upgrade:
        websocket.create_connection(
            f"{router_url.replace('http', 'ws', 1)}/user/owner/api/kernels/x/channels",
            header=[f"Authorization: Bearer {token_issue(user=other_user)}"],
            timeout=30,
        )
    assert upgrade.value.status_code == 403
    # The owner once suspended: refused at the next request.
    browser = browser_for(owner)
    assert browser.get(api_url, timeout=30).status_code == 200
    suspension_impose(user=owner, reason="Cleanup circumvented.", imposed_by=staff)
    suspended = browser.get(lab_url, headers=HTML, timeout=30)
    assert suspended.status_code == 403
    assert "Cleanup circumvented." in suspended.text
    for answer in (anonymous, program, suspended):
        assert token not in answer.text and token not in str(answer.headers)


def test_the_forward_auth_does_not_exist_from_outside(
    router_url: str, router_lab: tuple[Path, str], owner: User, environment: Environment
) -> None:
    socket_path, token = router_lab
    session = running_session(owner, environment, socket_path, token)
    browser = browser_for(owner)

    for path in ("/auth/route/", "/auth/route/refusal/", f"/auth/session/{session.pk}/"):
        response = browser.get(
            f"{router_url}{path}", headers={"X-Original-URI": "/user/owner/lab"}, timeout=30
        )
        assert response.status_code == 404, path
        assert token not in str(response.headers)
    # The portal itself is served on the same address.
    assert browser.get(f"{router_url}/session/", timeout=30).status_code == 200


def test_the_server_gets_its_credential_and_never_the_portals(
    router_url: str, router_echo: Path, other_user: User, environment: Environment
) -> None:
    running_session(other_user, environment, router_echo, "echo-token")
    browser = browser_for(other_user)
    browser.cookies.set(settings.CSRF_COOKIE_NAME, "portal-csrf")
    browser.cookies.set("_xsrf", "jupyters-own")
    upload = b"x" * (20 * 1024 * 1024)  # a notebook upload larger than nginx's default 1 MiB

    answer = browser.post(
        f"{router_url}/user/other/api/contents/a.ipynb?x=1",
        data=upload,
        headers={
            "X-Forwarded-For": "203.0.113.9",
            "Authorization": "token guessed",
            # Headers of the portal's answers, forged by the client.
            "X-Portal-User": "someone-else",
            "X-Jupyter-Upstream": "unix:/elsewhere.sock",
        },
        timeout=60,
    )

    assert answer.status_code == 200
    seen = answer.json()
    headers = {name.lower(): value for name, value in seen["headers"]}
    assert (seen["method"], seen["path"]) == ("POST", "/user/other/api/contents/a.ipynb?x=1")
    assert seen["body_length"] == len(upload)
    # The server's credential replaced the client's guess (and the router_url blanked the token
    # out of this very answer, which echoes it).
    assert seen["authorization_sha256"] == hashlib.sha256(b"token echo-token").hexdigest()
    assert headers["authorization"] == "token "
    assert headers["cookie"] == "_xsrf=jupyters-own"
    assert headers["host"] == router_url.removeprefix("http://")
    # The client's own claim stays in front; the router_url appends the address it saw, which is
    # what the portal reads with one more trusted hop (portal/client_ip.py).
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert "x-portal-user" not in headers and "x-jupyter-upstream" not in headers
    assert "echo-token" not in str(answer.headers)


def test_a_route_with_a_line_break_cannot_add_headers_to_the_answer(router_url: str) -> None:
    # The router adds the missing slash to /user/<route>; a decoded CR/LF must not end up in
    # the answer's headers (it would set cookies on the portal's address for anyone's link).
    answer = requests.get(
        f"{router_url}/user/x%0d%0aSet-Cookie:%20planted=1%0d%0aX-Evil:%20y",
        allow_redirects=False,
        timeout=30,
    )

    assert "planted" not in answer.headers.get("Set-Cookie", "")
    assert "X-Evil" not in answer.headers
    # The plain form is still redirected to the folder.
    plain = requests.get(f"{router_url}/user/owner?x=1", allow_redirects=False, timeout=30)
    assert (plain.status_code, plain.headers["Location"].split("/user/")[1]) == (302, "owner/?x=1")


def test_kept_forward_auth_answers_do_not_outlive_the_router() -> None:
    # Given a router folder with answers an earlier nginx kept (their keys hold credentials)
    from portal.router import RouterConfig, prepare

    with router_base() as folder:
        config = RouterConfig("127.0.0.1", 8000, "unix:/srv/web.sock", folder / "router")
        prepare(config)
        kept = folder / "router" / "tmp" / "auth-cache" / "a" / "b3f"
        kept.parent.mkdir(parents=True)
        kept.write_text("KEY: owner|Bearer jlp_secret|sessionid=s")

        # When the router is prepared for its next start
        prepare(config)

        # then none is left
        assert not kept.exists()


def test_the_configuration_keeps_nginx_inside_the_router_folder(router_folder: Path) -> None:
    from portal.router import RouterConfig

    rendered = render_config(
        RouterConfig("::1", 8000, "unix:/srv/web.sock", router_folder / "elsewhere")
    )
    text = "\n".join(line for line in rendered.splitlines() if not line.lstrip().startswith("#"))

    assert "listen [::1]:8000;" in text
    assert "server unix:/srv/web.sock;" in text
    for directive in ("pid", "client_body_temp_path", "proxy_temp_path"):
        assert f"{directive} {router_folder / 'elsewhere'}" in text
    assert "/var/lib/nginx" not in text and "/run/nginx" not in text


class _Unavailable(BaseHTTPRequestHandler):
    """The portal while its database is away: every check answers 503 (portal/outage.py)."""

    def do_GET(self) -> None:
        body = b'{"detail": "The portal is temporarily unavailable.", "code": "unavailable"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("portal", ["answers 503", "does not answer"])
def test_a_session_request_while_the_portal_cannot_check_it_is_told_to_retry(
    portal: str,
) -> None:
    # Given a router whose portal answers its checks with 503 (its database is away), or not
    # at all (its web is down)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    port = server.server_address[1]
    if portal == "answers 503":
        threading.Thread(target=server.serve_forever, daemon=True).start()
    else:
        server.server_close()  # nothing listens there
    try:
        with router_base() as folder, nginx_router(folder / "router", f"127.0.0.1:{port}") as url:
            # When someone asks for their JupyterLab
            answer = requests.get(f"{url}/user/owner/lab", timeout=10)
    finally:
        if portal == "answers 503":
            server.shutdown()
            server.server_close()

    # then they are told it is temporary (not nginx's 500), with when to try again
    assert answer.status_code == 503
    assert "Temporarily unavailable" in answer.text
    assert answer.headers["Retry-After"] == "5"
