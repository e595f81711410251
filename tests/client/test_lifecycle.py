"""The whole session life cycle as a REST user lives it, against a live portal whose real
worker starts a real JupyterLab: with ``jlp`` in a terminal, and with ten lines of Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from jlp_client import Client, Session

from sessions_app.models import Environment
from sessions_app.models import Session as SessionRow
from terms_app.models import TermsVersion
from tests.client.conftest import Jlp
from tests.sessions_app.lifecycle import server_answers
from tests.sessions_app.local_world import session_python

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_jlp_logs_in_launches_waits_stops_and_shows_the_history(
    celery_worker: Any,
    jlp: Jlp,
    portal_url: str,
    token: str,
    terms: TermsVersion,
    environment: Environment,
    owner: User,
    tmp_path: Path,
) -> None:
    # Given a user who logged in and accepted the terms
    assert jlp("login", "--url", portal_url, stdin=token).code == 0
    assert jlp("terms", "--accept").code == 0

    # When they launch it to open in their browser (here, a program that notes the address)
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    ran = jlp("launch", "ecmwf-dss", "--open", BROWSER=str(browser))

    # then jlp reports the progress, and ends once the session runs, with its address
    assert ran.code == 0, ran.err
    row = SessionRow.objects.get(user=owner)
    assert row.state == SessionRow.State.RUNNING
    assert server_answers(row.spawner_state)
    assert ran.out.splitlines()[0] == f"Session {row.pk} (ecmwf-dss): running"
    assert f"  URL: {row.open_url}" in ran.out.splitlines()
    progress = ran.err.splitlines()
    assert progress, "progress lines while it waited"
    assert all(line.startswith(("queued", "starting: ")) for line in progress), progress
    # and the browser got the session's address
    assert opened.read_text().strip() == row.open_url

    # and the status says the same, with the time left
    status = jlp("status")
    assert status.code == 0, status.err
    assert status.out.splitlines()[0] == f"Session {row.pk} (ecmwf-dss): running"
    assert "  Time left: " in status.out

    # When they stop it (and wait for its server to go down)
    stopped = jlp("stop", "--wait")

    # then it ended as stopped by them, and nothing is active any more
    assert stopped.code == 0, stopped.err
    assert stopped.out.strip() == f"Session {row.pk} (ecmwf-dss) stopped."
    row.refresh_from_db()
    assert row.state == SessionRow.State.STOPPED
    assert row.reason == SessionRow.Reason.USER_STOPPED
    assert jlp("status").out.strip() == "No active session."

    # and the history shows it, newest first
    history = jlp("history")
    assert history.code == 0, history.err
    assert history.out.splitlines()[0].endswith(f"  ecmwf-dss  stopped (user_stopped)  {row.pk}")


def test_ten_lines_of_python_run_the_whole_life_cycle(
    celery_worker: Any,
    portal_url: str,
    token: str,
    terms: TermsVersion,
    environment: Environment,
    owner: User,
) -> None:
    seen: list[Session] = []

    # the ten lines
    portal = Client(portal_url, token)
    portal.accept_terms()
    session = portal.launch("ecmwf-dss", wait=True, on_progress=seen.append)
    assert session.running and session.url
    assert portal.status().id == session.id  # type: ignore[union-attr]
    portal.stop()  # it may still be stopping now; the next launch waits for it
    again = portal.launch("ecmwf-dss")
    assert again.created and again.id != session.id
    portal.stop(wait=True)
    assert [s.reason for s in portal.history(limit=2)] == ["user_stopped", "user_stopped"]

    # and what it went through is what the portal recorded
    assert session.created
    assert seen and all(s.id == session.id for s in seen)
    assert {s.state for s in seen} <= {"queued", "starting", "running"}
    first = SessionRow.objects.get(pk=session.id)
    assert first.state == SessionRow.State.STOPPED
    assert portal.session(session.id).state == "stopped"


def test_jlp_says_why_a_session_did_not_run_and_exits_4(
    celery_worker: Any,
    settings: Any,
    jlp: Jlp,
    portal_url: str,
    token: str,
    accepted: User,
    environment: Environment,
) -> None:
    # Given an environment whose server never answers, and a spawn timeout of a few seconds
    environment.command = [session_python(), "-c", "import time; time.sleep(600)"]
    environment.save()
    settings.SPAWN_TIMEOUT_SECONDS = 4
    jlp.env.update(JLP_URL=portal_url, JLP_TOKEN=token)

    # When the user waits for less than that
    ran = jlp("launch", "--wait", "--timeout", "1")
    # then jlp gives up, saying so
    assert ran.code == 4
    assert ran.err.splitlines()[-1].startswith("jlp: the session is still ")

    # When they wait again, for as long as it takes
    ran = jlp("launch", "--wait")
    # then jlp follows the same session, and ends with the portal's reason
    row = SessionRow.objects.get(user=accepted)
    assert row.state == SessionRow.State.FAILED
    assert ran.code == 4
    assert ran.err.splitlines()[0].startswith("You already have a session: ecmwf-dss, ")
    assert ran.err.splitlines()[-1] == f"jlp: the session failed: {row.message}"
    assert ran.out.splitlines()[0] == f"Session {row.pk} (ecmwf-dss): failed"
