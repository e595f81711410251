"""The terms page and the Markdown rendering of the terms."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.test import Client

from terms_app.models import TermsVersion
from terms_app.rendering import render_terms_markdown
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner_client(client: Client, owner: User) -> Client:
    login_verified(client, owner)
    return client


def test_terms_page_shows_current_version_rendered_and_not_yet_accepted(
    owner_client: Client, terms: TermsVersion
) -> None:
    TermsVersion.objects.filter(pk=terms.pk).update(
        published_at=datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
    )

    response = owner_client.get("/terms/")

    assert response.status_code == 200
    page = response.content.decode()
    assert f"<h1>{terms.title}</h1>" in page
    assert f"Version <strong>{terms.version}</strong>, published" in page
    assert "15 January 2026, 09:30 UTC" in page
    assert "<li><strong>Experimental service.</strong>" in page
    assert "You have not accepted this version yet." in page


def test_terms_page_says_when_the_user_accepted_the_current_version(
    client: Client, accepted: User
) -> None:
    login_verified(client, accepted)

    page = client.get("/terms/").content.decode()

    assert "You have accepted this version." in page


def test_terms_page_shows_the_newest_published_version_only(
    owner_client: Client, accepted: User, terms: TermsVersion
) -> None:
    TermsVersion.objects.create(
        version="2", title="Second terms", body="Changed.", published_at=datetime.now(UTC)
    )
    TermsVersion.objects.create(version="3-draft", title="Draft terms", body="Not yet.")

    page = owner_client.get("/terms/").content.decode()

    assert "<h1>Second terms</h1>" in page
    assert "Draft terms" not in page
    # Accepting version 1 does not count for version 2.
    assert "You have not accepted this version yet." in page


def test_terms_page_without_published_terms_says_so(owner_client: Client) -> None:
    TermsVersion.objects.all().delete()

    page = owner_client.get("/terms/").content.decode()

    assert "No terms of use have been published yet." in page


def test_rendering_keeps_formatting_and_links() -> None:
    html = render_terms_markdown(
        "# Rules\n\n*Be* **fair**; see [the page](https://example.org/rules).\n\n- one\n- two\n"
    )

    assert "<h1>Rules</h1>" in html
    assert "<em>Be</em> <strong>fair</strong>" in html
    assert (
        '<a href="https://example.org/rules" rel="noopener noreferrer nofollow">the page</a>'
        in (html)
    )
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in html


def test_rendering_removes_scripts_event_handlers_and_javascript_links() -> None:
    html = render_terms_markdown(
        "Hello <script>alert(1)</script>"
        '<img src="x" onerror="alert(2)">'
        '<a href="javascript:alert(3)" onclick="alert(4)">click</a>'
        '<iframe src="https://evil.example"></iframe>'
        "\n\n[md link](javascript:alert(5))"
    )

    assert "<script" not in html
    assert "alert" not in html
    assert "<img" not in html
    assert "<iframe" not in html
    assert "onclick" not in html
    assert "javascript:" not in html
    assert "click" in html and "md link" in html  # the text stays, the danger goes
