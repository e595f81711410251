"""Headers that keep secrets and pages safe: ``Cache-Control: no-store`` on every answer that
carries a secret, a Content-Security-Policy without inline script or style, and HSTS when the
portal is configured for HTTPS (``SECURE_COOKIES``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User
from django.test import AsyncClient, Client
from rest_framework.test import APIClient

from portal.tokens import token_issue
from tests.conftest import login_verified

TEMPLATES = Path(settings.BASE_DIR) / "templates"


def _no_store(response: Any) -> bool:
    return "no-store" in response.get("Cache-Control", "")


@pytest.mark.django_db
def test_the_token_api_and_the_session_api_are_never_stored(api: APIClient, owner: User) -> None:
    answers = [
        api.post("/api/v1/tokens/", {"name": "x"}, format="json"),
        api.get("/api/v1/tokens/"),
        api.delete("/api/v1/tokens/999/"),  # errors too
        api.get("/api/v1/session/"),  # 404: no session (the 200 would carry its url)
        api.get("/api/v1/sessions/"),
    ]

    assert [response.status_code for response in answers] == [201, 200, 404, 404, 200]
    assert all(_no_store(response) for response in answers)
    # What carries no secret may be cached as before.
    assert not _no_store(api.get("/api/v1/environments/"))


@pytest.mark.django_db
def test_the_session_api_is_never_stored_under_asgi(owner: User) -> None:
    # /api/v1/session/ is an async view (the long poll): under an ASGI server the middleware
    # runs as a coroutine, and must mark its answers all the same.
    bearer = {"Authorization": f"Bearer {token_issue(user=owner)}"}

    response = async_to_sync(AsyncClient().get)("/api/v1/session/", headers=bearer)

    assert response.status_code == 404
    assert _no_store(response)


@pytest.mark.django_db
def test_pages_that_show_a_secret_are_never_stored(client: Client, owner: User) -> None:
    login_verified(client, owner)

    new_token = client.post("/account/tokens/", {"name": "x"})
    backup_codes = client.post("/account/backup-codes/")

    assert new_token.status_code == backup_codes.status_code == 200
    assert _no_store(new_token) and _no_store(backup_codes)


@pytest.mark.django_db
def test_the_authenticator_set_up_page_is_never_stored(client: Client, owner: User) -> None:
    client.force_login(owner)

    response = client.get("/account/second-factor/setup/")

    assert response.status_code == 200
    assert _no_store(response)


@pytest.mark.django_db
def test_pages_carry_a_policy_without_inline_script_or_style(client: Client) -> None:
    policy = client.get("/login/")["Content-Security-Policy"]

    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe" not in policy


def test_templates_keep_no_inline_script_or_style() -> None:
    # The policy refuses them: a page that had one would break in the browser.
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
    found = []
    for path in TEMPLATES.rglob("*.html"):
        if "email" in path.parts:
            continue  # mail, not pages
        text = path.read_text()
        for pattern in (inline_script, re.compile(r"<style|\sstyle=|\son[a-z]+=", re.I)):
            found += [
                f"{path.relative_to(TEMPLATES)}: {m.group(0)}" for m in pattern.finditer(text)
            ]
    assert found == []


def _settings_under(env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """Some settings as a portal started with ``env`` has them."""
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'hsts': s.SECURE_HSTS_SECONDS}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PORTAL_VAR_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_hsts_follows_secure_cookies(tmp_path: Path) -> None:
    assert _settings_under({"SECURE_COOKIES": "false"}, tmp_path)["hsts"] == 0
    assert _settings_under({"SECURE_COOKIES": "true"}, tmp_path)["hsts"] == 365 * 24 * 3600
    assert (
        _settings_under({"SECURE_COOKIES": "true", "HSTS_SECONDS": "600"}, tmp_path)["hsts"] == 600
    )


@pytest.mark.django_db
def test_forms_may_lead_to_the_identity_provider(client: Client, settings: Any) -> None:
    # The sign-in button and the sign-out form end in redirects to the provider, which
    # browsers hold to form-action too.
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = "https://idp.example.org/realms/x/auth"
    settings.OIDC_OP_LOGOUT_ENDPOINT = "https://logout.example.org/end?x=1"

    policy = client.get("/login/")["Content-Security-Policy"]

    assert "form-action 'self' https://idp.example.org https://logout.example.org" in policy


@pytest.mark.django_db
def test_hsts_is_sent_on_https_answers(client: Client, settings: Any) -> None:
    settings.SECURE_HSTS_SECONDS = 3600

    secure = client.get("/login/", secure=True)
    plain = client.get("/login/")

    assert secure["Strict-Transport-Security"] == "max-age=3600"
    assert "Strict-Transport-Security" not in plain
