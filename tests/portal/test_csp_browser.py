"""The Content-Security-Policy in a real browser: the portal's pages, the authenticator's QR
code, the session page's script and the admin (its widgets' scripts and styles) work under it,
with no violation reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import BrowserContext, Page, expect

from sessions_app.models import Environment, Session
from tests.browser import chromium
from tests.conftest import login_verified
from tests.portal.asgi_world import asgi_web

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Every violation the page reports, kept where the test can read it.
WATCH_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sourceFile}`);
});
"""


def _signed_in(context: BrowserContext, user: User, base: str, *, verified: bool = True) -> None:
    client = Client()
    if verified:
        login_verified(client, user)
    else:
        client.force_login(user)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base}]
    )


def _visit(page: Page, url: str) -> list[str]:
    response = page.goto(url)
    assert response is not None and response.status == 200, url
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_load_state("networkidle")
    violations: list[str] = page.evaluate("window.cspViolations")
    return violations


def test_pages_and_the_admin_work_under_the_policy(
    accepted: User, staff: User, environment: Environment, tmp_path: Path, monkeypatch: Any
) -> None:
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are plain.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    Session.objects.create(
        user=accepted, environment=environment, state="queued", created_at=timezone.now()
    )
    newcomer = User.objects.create_user("newcomer", password="x" * 12)
    with asgi_web(tmp_path, workers=1) as (host, port), chromium() as browser:
        base = f"http://{host}:{port}"
        found: dict[str, list[str]] = {}

        # A newcomer's authenticator set-up: the QR code is inline SVG
        context = browser.new_context()
        context.add_init_script(WATCH_VIOLATIONS)
        _signed_in(context, newcomer, base, verified=False)
        page = context.new_page()
        found["setup"] = _visit(page, f"{base}/account/second-factor/setup/")
        expect(page.locator(".qr-code svg")).to_be_visible()
        context.close()

        # A user's pages, the session page's script included (it shows the queue position)
        context = browser.new_context()
        context.add_init_script(WATCH_VIOLATIONS)
        _signed_in(context, accepted, base)
        page = context.new_page()
        for path in ("/", "/session/", "/usage/", "/account/", "/terms/"):
            found[path] = _visit(page, f"{base}{path}")
        context.close()

        # Staff in the admin: lists, a form with the date pickers, the portal's own pages
        context = browser.new_context()
        context.add_init_script(WATCH_VIOLATIONS)
        _signed_in(context, staff, base)
        page = context.new_page()
        for path in (
            reverse("admin:index"),
            reverse("admin:sessions_app_session_changelist"),
            reverse("admin:sessions_app_session_queue"),
            reverse("admin:sessions_app_session_usage"),
            reverse("admin:auth_user_change", args=[accepted.pk]),
        ):
            found[path] = _visit(page, f"{base}{path}")
        # The date picker's links are built by the admin's script.
        expect(page.get_by_role("link", name="Choose a Date").first).to_be_visible()
        context.close()

        # No page reported a violation
        assert {path: seen for path, seen in found.items() if seen} == {}

        anonymous = browser.new_context()
        anonymous.add_init_script(WATCH_VIOLATIONS)
        page = anonymous.new_page()
        assert _visit(page, f"{base}/login/") == []
