"""The session page in a real browser, on the real ASGI server: it follows the session's event
stream in place (no polling, no reload), goes straight into JupyterLab in the same tab when the
person ticked "Open when ready" (a choice the browser remembers), shows a suspension within
2 s, and stops its countdown the moment the session stops."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from playwright.sync_api import BrowserContext, expect

from sessions_app import events
from sessions_app.models import Environment, Session
from sessions_app.services import session_request_stop
from suspension_app.services import suspension_impose
from tests.browser import chromium
from tests.conftest import login_verified
from tests.portal.asgi_world import asgi_web

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _signed_in(context: BrowserContext, user: User, base: str) -> None:
    client = Client()
    login_verified(client, user)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base}]
    )


def _start(session: Session, url: str) -> None:
    """What the worker does when the server answers: the row, and the word to the waiters."""
    now = timezone.now()
    with transaction.atomic():
        Session.objects.filter(pk=session.pk).update(
            state="running", started_at=now, expires_at=now + timedelta(hours=1), url=url
        )
        events.session_changed(session.pk)


def _queued(user: User, environment: Environment) -> Session:
    return Session.objects.create(
        user=user, environment=environment, state="queued", created_at=timezone.now()
    )


def test_the_page_goes_straight_into_jupyterlab_when_asked_and_remembers(
    accepted: User, environment: Environment, tmp_path: Path, monkeypatch: Any
) -> None:
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are plain.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    session = _queued(accepted, environment)
    with asgi_web(tmp_path, workers=1) as (host, port), chromium() as browser:
        base = f"http://{host}:{port}"
        context = browser.new_context()
        _signed_in(context, accepted, base)
        page = context.new_page()
        polls: list[str] = []
        page.on("request", lambda r: polls.append(r.url) if "/session/status/" in r.url else None)

        # A launched session's page (it fits: "starting", no queue), with the box ticked
        page.goto(f"{base}/session/")
        expect(page.locator("#session-state")).to_have_text("starting")
        expect(page.locator("#queue-info")).to_be_hidden()
        box = page.locator("#open-when-ready")
        expect(box).not_to_be_checked()
        box.check()

        # When the server answers (the portal's own /healthz stands in for JupyterLab)
        page.wait_for_timeout(500)  # the stream is open
        _start(session, f"{base}/healthz?lab")

        # then the same tab is in "JupyterLab", told by the stream, not by polling
        page.wait_for_url(f"{base}/healthz?lab", timeout=5_000)
        assert polls == []

        # The choice is remembered for the next launch
        Session.objects.filter(pk=session.pk).update(state="stopped", ended_at=timezone.now())
        second = _queued(accepted, environment)
        page.goto(f"{base}/session/")
        expect(page.locator("#open-when-ready")).to_be_checked()

        # and without it, the page shows the running session and its link instead, in place
        page.locator("#open-when-ready").uncheck()
        page.wait_for_timeout(500)  # the stream is open
        loads: list[str] = []
        page.on("load", lambda p: loads.append(p.url))
        _start(second, f"{base}/healthz?lab")
        expect(page.locator("#open-jupyterlab")).to_be_visible(timeout=5_000)
        expect(page.locator("#session-state")).to_have_text("running")
        expect(page.locator("#countdown")).to_have_text(re.compile(r"^00:59:\d\d$"))
        assert page.url == f"{base}/session/"
        assert loads == [] and polls == []
        context.close()
        # The ORM calls above ran in Playwright's context, on a connection of their own.
        connection.close()


def _running(user: User, environment: Environment) -> Session:
    now = timezone.now()
    return Session.objects.create(
        user=user,
        environment=environment,
        state="running",
        created_at=now,
        admitted_at=now,
        started_at=now,
        expires_at=now + timedelta(hours=1),
        url="http://127.0.0.1:9/user/owner/lab",
        spawner_state={},
    )


REASON = "Repeated attempts to keep files out of the scratch cleanup."


def test_a_suspension_shows_on_the_open_page_within_two_seconds(
    accepted: User, staff: User, environment: Environment, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    _running(accepted, environment)
    with asgi_web(tmp_path, workers=1) as (host, port), chromium() as browser:
        base = f"http://{host}:{port}"
        context = browser.new_context()
        _signed_in(context, accepted, base)
        page = context.new_page()
        page.goto(f"{base}/session/")
        countdown = page.locator("#countdown")
        expect(countdown).to_be_visible()
        page.wait_for_timeout(500)  # the stream is open

        # When staff suspend the user (the session is asked to stop on commit)
        suspension_impose(user=accepted, reason=REASON, imposed_by=staff)

        # then the open page says so within 2 s (the bound), without a reload
        refused = page.locator("#session-refused")
        expect(refused).to_be_visible(timeout=2_000)
        expect(refused).to_contain_text("Your access is suspended")
        expect(refused).to_contain_text(REASON)
        assert page.url == f"{base}/session/"
        # and nothing of the running session is left: no link, no countdown, no stop button
        for part in ("#open-jupyterlab", "#countdown", "#stop-button"):
            expect(page.locator(part)).to_be_hidden()
        # Its link leads to the page that says how to appeal.
        page.click("#session-refused-link")
        expect(page.get_by_text("How to appeal")).to_be_visible()
        context.close()
        connection.close()


def test_a_stopped_session_stops_its_countdown_at_once(
    accepted: User, environment: Environment, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    session = _running(accepted, environment)
    with asgi_web(tmp_path, workers=1) as (host, port), chromium() as browser:
        base = f"http://{host}:{port}"
        context = browser.new_context()
        _signed_in(context, accepted, base)
        page = context.new_page()
        page.goto(f"{base}/session/")
        countdown = page.locator("#countdown")
        first = countdown.inner_text()
        expect(countdown).not_to_have_text(first, timeout=3_000)  # it ticks
        page.wait_for_timeout(300)

        # When the session is stopped elsewhere (the API, JupyterLab's button, staff)
        assert session_request_stop(str(session.pk), Session.Reason.USER_STOPPED)

        # then the page shows it stopping at once, and the countdown is gone and still
        expect(page.locator("#session-state")).to_have_text("stopping", timeout=2_000)
        expect(countdown).to_be_hidden()
        frozen = countdown.text_content()
        page.wait_for_timeout(1_500)
        assert countdown.text_content() == frozen

        # and once it has ended, how it ended, in place
        with transaction.atomic():
            Session.objects.filter(pk=session.pk).update(
                state="stopped", ended_at=timezone.now(), url=""
            )
            events.session_changed(session.pk)
        ended = page.locator("#session-ended")
        expect(ended).to_be_visible(timeout=2_000)
        expect(ended).to_contain_text("This session has ended: stopped (stopped by the user)")
        assert page.url == f"{base}/session/"
        context.close()
        connection.close()
