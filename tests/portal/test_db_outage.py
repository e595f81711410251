"""A database that does not answer (portal/outage.py): the API answers JSON 503 ``unavailable``
with ``Retry-After``, pages the branded 503 page, the waiting views end early the same way —
never a 500 — and once the database is back every request answers as before.

The outage is real: the portal reaches PostgreSQL through a forwarder (outage_world.py) that
resets every connection, open or new, while cut. The test client runs the portal in this
process (connections of its own, no pool); the real servers (uvicorn, and gunicorn with
uvicorn's workers as deployed) run it with ``DATABASE_POOL_SIZE``'s pool, which must recover.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from portal.outage import RETRY_AFTER_SECONDS
from portal.tokens import token_issue
from sessions_app.models import Environment, Session
from tests.conftest import login_verified
from tests.portal import asgi_world
from tests.portal.outage_world import database_forwarder, through

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

API = "/api/v1/session/"
LAUNCH = json.dumps({"environment": "ecmwf-dss"})
PAGE_WORDS = "temporarily unavailable"
# Generous: a request waits up to the pool's timeout (10 s) for a connection that cannot come.
OUTAGE_ANSWER_SECONDS = 60
# The pool reconnects with a backoff; the database is back well before this.
RECOVERY_SECONDS = 60


def _assert_api_unavailable(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 503, (status, body[:500])
    assert int(headers["retry-after"]) == RETRY_AFTER_SECONDS
    answer = json.loads(body)
    assert answer["code"] == "unavailable"
    assert answer["detail"]


def _assert_page_unavailable(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 503, (status, body[:500])
    assert int(headers["retry-after"]) == RETRY_AFTER_SECONDS
    assert headers["content-type"].startswith("text/html")
    page = body.decode()
    assert PAGE_WORDS in page.lower()
    assert "ECMWF Data Store Service" in page  # the site's own page, not a bare error


def _queued(user: User, environment: Environment) -> Session:
    return Session.objects.create(
        user=user, environment=environment, state="queued", created_at=timezone.now()
    )


# --- the test client: the portal in this process ----------------------------------------------


def _answer(response: Any) -> tuple[int, dict[str, str], bytes]:
    headers = {name.lower(): value for name, value in response.headers.items()}
    return response.status_code, headers, response.content


def test_the_api_and_pages_answer_503_while_the_database_is_cut_and_200_once_it_is_back(
    accepted: User, environment: Environment
) -> None:
    # Given a queued session, a client with a token, and a browser signed in
    _queued(accepted, environment)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(user=accepted)}")
    # A middleware's exception (the session lookup) is Django's to turn into a response, as a
    # real server does; the client would re-raise it.
    browser = Client(raise_request_exception=False)
    login_verified(browser, accepted)
    browser_api = APIClient(raise_request_exception=False)
    login_verified(browser_api, accepted)

    with database_forwarder() as forwarder, through(forwarder):
        assert api.get(API).status_code == 200

        # When the database goes away
        forwarder.cut()

        # then the API answers 503 unavailable, with the token and with the browser's session
        _assert_api_unavailable(*_answer(api.get(API)))
        _assert_api_unavailable(*_answer(api.post(API, {"environment": "ecmwf-dss"})))
        _assert_api_unavailable(*_answer(api.delete(API)))
        _assert_api_unavailable(*_answer(browser_api.get(API)))
        _assert_api_unavailable(*_answer(api.get("/api/v1/environments/")))
        # the pages the branded page
        for path in ("/", "/session/", "/usage/"):
            _assert_page_unavailable(*_answer(browser.get(path)))
        _assert_page_unavailable(*_answer(browser.post("/session/stop/")))
        # the session page's status poll (it asks for JSON) JSON
        _assert_api_unavailable(
            *_answer(browser.get("/session/status/", HTTP_ACCEPT="application/json"))
        )
        # and the probes as before
        assert browser.get("/readyz").status_code == 503
        assert browser.get("/healthz").status_code == 200

        # When it is back
        forwarder.restore()
        # (what a server does after each request, which the test client leaves out: a
        # connection that failed is dropped)
        close_old_connections()

        # then everything answers again
        assert api.get(API).status_code == 200
        assert browser_api.get(API).status_code == 200
        for path in ("/session/", "/usage/"):
            assert browser.get(path).status_code == 200, path
        launcher = browser.get("/")  # the launcher sends a user with a session to its page
        assert (launcher.status_code, launcher["Location"]) == (302, "/session/")
        assert api.delete(API).status_code == 202
        assert api.post(API, {"environment": "ecmwf-dss"}).status_code == 201


def test_a_long_poll_ends_early_with_503_when_the_database_goes_away_during_its_wait(
    accepted: User, environment: Environment
) -> None:
    # Given a queued session and a long poll waiting for it
    _queued(accepted, environment)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(user=accepted)}")
    with database_forwarder() as forwarder, through(forwarder):
        cut = threading.Timer(1.5, forwarder.cut)
        cut.start()
        begun = time.monotonic()
        try:
            # When the database goes away during the wait
            response = api.get(API, {"wait": 30})
        finally:
            cut.cancel()
        took = time.monotonic() - begun

        # then the poll ends before its time, 503 unavailable
        _assert_api_unavailable(*_answer(response))
        assert took < 30, took


# --- real servers, with the pool --------------------------------------------------------------


def _request(
    host: str, port: int, method: str, path: str, headers: dict[str, str], body: str = ""
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=OUTAGE_ANSWER_SECONDS + 30)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        conn.close()


class _Stream(threading.Thread):
    """The session page's event stream, read until the server ends it."""

    def __init__(self, host: str, port: int, cookie: str) -> None:
        super().__init__(daemon=True)
        self.host, self.port, self.cookie = host, port, cookie
        self.status: int | None = None
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.waiting = threading.Event()
        self.ended = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=OUTAGE_ANSWER_SECONDS)
        try:
            conn.request("GET", "/session/events/", headers={"Cookie": self.cookie})
            response = conn.getresponse()
            self.status = response.status
            kind = ""
            while line := response.readline():
                text = line.decode().rstrip("\n")
                if text.startswith("event: "):
                    kind = text.removeprefix("event: ")
                elif text.startswith("data: "):
                    self.events.append((kind, json.loads(text.removeprefix("data: "))))
                    if kind == "status":
                        self.waiting.set()
        finally:
            conn.close()
            self.ended.set()


def _long_poll(host: str, port: int, token: dict[str, str], answers: list[Any]) -> None:
    answers.append(_request(host, port, "GET", f"{API}?wait=30", token))


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_a_real_server_answers_503_through_an_outage_and_its_pool_recovers(
    accepted: User, environment: Environment, tmp_path: Path, server: str
) -> None:
    # Given a queued session, a token, a signed-in browser, and the web on a forwarded database
    _queued(accepted, environment)
    token = {"Authorization": f"Bearer {token_issue(user=accepted)}"}
    launch = {**token, "Content-Type": "application/json"}
    browser = Client()
    login_verified(browser, accepted)
    cookie = {"Cookie": f"sessionid={browser.cookies['sessionid'].value}"}
    with database_forwarder() as forwarder:
        url = asgi_world.test_database_url().replace(
            f":{forwarder.target[1]}/", f":{forwarder.port}/"
        )
        web = asgi_world.asgi_web(tmp_path, workers=1, server=server, DATABASE_URL=url)
        with web as (host, port):
            assert _request(host, port, "GET", API, token)[0] == 200
            # and a long poll and the page's event stream waiting for the session
            polls: list[Any] = []
            poll = threading.Thread(target=_long_poll, args=(host, port, token, polls), daemon=True)
            poll.start()
            stream = _Stream(host, port, cookie["Cookie"])
            stream.start()
            assert stream.waiting.wait(30)
            time.sleep(1)  # the poll, begun first, is waiting too

            # When the database goes away
            forwarder.cut()

            # then the waits end early: the poll 503 unavailable, the stream with that event
            poll.join(OUTAGE_ANSWER_SECONDS)
            assert polls, "the long poll did not end"
            _assert_api_unavailable(*polls[0])
            assert stream.ended.wait(OUTAGE_ANSWER_SECONDS)
            assert (stream.status, stream.events[0][0]) == (200, "status")
            assert stream.events[-1] == ("unavailable", json.loads(polls[0][2]))
            # every other request 503: the API JSON, the pages the branded page
            _assert_api_unavailable(*_request(host, port, "GET", API, token))
            _assert_api_unavailable(*_request(host, port, "GET", API, cookie))
            _assert_api_unavailable(*_request(host, port, "POST", API, launch, LAUNCH))
            _assert_api_unavailable(*_request(host, port, "DELETE", API, token))
            for path in ("/", "/session/", "/session/events/"):
                _assert_page_unavailable(*_request(host, port, "GET", path, cookie))
            # and the probes as before
            assert _request(host, port, "GET", "/readyz", {})[0] == 503
            assert _request(host, port, "GET", "/healthz", {})[0] == 200

            # When the database is back
            forwarder.restore()
            back = time.monotonic()
            while _request(host, port, "GET", API, token)[0] != 200:
                assert time.monotonic() - back < RECOVERY_SECONDS, "the web did not recover"
                time.sleep(0.2)

            # then every request answers as before: no connection broken by the cut is used
            for _ in range(20):
                assert _request(host, port, "GET", API, token)[0] == 200
            for path in ("/session/", "/usage/"):
                assert _request(host, port, "GET", path, cookie)[0] == 200, path
            assert _request(host, port, "GET", "/readyz", {})[0] == 200
            assert _request(host, port, "DELETE", API, token)[0] == 202
            assert _request(host, port, "POST", API, launch, LAUNCH)[0] == 201

    # and the server never answered 500, nor failed a request half-way
    log = (tmp_path / "web.log").read_text()
    for failure in ("Internal Server Error", "Exception in ASGI application"):
        assert failure not in log
