"""The session page in a real browser, on the real ASGI server: it follows the session's event
stream (no polling while the stream is open), and goes straight into JupyterLab in the same tab
when the person ticked "Go straight to JupyterLab", a choice the browser remembers."""

from __future__ import annotations

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

        # A queued session's page, with the box ticked
        page.goto(f"{base}/session/")
        expect(page.locator("#session-state")).to_have_text("queued")
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

        # and without it, the page shows the running session and its link instead
        page.locator("#open-when-ready").uncheck()
        _start(second, f"{base}/healthz?lab")
        expect(page.locator("#open-jupyterlab")).to_be_visible(timeout=5_000)
        assert page.url == f"{base}/session/"
        context.close()
        # The ORM calls above ran in Playwright's context, on a connection of their own.
        connection.close()
