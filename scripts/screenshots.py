"""The README's screenshots, taken from a real portal so that they stay true (`make screenshots`).

Starts the portal as `make run` does (``runportal`` on a temporary var/: its own database,
broker, workers and router, and a real JupyterLab), signs a person in (with the second factor
set up as the pages ask), launches a session, and saves what they see, at 1280 px wide, into
docs/screenshots/:

- ``launcher.png``: the launcher, with the environments and the terms of use;
- ``session.png``: the session page once JupyterLab runs (time left, Open JupyterLab, Stop);
- ``usage.png``: the staff usage page of the admin (/admin/sessions_app/session/usage/).

Then it stops the session and the portal; nothing is left running. About two minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, ViewportSize, expect  # noqa: E402

from tests.browser import chromium, enrol_authenticator  # noqa: E402
from tests.portal.embedded import EmbeddedPortal  # noqa: E402

WIDTH, HEIGHT = 1280, 800
SPAWN_TIMEOUT = 180_000  # ms: JupyterLab's start on a busy machine
STOP_TIMEOUT = 60_000
PERSON, PASSWORD = "ada", "a long pass phrase for ada"
LOGIN = re.compile(r"Sign in as '(?P<user>[^']+)' with password '(?P<password>[^']+)'")

# The person, admitted as an operator does it in the admin (the group of ACCESS_GROUP);
# servers left by an interrupted run stopped as the reconcile sweep would.
_ADMIT = f"""
from django.conf import settings
from django.contrib.auth import get_user_model
from accounts_app.access_grants import portal_access_grant
admin = get_user_model().objects.get(username="admin")
person = get_user_model().objects.create_user("{PERSON}", "{PERSON}@example.org", "{PASSWORD}")
person.first_name, person.last_name = "Ada", "Lovelace"
person.save()
portal_access_grant(users=[person], editor=admin)
"""
_STOP_SERVERS = """
from sessions_app.spawners import get_spawner
spawner = get_spawner()
for server in spawner.list_servers():
    spawner.stop(server.state)
"""


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _sign_in(page: Page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.locator("form:has(#id_password) button[type=submit]").click()
    enrol_authenticator(page)


def _shoot(page: Page, path: Path) -> None:
    # Nothing blinking or half-way in the picture: no caret, animations at their end.
    page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
    _say(f"  {path}")


def take(portal: EmbeddedPortal, out: Path) -> None:
    """Sign in, launch and photograph: the launcher, the session page, the usage page."""
    login = LOGIN.search(portal.terminal())
    assert login, portal.terminal()
    portal.manage("shell", "-c", _ADMIT)
    with chromium() as browser:
        viewport: ViewportSize = {"width": WIDTH, "height": HEIGHT}
        person = browser.new_context(viewport=viewport).new_page()
        _sign_in(person, portal.base, PERSON, PASSWORD)
        expect(person.get_by_text("Select an Environment")).to_be_visible()
        _shoot(person, out / "launcher.png")

        person.locator("#accept_terms").check()
        person.locator("#launch-button").click()
        # Running: the page links to JupyterLab on the portal's address.
        link = person.locator(f"a[href^='{portal.base}/user/{PERSON}/lab']")
        ended = person.locator("#session-ended")
        waited = 0
        while not link.is_visible():
            assert not ended.is_visible() and waited < SPAWN_TIMEOUT, person.inner_text("body")
            person.wait_for_timeout(500)
            waited += 500
        _shoot(person, out / "session.png")

        staff = browser.new_context(viewport=viewport).new_page()
        _sign_in(staff, portal.base, login["user"], login["password"])
        staff.goto(f"{portal.base}/admin/sessions_app/session/usage/")
        expect(staff.locator("#content")).to_be_visible()
        _shoot(staff, out / "usage.png")

        person.locator("#stop-button").click()
        expect(ended).to_be_visible(timeout=STOP_TIMEOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    out = parser.parse_args().out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    _say("Starting a portal of its own (runportal on a temporary var/)...")
    with tempfile.TemporaryDirectory(prefix="jlp-shots-") as tmp:
        portal = EmbeddedPortal(Path(tmp) / "var")
        portal.start()
        try:
            take(portal, out)
        finally:
            portal.stop()
            with contextlib.suppress(AssertionError):
                portal.manage("shell", "-c", _STOP_SERVERS)
    _say("Done.")


if __name__ == "__main__":
    main()
