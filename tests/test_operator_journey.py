"""The operator's first five minutes (issue 15), in a real browser, using only what `make run`
prints and what the pages say: start the portal as `make run` does, sign in to the admin with
the login it printed, add a colleague with a password, grant them portal access with the user
list's action; then the colleague, in a browser of their own, signs in, sets up their second
factor as the pages ask, accepts the terms and launches until JupyterLab's address is given.

Everything is real: ``runportal`` on a temporary var/ (SQLite, its own broker, workers, beat,
the router), headless Chromium under Playwright, and a JupyterLab that the local spawner starts.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import chromium, enrol_authenticator
from tests.portal.embedded import EmbeddedPortal

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# Milliseconds. Starting JupyterLab takes seconds (more on a busy machine).
SPAWN_TIMEOUT = 180_000
STOP_TIMEOUT = 60_000

COLLEAGUE = "colleague"
COLLEAGUE_PASSWORD = "a long pass phrase for the colleague"

# What the banner says (portal/management/commands/runportal.py): "Sign in as 'admin' with
# password '...'", and where the admin is.
LOGIN = re.compile(r"Sign in as '(?P<user>[^']+)' with password '(?P<password>[^']+)'")
ADMIN = re.compile(r"open the admin \((?P<url>http://[^)\s]+/admin/)\)")

# Servers left by a failed run: stopped through the spawner, as the reconcile sweep would.
_STOP_SERVERS = """
from sessions_app.spawners import get_spawner
spawner = get_spawner()
for server in spawner.list_servers():
    spawner.stop(server.state)
"""


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[EmbeddedPortal]:
    """The portal as the README's `make run` starts it (runportal), on a var/ of its own."""
    with EmbeddedPortal(tmp_path / "var") as running:
        try:
            yield running
        finally:
            running.stop()
            with contextlib.suppress(AssertionError):
                running.manage("shell", "-c", _STOP_SERVERS)


def _sign_in(page: Page, base: str, username: str, password: str) -> None:
    """From the portal's address: the sign-in page, then the second factor's set-up."""
    page.goto(f"{base}/")
    expect(page).to_have_url(re.compile(r"/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.locator("form:has(#id_password) button[type=submit]").click()
    enrol_authenticator(page)


def test_an_operator_admits_a_colleague_who_then_launches_a_session(
    portal: EmbeddedPortal,
) -> None:
    # Given the portal just started, and what it printed
    banner = portal.terminal()
    login = LOGIN.search(banner)
    admin = ADMIN.search(banner)
    assert login and admin, banner
    assert '"Grant portal access"' in banner

    with chromium() as browser:
        # When the operator signs in with the printed login and opens the admin
        operator = browser.new_context().new_page()
        _sign_in(operator, portal.base, login["user"], login["password"])
        operator.goto(admin["url"])

        # adds a user with a password (Users → Add user), as the banner says
        operator.get_by_role("link", name="Users", exact=True).first.click()
        operator.get_by_role("link", name=re.compile(r"^Add user")).click()
        expect(operator.get_by_text("sets up their second factor")).to_be_visible()
        operator.get_by_label("Username").fill(COLLEAGUE)
        operator.get_by_label(re.compile(r"^Password:?$")).fill(COLLEAGUE_PASSWORD)
        operator.get_by_label(re.compile(r"^Password confirmation:?$")).fill(COLLEAGUE_PASSWORD)
        operator.get_by_role("button", name="Save", exact=True).click()
        expect(operator.locator(".messagelist")).to_contain_text("was added successfully")

        # and, in the list of users, ticks them and runs "Grant portal access"
        operator.get_by_role("link", name="Users", exact=True).first.click()
        row = operator.locator("#result_list tr").filter(
            has=operator.get_by_role("link", name=COLLEAGUE, exact=True)
        )
        expect(row.locator(".field-portal_access img")).to_have_attribute("alt", "False")
        row.locator("input.action-select").check()
        operator.locator("select[name=action]").select_option(label="Grant portal access")
        operator.get_by_role("button", name="Go").click()
        expect(operator.locator(".messagelist")).to_contain_text(
            f"Portal access granted to {COLLEAGUE}"
        )
        expect(row.locator(".field-portal_access img")).to_have_attribute("alt", "True")

        # Then the colleague, in a browser of their own, signs in and sets up a second factor
        context = browser.new_context()
        person = context.new_page()
        _sign_in(person, portal.base, COLLEAGUE, COLLEAGUE_PASSWORD)
        expect(person.get_by_text("Select an Environment")).to_be_visible()

        # accepts the terms and launches
        person.locator("#accept_terms").check()
        person.locator("#launch-button").click()

        # and is given their JupyterLab's address on the portal (the link, or the Lab itself
        # when the page opens it in the same tab)
        lab = f"{portal.base}/user/{COLLEAGUE}/lab"
        link = person.locator(f"a[href^='{lab}']")
        ended = person.locator("#session-ended")
        deadline = SPAWN_TIMEOUT
        while not person.url.startswith(lab) and not link.is_visible():
            assert not ended.is_visible(), person.locator("body").inner_text()
            assert deadline > 0, person.locator("body").inner_text()
            person.wait_for_timeout(500)
            deadline -= 500
        # which answers them (and only them: the operator's browser is not the owner)
        assert context.request.get(lab).ok
        assert operator.request.get(lab, max_redirects=0).status in (302, 401, 403)

        # Finally the colleague stops the session, leaving nothing running.
        person.goto(f"{portal.base}/session/")
        person.locator("#stop-button").click()
        expect(ended).to_be_visible(timeout=STOP_TIMEOUT)
