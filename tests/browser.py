"""Shared by the browser tests: Debian's Chromium under Playwright, and the second factor
as a person with an authenticator app goes through it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.accounts_app.totp import totp_code

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium. The ORM can't be used inside: Playwright's sync API keeps an event
    loop running in this thread, where Django refuses synchronous queries."""
    assert CHROMIUM.exists(), "the browser tests need Debian's chromium: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def enrol_authenticator(page: Page) -> tuple[str, list[str]]:
    """On the set-up page: read the key as an app would, confirm with its code, keep the
    backup codes, continue. Returns the key and the codes."""
    expect(page.get_by_role("heading", name="Set up your second factor")).to_be_visible()
    expect(page.locator(".qr-code svg")).to_be_visible()
    key = page.locator("#totp-key").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-7]+", key), key
    page.fill("#id_code", totp_code(key))
    page.click("button:has-text('Confirm')")
    expect(page.get_by_role("heading", name="Your backup codes")).to_be_visible()
    codes = [code.strip() for code in page.locator("#backup-codes code").all_inner_texts()]
    page.click("text=I have kept them: continue")
    return key, codes


def enter_code(page: Page, key: str, steps_ahead: int = 1) -> None:
    """On the code page: type the app's code (a later step: each code works once)."""
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    page.fill("#id_code", totp_code(key, steps_ahead=steps_ahead))
    page.click("button:has-text('Verify')")
