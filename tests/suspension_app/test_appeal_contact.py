"""The appeal contact is an address a suspended user can write to (issue 15: "Contact the
service desk at the address on the service page", with no address): a mailto: link on the
suspended page, the mail's own address by default, and anything else refused at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from suspension_app.services import suspension_impose
from tests.conftest import login_verified


def _settings_value(name: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """``name`` as a portal started with ``environment`` has it."""
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            f"from django.conf import settings; print(settings.{name})",
        ],
        cwd=settings.BASE_DIR,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.django_db
def test_the_suspended_page_links_to_the_appeal_address(
    client: Client, owner: User, staff: User, settings: Any
) -> None:
    settings.SUSPENSION_APPEAL_CONTACT = "appeals@example.org"
    suspension_impose(user=owner, reason="Port scans.", imposed_by=staff)
    login_verified(client, owner)

    response = client.get("/")

    assert response.status_code == 403
    page = response.content.decode()
    assert (
        '<a href="mailto:appeals@example.org?subject=Appeal%20against%20my%20suspension" '
        'class="appeal-contact">appeals@example.org</a>. Staff lift' in page
    )


def test_by_default_appeals_go_to_the_address_the_mail_comes_from() -> None:
    ran = _settings_value(
        "SUSPENSION_APPEAL_CONTACT",
        DEFAULT_FROM_EMAIL="Jupyter portal <jupyter@example.org>",
        SUSPENSION_APPEAL_CONTACT="",
    )

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "jupyter@example.org"


def test_an_appeal_contact_that_is_no_address_stops_the_start_up() -> None:
    ran = _settings_value("SUSPENSION_APPEAL_CONTACT", SUSPENSION_APPEAL_CONTACT="the service desk")

    assert ran.returncode != 0
    assert "SUSPENSION_APPEAL_CONTACT must be an e-mail address" in ran.stderr
