"""What the live portal does not do (any more), and a client meets all the same: an outage's
503, and a portal from before ``GET /api/v1/sessions/{id}/``, ``still_stopping`` and the long
poll's end states. A stand-in portal (plain HTTP, scripted answers) plays them; the live
portal's own answers are the other tests'."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from jlp_client import ApiError, Client

Answer = tuple[int, dict[str, str], Any]


def _session(state: str, **fields: Any) -> dict[str, Any]:
    return {"id": "6f1c", "state": state, "environment": "ecmwf-dss", **fields}


class StandIn:
    """Answers by (method, path): each request takes the next scripted answer, the last one
    repeats; anything unscripted is Django's HTML 404 page."""

    def __init__(self) -> None:
        self.script: dict[tuple[str, str], list[Answer]] = {}
        self.seen: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                stand_in.seen.append(f"{self.command} {self.path}")
                path = self.path.split("?")[0]
                answers = stand_in.script.get((self.command, path))
                if not answers:
                    status, headers, body = 404, {"Content-Type": "text/html"}, "<h1>Not Found</h1>"
                else:
                    status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.script[(method, f"/api/v1/{path}")] = list(answers)


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    portal = StandIn()
    thread = threading.Thread(target=portal.server.serve_forever, daemon=True)
    thread.start()
    yield portal
    portal.server.shutdown()
    portal.server.server_close()


@pytest.fixture
def client(stand_in: StandIn) -> Client:
    client = Client(stand_in.url, "jlp_test")
    client.naps = []  # type: ignore[attr-defined]
    client.sleep = client.naps.append  # type: ignore[attr-defined]
    return client


def test_an_outage_503_is_retried_after_its_retry_after(stand_in: StandIn, client: Any) -> None:
    outage = {"detail": "The service is briefly unavailable.", "code": "unavailable"}
    stand_in.on(
        "GET", "session/", (503, {"Retry-After": "2"}, outage), (200, {}, _session("running"))
    )

    session = client.status()

    assert session is not None and session.running
    assert client.naps == [2.0]


def test_an_outage_that_lasts_ends_in_the_error_after_the_bounded_retries(
    stand_in: StandIn, client: Any
) -> None:
    outage = {"detail": "The service is briefly unavailable.", "code": "unavailable"}
    stand_in.on("GET", "session/", (503, {}, outage))

    with pytest.raises(ApiError) as raised:
        client.status()

    assert (raised.value.status, raised.value.code) == (503, "unavailable")
    assert client.naps == [1.0, 2.0, 4.0]  # no Retry-After: doubling, 3 retries


def test_an_answer_that_is_not_the_apis_json_is_still_one_clear_error(
    stand_in: StandIn, client: Any
) -> None:
    with pytest.raises(ApiError) as raised:
        client.storage()

    assert (raised.value.status, raised.value.code) == (404, "http_404")
    assert raised.value.detail == f"HTTP 404 Not Found from {stand_in.url}/api/v1/storage/"


def test_a_session_is_found_in_the_history_without_its_own_address(
    stand_in: StandIn, client: Any
) -> None:
    page = {"count": 1, "next": None, "previous": None, "results": [_session("failed")]}
    stand_in.on("GET", "sessions/", (200, {}, page))

    assert client.session("6f1c").state == "failed"
    assert stand_in.seen[0] == "GET /api/v1/sessions/6f1c/"


def test_a_launch_answered_with_the_session_still_stopping_is_made_again_after_it(
    stand_in: StandIn, client: Any
) -> None:
    stand_in.on(
        "POST",
        "session/",
        (200, {}, _session("stopping")),
        (200, {}, _session("stopping")),
        (201, {}, {**_session("queued"), "id": "9a2e"}),
    )

    session = client.launch("ecmwf-dss")

    assert (session.id, session.state, session.created) == ("9a2e", "queued", True)
    assert client.naps == [1.0, 1.0]


def test_a_session_that_ends_during_the_long_poll_is_told_with_its_end(
    stand_in: StandIn, client: Any
) -> None:
    # given a portal whose long poll says only "none active" once the session failed
    none = {"detail": "You have no active session.", "code": "no_active_session"}
    stand_in.on("GET", "session/", (200, {}, _session("starting")), (404, {}, none))
    failed = _session("failed", reason="backend_error", message="The image was not found.")
    stand_in.on("GET", "sessions/6f1c/", (200, {}, failed))
    # when
    seen: list[str] = []
    session = client.wait(on_progress=lambda s: seen.append(s.state))
    # then
    assert (session.state, session.reason) == ("failed", "backend_error")
    assert seen == ["starting"]
