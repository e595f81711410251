"""The owner's browser in their JupyterLab through the router: real Chromium (Playwright), real
nginx, the portal on the live server, a real JupyterLab on a Unix socket.

The browser signs in to the portal on the router's address, opens ``/user/owner/lab``, runs a
cell and opens a terminal (both over websockets through the router); no response, websocket
message or cookie it gets ever holds the server's token. Another signed-in browser is refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Error, Page, Response, WebSocket, expect

from sessions_app.models import Environment
from tests.browser import chromium, enrol_authenticator
from tests.conftest import PASSWORD
from tests.portal.router_world import running_session

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LAB_TIMEOUT = 90_000  # ms: JupyterLab's UI loads a few megabytes of scripts


def _sign_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    enrol_authenticator(page)


def test_the_owner_runs_a_cell_and_a_terminal_through_the_router_and_never_holds_the_token(
    router_url: str,
    router_lab: tuple[Path, str],
    owner: User,
    other_user: User,
    environment: Environment,
) -> None:
    socket_path, token = router_lab
    running_session(owner, environment, socket_path, token)
    leaks: list[str] = []
    sockets: list[str] = []
    terminal_output: list[str] = []
    responses: list[Response] = []

    def inspect(response: Response) -> None:
        # Every HTTP answer the browser gets: its headers now, its body at the end (reading it
        # here, in the event, would stall the page). Routing every request through Playwright
        # instead (page.route) breaks JupyterLab's websockets, so it is not used.
        if token in str(response.headers):
            leaks.append(response.url)
        responses.append(response)

    def watch(socket: WebSocket) -> None:
        sockets.append(socket.url)

        def frame(payload: Any) -> None:
            text = payload if isinstance(payload, str) else payload.decode(errors="replace")
            if token in text:
                leaks.append(socket.url)
            if "/terminals/websocket/" in socket.url:
                terminal_output.append(text)

        socket.on("framereceived", frame)

    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        page.on("response", inspect)
        page.on("websocket", watch)

        # Given the owner signed in to the portal on the router's address,
        _sign_in(page, router_url, owner.get_username())
        # when they open their session's address, JupyterLab comes up;
        page.goto(f"{router_url}/user/owner/lab")
        page.wait_for_selector("#jp-main-dock-panel", timeout=LAB_TIMEOUT)
        expect(page).to_have_title(re.compile("JupyterLab"))

        # a notebook's cell runs in a kernel over the kernel's websocket,
        page.locator(".jp-LauncherCard[data-category='Notebook']").first.click()
        cell = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        cell.wait_for(timeout=LAB_TIMEOUT)
        expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=LAB_TIMEOUT)
        cell.click()
        page.keyboard.type("print(6 * 7)")
        page.keyboard.press("Shift+Enter")
        expect(page.locator(".jp-OutputArea-output").first).to_have_text("42", timeout=60_000)

        # and a terminal opens over its own websocket and echoes what is typed.
        page.goto(f"{router_url}/user/owner/lab?reset")  # a fresh workspace: the launcher
        page.wait_for_selector("#jp-main-dock-panel", timeout=LAB_TIMEOUT)
        page.locator(".jp-LauncherCard", has_text="Terminal").first.click()
        terminal = page.locator(".jp-Terminal .xterm")
        terminal.wait_for(timeout=60_000)
        terminal.click()
        page.keyboard.type("echo router-$((40 + 2))\n")
        # What the shell printed comes back on the terminal's websocket (xterm draws it on a
        # canvas, not in the page's text).
        deadline_ms = 30_000
        while not any("router-42" in text for text in terminal_output) and deadline_ms > 0:
            page.wait_for_timeout(200)
            deadline_ms -= 200
        cookies = context.cookies()
        bodies = 0
        for response in responses:
            try:
                body = response.body()
            except Error:
                continue  # a redirect, or a body the browser no longer keeps
            bodies += 1
            if token.encode() in body:
                leaks.append(response.url)
        context.close()

        # Another signed-in person is refused at the router.
        intruder = browser.new_context()
        other = intruder.new_page()
        _sign_in(other, router_url, other_user.get_username())
        refused = other.goto(f"{router_url}/user/owner/lab")
        assert refused is not None and refused.status == 403
        expect(other.get_by_text("You cannot open this session")).to_be_visible()
        intruder.close()

    assert any("/user/owner/api/kernels/" in url for url in sockets), sockets
    assert any("/user/owner/terminals/websocket/" in url for url in sockets), sockets
    assert any("router-42" in text for text in terminal_output), terminal_output[-5:]
    assert leaks == []
    assert bodies > 50  # the lab's page, its scripts and API answers were all read
    assert all(token not in cookie["value"] for cookie in cookies)
