"""End to end in a real browser: log in, accept the terms, launch, use JupyterLab, stop.

Everything is real: headless Chromium driven by Playwright, the portal on pytest-django's live
server behind the router (nginx, as ``make run`` has it), a Celery worker on the configured
broker, and a JupyterLab that the local spawner starts (as root: under the user's own OS
account, in its sandbox), reached at ``<portal>/user/<name>/lab`` through the router.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from sessions_app.models import Environment, Session
from sessions_app.spawners import get_spawner
from terms_app.models import TermsAcceptance, TermsVersion
from tests.browser import chromium, enrol_authenticator
from tests.conftest import PASSWORD
from tests.sessions_app.lifecycle import server_answers

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# Milliseconds. Starting JupyterLab takes seconds; its UI loads a few megabytes of scripts.
SPAWN_TIMEOUT = 120_000
LAB_TIMEOUT = 90_000
STOP_TIMEOUT = 60_000


def _log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    enrol_authenticator(page)
    expect(page.get_by_text("Select an Environment")).to_be_visible()


def test_user_launches_uses_and_stops_a_jupyterlab_in_the_browser(
    celery_worker: Any,
    router_url: str,
    settings: Any,
    owner: User,
    environment: Environment,
    terms: TermsVersion,
) -> None:
    # The portal's one address is the router's: session URLs are on it.
    base_url = router_url
    settings.PORTAL_PUBLIC_URL = router_url
    get_spawner.cache_clear()
    # The rows are checked after the browser closes (no ORM while Playwright runs).
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()

        # Given a user who logs in and reads the terms on the launcher,
        _log_in(page, base_url, owner.get_username())
        expect(page.locator("#terms")).to_contain_text(terms.title)

        # when they pick the default environment, agree and launch,
        page.select_option("#environment", label="ECMWF Data Store Service")
        page.check("#accept_terms")
        page.click("#launch-button")

        # then the session page follows the session up to a running JupyterLab
        expect(page).to_have_url(f"{base_url}/session/")
        open_lab = page.locator("#open-jupyterlab")
        ended = page.locator("#session-ended")
        # Either comes (the page has both, one hidden): waiting for the link alone would sit
        # out the timeout on a failure.
        either = page.locator("#open-jupyterlab:visible, #session-ended:visible")
        expect(either).to_be_visible(timeout=SPAWN_TIMEOUT)
        assert open_lab.is_visible(), page.locator("#session").inner_text()
        session_id = page.locator("#session").get_attribute("data-session-id")
        assert session_id

        # with the time left counting down, from the environment's five hours.
        countdown = page.locator("#countdown")
        expect(countdown).to_have_text(re.compile(r"^0[45]:\d\d:\d\d$"))
        first = countdown.inner_text()
        expect(countdown).not_to_have_text(first, timeout=5_000)
        expect(page.locator("#time-warning")).to_be_hidden()

        # The link opens the user's JupyterLab in a new page, and its UI comes up.
        with context.expect_page() as new_page:
            open_lab.click()
        lab = new_page.value
        lab.wait_for_selector("#jp-main-dock-panel", timeout=LAB_TIMEOUT)
        expect(lab).to_have_title(re.compile("JupyterLab"))
        lab_url = lab.url
        # on the portal's address, with no token in it
        assert lab_url.startswith(f"{base_url}/user/{owner.get_username()}/lab")
        assert "token" not in lab_url
        lab.close()

        # Going back to the launcher leads into the same session.
        page.goto(f"{base_url}/")
        expect(page).to_have_url(f"{base_url}/session/")
        expect(page.locator("#session")).to_have_attribute("data-session-id", session_id)

        # Stop ends it, and the page shows how it ended without a manual reload.
        page.click("#stop-button")
        expect(ended).to_be_visible(timeout=STOP_TIMEOUT)
        expect(ended).to_contain_text("stopped by the user")
        expect(page.locator("#open-jupyterlab")).to_be_hidden()

    session = Session.objects.get(pk=session_id)
    assert session.state == Session.State.STOPPED
    assert session.reason == Session.Reason.USER_STOPPED
    acceptance = TermsAcceptance.objects.get(user=owner, version=terms)
    assert "Chrome" in acceptance.user_agent
    # The server is gone, and the router lets nobody through to it any more.
    assert not server_answers(session.spawner_state)
    assert requests.get(lab_url, timeout=5, allow_redirects=False).status_code in (302, 401, 403)
