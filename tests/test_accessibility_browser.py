"""Every page in Chromium at a desktop's 1280 px and a phone's 390 px: axe-core finds no serious
or critical violation, and the page is no wider than the screen (issue 15: pages were 429–495 px
wide on a 390 px phone, and axe-core found unfocusable scroll boxes, low contrast, empty table
headers, links told apart by colour alone and no skip link).

The portal runs under its real ASGI server (the session page's event stream needs its event
loop). Each person's browser carries a session made on the server beforehand (signed in, second
factor passed or not), as the rows behind each page are: Playwright's sync API keeps an event
loop in this thread, where the ORM refuses to run. axe-core comes bundled with
``axe-playwright-python``; nothing is fetched from a network.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Page, ViewportSize

from portal.tokens import token_issue
from sessions_app.models import Environment, Session
from suspension_app.services import suspension_impose
from terms_app.models import TermsVersion
from tests.browser import chromium
from tests.conftest import PASSWORD, login_verified
from tests.portal.asgi_world import asgi_web

pytestmark = [pytest.mark.browser, pytest.mark.integration]

VIEWPORTS: dict[str, ViewportSize] = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}
#: The impacts that fail the test; "moderate" and "minor" are reported by axe but let through.
FAILING_IMPACTS = {"serious", "critical"}
ANONYMOUS = ""


@dataclass(frozen=True)
class Visit:
    """One page as one person sees it: ``who`` names a browser session (ANONYMOUS: none)."""

    name: str
    who: str
    path: str


def _person(username: str, *, admitted: bool = True, **extra: Any) -> User:
    user = get_user_model().objects.create_user(
        username=username, email=f"{username}@example.org", password=PASSWORD, **extra
    )
    if admitted:
        user.groups.add(Group.objects.get_or_create(name=settings.ACCESS_GROUP)[0])
    return user


def _cookie(user: User, *, verified: bool = True) -> str:
    """A signed-in browser session for ``user``: past the second factor, or waiting at it."""
    client = Client()
    if verified:
        login_verified(client, user)
    else:
        client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _session(user: User, environment: Environment, state: str, **fields: Any) -> Session:
    now = timezone.now()
    return Session.objects.create(
        user=user, environment=environment, state=state, created_at=now, **fields
    )


@pytest.fixture
def visits(
    transactional_db: None, environment: Environment, terms: TermsVersion, staff: User
) -> tuple[list[Visit], dict[str, str]]:
    """Everyone the pages are for, with the rows behind what each sees; the visits and each
    person's session cookie."""
    now = timezone.now()
    cookies: dict[str, str] = {}

    # A user with a bit of everything: an API token, a session that ran yesterday (the usage
    # chart, table and history) and the terms still to accept (the launcher's terms box).
    owner = _person("owner")
    token_issue(user=owner, name="laptop")
    _session(
        owner,
        environment,
        Session.State.STOPPED,
        started_at=now - timedelta(days=1, hours=2),
        ended_at=now - timedelta(days=1),
        reason=Session.Reason.USER_STOPPED,
    )
    cookies["owner"] = _cookie(owner)

    # A session in each state a user can see on the session page.
    started = {"started_at": now - timedelta(minutes=5)}
    states: dict[str, dict[str, Any]] = {
        "queued": {"state": Session.State.QUEUED},
        "starting": {"state": Session.State.STARTING, "message": "Starting the server"},
        "running": {
            "state": Session.State.RUNNING,
            "expires_at": now + timedelta(hours=1),
            "url": "/user/running/lab",
            **started,
        },
        "running-last-minutes": {
            "state": Session.State.RUNNING,
            "expires_at": now + timedelta(minutes=3),
            "url": "/user/running-last-minutes/lab",
            **started,
        },
        "stopping": {"state": Session.State.STOPPING, **started},
        "failed": {
            "state": Session.State.FAILED,
            "reason": Session.Reason.BACKEND_ERROR,
            "message": "The server did not answer within 120 seconds.",
            "log_tail": "[I 12:00:00 ServerApp] starting\n[E 12:02:00 ServerApp] gave up",
            "ended_at": now,
            **started,
        },
    }
    rows = {}
    for name, fields in states.items():
        user = _person(name)
        rows[name] = _session(user, environment, **fields)
        cookies[name] = _cookie(user)

    cookies["staff"] = _cookie(staff)

    suspended = _person("suspended")
    suspension_impose(user=suspended, reason="Crypto mining in a session.", imposed_by=staff)
    cookies["suspended"] = _cookie(suspended)

    # Half signed in: a confirmed authenticator to give a code from, or none set up yet.
    with_app = _person("with-app")
    TOTPDevice.objects.create(user=with_app, name="app", confirmed=True)
    cookies["with-app"] = _cookie(with_app, verified=False)
    cookies["new"] = _cookie(_person("new"), verified=False)

    pages = [
        Visit("sign-in", ANONYMOUS, "/login/"),
        Visit("404 signed out", ANONYMOUS, "/no-such-page/"),
        Visit("second factor", "with-app", "/account/second-factor/"),
        Visit("second factor set-up", "new", "/account/second-factor/setup/"),
        Visit("launcher", "owner", "/"),
        Visit("session page without a session", "owner", "/session/"),
        Visit("storage", "owner", "/storage/"),
        Visit("account and tokens", "owner", "/account/"),
        Visit("terms", "owner", "/terms/"),
        Visit("usage", "owner", "/usage/"),
        Visit("404", "owner", "/no-such-page/"),
        *(Visit(f"session page, {name}", name, "/session/") for name in states),
        Visit("launcher with a running session", "running", "/"),
        Visit("launcher as staff (the header's longest)", "staff", "/"),
        Visit("admin index", "staff", "/admin/"),
        Visit("admin usage", "staff", reverse("admin:sessions_app_session_usage")),
        Visit("admin users", "staff", reverse("admin:auth_user_changelist")),
        Visit("admin sessions", "staff", reverse("admin:sessions_app_session_changelist")),
        Visit("suspended", "suspended", "/"),
    ]
    try:
        history = reverse("session-history")
    except NoReverseMatch:  # the history page is not there yet
        pass
    else:
        detail = reverse("session-history-detail", args=[rows["failed"].pk])
        pages += [
            Visit("history", "owner", history),
            Visit("history", "failed", history),
            Visit("a failed session's history", "failed", detail),
        ]
    return pages, cookies


def _problems(page: Page, axe: Axe, width: int) -> list[str]:
    """What is wrong with the page open in ``page``, one line each."""
    found = []
    results = axe.run(page)
    for violation in results.response["violations"]:
        if violation["impact"] in FAILING_IMPACTS:
            targets = "; ".join(", ".join(node["target"]) for node in violation["nodes"][:5])
            found.append(f"axe {violation['id']} ({violation['impact']}): {targets}")
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    if scroll_width > width:
        wide = page.evaluate(
            """(width) => [...document.querySelectorAll('body *')]
                .filter((element) => element.getBoundingClientRect().right > width + 0.5)
                .slice(0, 8)
                .map((element) => element.tagName.toLowerCase()
                    + (element.id ? '#' + element.id : '')
                    + (element.className && typeof element.className === 'string'
                        ? '.' + element.className.trim().split(/\\s+/).join('.') : ''))""",
            width,
        )
        found.append(f"{scroll_width} px wide on a {width} px screen: {', '.join(wide)}")
    return found


def _header_rows(page: Page) -> int:
    """How many rows the portal's header takes (0 on the admin's pages, which have their own):
    the brand, the links and the user box each sit on one, counted by their middles."""
    middles = sorted(
        page.evaluate(
            """() => [...document.querySelectorAll('.header-row > *, .main-nav > a')]
                .map((element) => element.getBoundingClientRect())
                .map((box) => (box.top + box.bottom) / 2)"""
        )
    )
    # A new row starts where a middle is lower than the one before by more than half a line.
    gaps = [below - above for above, below in itertools.pairwise(middles)]
    return (1 if middles else 0) + sum(1 for gap in gaps if gap > 12)


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=list(VIEWPORTS))
def test_every_page_passes_axe_and_fits_the_screen(
    visits: tuple[list[Visit], dict[str, str]], viewport: str, tmp_path: Path
) -> None:
    pages, cookies = visits
    size = VIEWPORTS[viewport]
    axe = Axe()
    failures: dict[str, list[str]] = {}
    # The web as it runs in production (ASGI): the session page's event stream needs its loop.
    with asgi_web(tmp_path, workers=1) as (host, port), chromium() as browser:
        base_url = f"http://{host}:{port}"
        for who in [ANONYMOUS, *cookies]:
            context = browser.new_context(viewport=size)
            if who:
                context.add_cookies(
                    [
                        {
                            "name": settings.SESSION_COOKIE_NAME,
                            "value": cookies[who],
                            "url": base_url,
                        }
                    ]
                )
            page = context.new_page()
            for visit in (visit for visit in pages if visit.who == who):
                page.goto(f"{base_url}{visit.path}", wait_until="load")
                problems = _problems(page, axe, size["width"])
                if viewport == "desktop" and _header_rows(page) > 1:
                    problems.append("the header wraps onto a second row")
                if problems:
                    failures[f"{visit.name} ({visit.path} as {who or 'nobody'})"] = problems
            context.close()

    assert not failures, "\n".join(
        f"{name}:\n  " + "\n  ".join(problems) for name, problems in failures.items()
    )


def test_the_skip_link_is_the_first_stop_and_leads_to_the_content(live_server: Any) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORTS["phone"])
        # (Not the sign-in page: its username field takes the focus as it opens.)
        page.goto(f"{live_server.url}/no-such-page/")

        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
        assert focused == "Skip to content"
        assert page.locator(".skip-link").is_visible()
        page.keyboard.press("Enter")

        assert page.evaluate("document.activeElement.id") == "main"


def test_axe_fails_a_page_with_serious_violations(live_server: Any) -> None:
    """The harness itself: a page with an unlabelled field and an image without a text is
    reported, so a clean run above means something."""
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORTS["phone"])
        page.goto(f"{live_server.url}/login/")
        page.evaluate(
            """() => {
                const main = document.getElementById('main');
                main.insertAdjacentHTML('beforeend',
                    '<input type="text"><img src="data:,"><pre>' + 'x'.repeat(200) + '</pre>');
            }"""
        )

        problems = _problems(page, Axe(), VIEWPORTS["phone"]["width"])

    assert any(problem.startswith("axe label (critical)") for problem in problems), problems
    assert any(problem.startswith("axe image-alt (critical)") for problem in problems), problems
    assert any("px wide on a 390 px screen" in problem for problem in problems), problems
