"""The web's ASGI application (portal/asgi.py) under the real server: a waiting request holds no
thread, and sync views are served on the pool beside the waits, also when the pool is tiny."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psutil
import pytest
from django.utils import timezone

from portal.tokens import token_issue
from sessions_app.models import Environment, Session
from tests.conftest import _make_user
from tests.portal.asgi_world import asgi_web, bearer, get

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WAITS = 30


def _server_threads(port: int) -> int:
    """Threads of the (one) process listening on ``port``."""
    for connection in psutil.net_connections("tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == "LISTEN":
            assert connection.pid is not None
            return psutil.Process(connection.pid).num_threads()
    raise AssertionError(f"nothing listens on {port}")


def test_waiting_requests_hold_no_thread_and_sync_views_answer_beside_them(
    environment: Environment, tmp_path: Path
) -> None:
    # Given a queued user, a bystander, and the web with one process of two threads
    waiter = _make_user("waiter")
    Session.objects.create(
        user=waiter, environment=environment, state="queued", created_at=timezone.now()
    )
    mine, theirs = token_issue(user=waiter), token_issue(user=_make_user("bystander"))

    with asgi_web(tmp_path, workers=1, WEB_THREADS="2", WAIT_MAX_PER_USER=str(WAITS)) as (
        host,
        port,
    ):
        assert get(host, port, "/api/v1/environments/", bearer(theirs))[0] == 200
        before = _server_threads(port)

        # When the waiter opens 30 long polls
        answers: list[int] = []
        polls = [
            threading.Thread(
                target=lambda: answers.append(
                    get(host, port, "/api/v1/session/?wait=4", bearer(mine))[0]
                )
            )
            for _ in range(WAITS)
        ]
        for poll in polls:
            poll.start()
        time.sleep(1.5)  # all of them in, and waiting
        during = _server_threads(port)
        # then the bystander's reads, and the waiter's own read without a wait, are served by
        # the two threads meanwhile
        reads = [get(host, port, "/api/v1/environments/", bearer(theirs))[0] for _ in range(5)]
        status, _, body = get(host, port, "/api/v1/session/", bearer(mine))
        assert (status, json.loads(body)["state"]) == (200, "queued")
        for poll in polls:
            poll.join(timeout=30)

    # and the waits took no thread: none more than before, but the one that runs their short
    # steps in turn (and the events' listener's)
    assert reads == [200] * 5
    assert answers == [200] * WAITS
    assert during <= before + 2, (before, during)
