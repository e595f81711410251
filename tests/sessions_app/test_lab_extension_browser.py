"""JupyterLab knows its time: the portal's Lab extension in a real browser (Playwright, Chromium)
through the real router (nginx) to a real JupyterLab of the session software.

The extension (images/session/labextension) shows the time left in Lab's status bar, warns
SESSION_WARNING_MINUTES before the end, saves open notebooks in the last minute, offers
"Stop session", and says "Your session ended: <why>" instead of a connection error. The
session's end is the portal's own: the expiry service and the stop task run as the worker
runs them (called here, in the test's process, since no worker consumes this test's queue),
then the server goes down as the spawner takes it down.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from sessions_app.models import Environment, Session
from sessions_app.services import session_expire, session_finish_stop
from tests.browser import chromium
from tests.portal.router_world import jupyterlab, running_session, socket_folder
from tests.portal.test_router_browser import LAB_TIMEOUT, _sign_in
from tests.sessions_app.local_world import session_python

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

STATUS = "#jp-PortalSession-status"


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    """Playwright's sync API runs an event loop in the test's thread, and Django refuses the
    ORM there; these tests read and end the session while the browser is open (one thread,
    nothing concurrent)."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


ENDED = ".jp-Dialog.jp-PortalSession-ended"
LAST_CELL = "last_cell = 'typed in the last minute'"


@contextmanager
def lab_for(
    router_folder: Path, router_url: str, owner: User, environment: Environment, seconds: float
) -> Iterator[tuple[Session, Path, Path]]:
    """A running session of ``owner`` with ``seconds`` left, its JupyterLab and its home."""
    session_id = uuid.uuid4()
    home = router_folder / f"home-{session_id.hex[:8]}"
    home.mkdir()
    portal = {"JUPYTER_PORTAL_URL": router_url, "JUPYTER_PORTAL_SESSION_ID": str(session_id)}
    folder = socket_folder(router_folder, session_id.hex)
    with jupyterlab(folder, "/user/owner/", home, portal) as (socket_path, token):
        session = running_session(owner, environment, socket_path, token, session_id, seconds)
        yield session, home, socket_path


def open_lab(page: Page, router_url: str, owner: User, console: list[str]) -> None:
    page.on("console", lambda message: console.append(message.text))
    page.on("dialog", lambda dialog: dialog.accept())  # Lab's "leave the page?" at the end
    _sign_in(page, router_url, owner.get_username())
    page.goto(f"{router_url}/user/owner/lab")
    page.wait_for_selector("#jp-main-dock-panel", timeout=LAB_TIMEOUT)
    page.locator(STATUS).wait_for(timeout=LAB_TIMEOUT)
    expect(page.locator(STATUS)).to_have_attribute("data-state", "running", timeout=30_000)


def remaining(page: Page) -> int:
    return int(page.locator(STATUS).get_attribute("data-remaining-seconds") or "-1")


def portal_remaining(session: Session) -> float:
    session.refresh_from_db()
    assert session.expires_at is not None
    return (session.expires_at - timezone.now()).total_seconds()


def end_as_the_worker_does(session: Session, socket_path: Path) -> None:
    """The stop task's work, then the server is gone (the spawner's stop kills the session's
    processes: here, the JupyterLab on the socket, which the test started itself)."""
    session_finish_stop(str(session.pk))
    for proc in psutil.process_iter(["cmdline"]):
        if any(f"--ServerApp.sock={socket_path}" == arg for arg in proc.info["cmdline"] or []):
            proc.terminate()


def test_the_status_bar_counts_down_warns_saves_and_says_the_time_limit_ended_it(
    router_url: str,
    router_folder: Path,
    owner: User,
    environment: Environment,
) -> None:
    console: list[str] = []
    with (
        lab_for(router_folder, router_url, owner, environment, 100) as (session, home, sock),
        chromium() as browser,
    ):
        page = browser.new_context().new_page()
        open_lab(page, router_url, owner, console)

        # The countdown is the portal's (to the clock: both count the same deadline).
        assert abs(remaining(page) - portal_remaining(session)) <= 3
        expect(page.locator(STATUS)).to_contain_text("left")
        # The warning (SESSION_WARNING_MINUTES = 15: 100 s left is well inside it),
        expect(page.locator(".Toastify__toast", has_text="Your session ends in")).to_be_visible()
        # and no question about fetching Jupyter's news.
        expect(page.get_by_text("official Jupyter news")).to_have_count(0)

        # A notebook whose last cell is typed in the last minute, never saved by hand:
        page.locator(".jp-LauncherCard[data-category='Notebook']").first.click()
        cell = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        cell.wait_for(timeout=LAB_TIMEOUT)
        while remaining(page) > 40:
            page.wait_for_timeout(500)
        cell.click()
        page.keyboard.type(LAST_CELL)

        # the extension saves it before the deadline;
        while portal_remaining(session) > 0:
            page.wait_for_timeout(500)
        # at the deadline the portal ends the session (the expiry task, then the stop task),
        session_expire(str(session.pk))
        end_as_the_worker_does(session, sock)

        # and Lab says so, with the reason, instead of "Server Connection Error".
        ended = page.locator(ENDED)
        expect(ended).to_be_visible(timeout=30_000)
        expect(ended.locator(".jp-PortalSession-endedReason")).to_have_text(
            "Your session ended: time limit reached"
        )
        expect(page.get_by_text("Server Connection Error")).to_have_count(0)

    session.refresh_from_db()
    assert session.state == Session.State.EXPIRED
    saved = [json.loads(path.read_text()) for path in home.glob("*.ipynb")]
    sources = ["".join(cell["source"]) for nb in saved for cell in nb["cells"]]
    assert LAST_CELL in sources, (sources, console[-20:])
    assert any("saving all documents (15 s left)" in line for line in console), console[-20:]


def test_stop_from_lab_ends_the_session_and_lab_says_the_user_stopped_it(
    router_url: str,
    router_folder: Path,
    owner: User,
    environment: Environment,
) -> None:
    console: list[str] = []
    with (
        lab_for(router_folder, router_url, owner, environment, seconds=3600) as (session, _h, sock),
        chromium() as browser,
    ):
        page = browser.new_context().new_page()
        open_lab(page, router_url, owner, console)
        expect(page.locator(STATUS)).to_contain_text("min left")
        assert abs(remaining(page) - portal_remaining(session)) <= 3
        # An hour left: no warning yet.
        expect(page.locator(".Toastify__toast", has_text="Your session ends in")).to_have_count(0)

        page.locator(STATUS).click()
        page.locator(".jp-Dialog .jp-Dialog-button", has_text="Stop session").click()
        confirm = page.locator(".jp-Dialog", has_text="Stop your session?")
        confirm.locator(".jp-Dialog-button", has_text="Stop session").click()

        # The portal took the stop (the user's own, with the page's CSRF token),
        for _ in range(100):
            session.refresh_from_db()
            if session.state == Session.State.STOPPING:
                break
            page.wait_for_timeout(200)
        assert session.state == Session.State.STOPPING
        assert session.reason == Session.Reason.USER_STOPPED
        end_as_the_worker_does(session, sock)

        ended = page.locator(ENDED)
        expect(ended).to_be_visible(timeout=30_000)
        expect(ended.locator(".jp-PortalSession-endedReason")).to_have_text(
            "Your session ended: stopped by the user"
        )
        ended.locator(".jp-Dialog-button", has_text="Back to the portal").click()
        page.wait_for_url(f"{router_url}/session/", timeout=30_000)

    session.refresh_from_db()
    assert session.state == Session.State.STOPPED


def test_the_browser_test_runs_the_session_software() -> None:
    """These tests mean something only with the extension installed: the software's Lab."""
    prefix = Path(session_python()).parents[1]

    extension = prefix / "share/jupyter/labextensions/@jupyter-portal/session-status/package.json"
    assert extension.is_file(), "build the session software: make session-env"
