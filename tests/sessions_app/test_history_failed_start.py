"""The history page after a failed start (issue 15's test): a real worker starts a server that
writes a few lines and exits, the start fails, and the person sees in Chromium, on the history
page, how it ended, why, and the last lines of its log, without a local path or a token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from playwright.sync_api import expect

from sessions_app.models import Environment, Session
from sessions_app.services import session_launch
from tests.browser import chromium
from tests.conftest import login_verified
from tests.portal.asgi_world import asgi_web
from tests.sessions_app.lifecycle import in_state, wait_for
from tests.sessions_app.local_world import session_python

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOKEN = "s3cr3tT0kenOfTheServer"
# A server that fails as it starts: a path, its own URL with a token, a terminal's colours, then
# exit 3 (once its sandbox is up: a start that ends before that fails in start() itself).
FAILING_SERVER = (
    "import sys, time; "
    "print('Reading /srv/portal/var/spawner/secret/kernel.json'); "
    f"print('Serving at http+unix://%2Frun%2Fjlp%2Fx.sock/user/me/lab?token={TOKEN}'); "
    "print('\\x1b[31mFatal: no such kernel: python4\\x1b[0m'); "
    "sys.stdout.flush(); time.sleep(3); sys.exit(3)"
)


def test_the_history_page_shows_a_failed_start_with_its_reason_and_log_lines(
    celery_worker: Any,
    accepted: User,
    environment: Environment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an environment whose server exits as it starts
    Environment.objects.filter(pk=environment.pk).update(
        command=[session_python(), "-c", FAILING_SERVER]
    )

    # When the person launches it, the start fails
    launched = session_launch(user=accepted, environment_slug="ecmwf-dss", options={})
    session = wait_for(launched.session.pk, in_state(Session.State.FAILED), timeout=120)
    assert session.reason == Session.Reason.BACKEND_ERROR

    # and its log's last lines are kept on the row, its files being gone
    assert session.log_tail.splitlines() == [
        "Reading kernel.json",
        "Serving at /user/me/lab",
        "Fatal: no such kernel: python4",
    ]

    # When they open their history in a browser
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    client = Client()
    login_verified(client, accepted)
    with asgi_web(tmp_path, workers=1) as (host, port), chromium() as browser:
        base = f"http://{host}:{port}"
        context = browser.new_context()
        context.add_cookies(
            [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base}]
        )
        page = context.new_page()
        page.goto(f"{base}/sessions/")

        # then the session is listed with how it ended and why
        row = page.locator(f"#history-{session.pk}")
        expect(row).to_contain_text("The server could not be started")
        expect(row).to_contain_text("exited with code 3")
        expect(row).to_contain_text("did not start")

        # and its page says why and shows the log's last lines
        row.get_by_role("link").click()
        page.wait_for_url(f"{base}/sessions/{session.pk}/")
        expect(page.locator("#history-ended-how")).to_have_text("The server could not be started")
        expect(page.locator("#history-failure")).to_contain_text(
            "The server stopped unexpectedly: it exited with code 3."
        )
        log = page.locator("#history-log")
        expect(log).to_contain_text("Fatal: no such kernel: python4")
        expect(log).to_contain_text("Serving at /user/me/lab")
        shown = page.locator("main").inner_text()
        for secret in (TOKEN, "/srv/", "%2F", "spawner/secret"):
            assert secret not in shown, secret
        context.close()
    # The ORM calls above ran in Playwright's context, on a connection of their own.
    connection.close()
