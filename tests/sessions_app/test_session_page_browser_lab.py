"""Launch → JupyterLab in one tab (issue 15): with "Open when ready" ticked on the launcher, one
click on Launch ends in the person's JupyterLab, in the same tab, with no other tab opened, and
the page on the way never says "queued" or "None" on an idle machine.

Everything is real: Chromium under Playwright, the web under the ASGI server (the event stream
needs it), nginx as the router in front of it, a Celery worker, and the JupyterLab the local
spawner starts, reached through the router.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from sessions_app.models import Environment, Session
from sessions_app.spawners import get_spawner
from tests.browser import chromium
from tests.conftest import login_verified
from tests.portal.asgi_world import asgi_web
from tests.portal.router_world import nginx_router, router_base

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Milliseconds: starting JupyterLab takes seconds; its UI loads a few megabytes of scripts.
LAB_TIMEOUT = 150_000

# Every text the session card shows, as it changes, handed to the test before the tab leaves.
RECORD_STATES = """
document.addEventListener("DOMContentLoaded", () => {
  const card = document.getElementById("session");
  if (!card) return;
  const seen = () => window.recordSession(card.innerText);
  seen();
  new MutationObserver(seen).observe(card, {subtree: true, childList: true,
    characterData: true, attributes: true, attributeFilter: ["hidden", "class"]});
});
"""


def test_launch_with_open_when_ready_ends_in_jupyterlab_in_the_same_tab(
    celery_worker: Any,
    accepted: User,
    environment: Environment,
    tmp_path: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    client = Client()
    login_verified(client, accepted)
    cookie = client.cookies["sessionid"].value
    with (
        asgi_web(tmp_path, workers=1) as (host, port),
        router_base() as folder,
        nginx_router(folder / "router", f"{host}:{port}") as base,
        chromium() as browser,
    ):
        # Session URLs are on the router's address (the worker runs in this process).
        settings.PORTAL_PUBLIC_URL = base
        get_spawner.cache_clear()
        context = browser.new_context()
        context.add_cookies([{"name": "sessionid", "value": cookie, "url": base}])
        shown: list[str] = []
        context.expose_function("recordSession", lambda text: shown.append(text))
        context.add_init_script(RECORD_STATES)
        page = context.new_page()

        # Given the launcher, with "Open when ready" ticked
        page.goto(f"{base}/")
        page.check("#open-when-ready")

        # when the person launches
        page.click("#launch-button")

        # then the same tab ends in their JupyterLab, and its UI comes up
        lab_url = f"{base}/user/{accepted.get_username()}/lab"
        page.wait_for_url(f"{lab_url}*", timeout=LAB_TIMEOUT)
        page.wait_for_selector("#jp-main-dock-panel", timeout=LAB_TIMEOUT)
        assert len(context.pages) == 1
        assert "token" not in page.url

        # and on the way the page never said "queued" nor "None" (an idle machine)
        assert shown, "the session page was never seen"
        states = {text.split("State:", 1)[1].split()[0] for text in shown if "State:" in text}
        assert states <= {"starting", "running"}, states
        assert not [text for text in shown if "None" in text or "queue" in text.lower()]

        # The choice is remembered for the next launch.
        assert page.evaluate("localStorage.getItem('jlp.openWhenReady')") == "1"
        context.close()
    connection.close()
    session = Session.objects.get(user=accepted)
    assert session.state == Session.State.RUNNING
