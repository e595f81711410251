"""Signing in through the real test OpenID Connect provider, in headless Chromium: first
sign-in with enrolment, a later one with a real TOTP code, the provider's multi-factor
shortcut, a refused non-staff person, and sign-out at both ends."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from accounts_app.models import OidcIdentity
from sessions_app.models import Environment
from tests.browser import chromium, enrol_authenticator, enter_code
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def portal_url(
    transactional_db: None, live_server: Any, oidc: Any, environment: Environment
) -> str:
    """The portal on the live server, registered at the test provider as a relying party."""
    oidc.allow_relying_party(live_server.url)
    return str(live_server.url)


def _sign_in_at_provider(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    page.click("button:has-text('Sign in with')")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")


def _sign_out(page: Page, base_url: str) -> None:
    page.click("button:has-text('Sign out')")
    # Back from the provider's end-session endpoint to the portal's sign-in page.
    expect(page).to_have_url(f"{base_url}/login/")


def test_first_and_later_sign_in_with_the_portal_second_factor(portal_url: str, oidc: Any) -> None:
    base_url = portal_url
    oidc.add_user(
        "alice", PASSWORD, email="alice@example.org", first_name="Alice", groups=["staff"]
    )
    with chromium() as browser:
        page = browser.new_page()

        # First sign-in: the provider, then the portal asks for an authenticator.
        _sign_in_at_provider(page, base_url, "alice")
        key, codes = enrol_authenticator(page)
        assert len(codes) == 10
        expect(page.get_by_text("Select an Environment")).to_be_visible()
        expect(page.locator(".user-name")).to_have_text("alice")

        # Sign-out ends the provider's session too: signing in again asks for the password.
        _sign_out(page, base_url)
        page.click("button:has-text('Sign in with')")
        expect(page.locator("input[name=password]")).to_be_visible()
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", PASSWORD)
        page.click("button:has-text('Sign in')")

        # A later sign-in asks for a code from the app, not a new set-up.
        enter_code(page, key)
        expect(page.get_by_text("Select an Environment")).to_be_visible()

    user = User.objects.get(username="alice")
    assert OidcIdentity.objects.filter(user=user).exists()
    assert (user.email, user.first_name) == ("alice@example.org", "Alice")
    assert not user.has_usable_password()


def test_the_providers_multi_factor_claim_is_enough(portal_url: str, oidc: Any) -> None:
    base_url = portal_url
    oidc.add_user("mona", PASSWORD, groups=["staff"], mfa=True)
    with chromium() as browser:
        page = browser.new_page()

        _sign_in_at_provider(page, base_url, "mona")

        # Straight in: the provider said amr=mfa, the portal does not ask again.
        expect(page.get_by_text("Select an Environment")).to_be_visible()
        page.goto(f"{base_url}/account/")
        expect(page.locator("dl.kv")).to_contain_text("confirmed by the identity provider")


def test_someone_outside_the_staff_is_refused_and_no_account_is_left(
    portal_url: str, oidc: Any
) -> None:
    base_url = portal_url
    oidc.add_user("bob", PASSWORD, groups=["readers"], mfa=True)
    with chromium() as browser:
        page = browser.new_page()

        _sign_in_at_provider(page, base_url, "bob")

        expect(page).to_have_url(f"{base_url}/login/failed/")
        expect(page.get_by_role("heading")).to_have_text("This service is not open to you")
        # Not signed in: the portal's pages still ask for a sign-in.
        page.goto(f"{base_url}/")
        expect(page).to_have_url(f"{base_url}/login/?next=/")

    assert not User.objects.filter(username="bob").exists()


def test_local_password_sign_in_is_off_when_oidc_is_on(
    transactional_db: None, live_server: Any, oidc: Any, owner: User
) -> None:
    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{live_server.url}/login/")

        expect(page.locator("button:has-text('Sign in with')")).to_be_visible()
        expect(page.locator("input[name=password]")).to_have_count(0)


def test_the_session_follows_the_provider_session(
    portal_url: str, oidc: Any, settings: Any
) -> None:
    # The portal re-asks the provider (prompt=none) once the ID token is this old.
    settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = 2
    base_url = portal_url
    oidc.add_user("rita", PASSWORD, groups=["staff"], mfa=True)
    with chromium() as browser:
        page = browser.new_page()
        _sign_in_at_provider(page, base_url, "rita")
        expect(page.get_by_text("Select an Environment")).to_be_visible()

        # While the provider still knows her, the re-check is a silent round trip.
        page.wait_for_timeout(2500)
        page.goto(f"{base_url}/terms/")
        expect(page).to_have_url(f"{base_url}/terms/")
        expect(page.locator(".user-name")).to_have_text("rita")

        # Signed out at the provider (elsewhere), she is signed out here at the next re-check.
        page.goto(oidc.end_session_endpoint)
        page.click("[name=allow]")
        page.wait_for_timeout(2500)
        page.goto(f"{base_url}/terms/")
        expect(page).to_have_url(f"{base_url}/login/failed/")
        page.goto(f"{base_url}/")
        expect(page).to_have_url(f"{base_url}/login/?next=/")
