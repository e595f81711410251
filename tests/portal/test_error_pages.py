"""The pages' errors are the portal's own pages (issue 15: Django's bare "Not Found" before):
400, 403, 404 and 500 in the portal's frame, while the API keeps answering JSON. The 400 and
500 pages are rendered without the request, so they must not need the database or the user.

The failing views are this module's own URLs beside the portal's (``pytest.mark.urls``)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from accounts_app.access import public_view
from portal import urls as portal_urls
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db


@public_view
def _failing(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a page")


@public_view
def _refusing(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied("Not for you.")


handler400 = portal_urls.handler400
handler403 = portal_urls.handler403
handler404 = portal_urls.handler404
handler500 = portal_urls.handler500
urlpatterns = [
    path("test/failing/", _failing),
    path("test/refusing/", _refusing),
    path("api/v1/test/failing/", _failing),
    path("api/v1/test/refusing/", _refusing),
    *portal_urls.urlpatterns,
]
with_test_views = pytest.mark.urls(__name__)


@pytest.fixture
def anonymous() -> Client:
    # Exceptions become the responses a browser would get, not errors in the test.
    return Client(raise_request_exception=False)


def _page(response: Any, status: int) -> str:
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    page: str = response.content.decode()
    # The portal's frame: its stylesheet, its skip link, its heading.
    assert "sessions_app/portal.css" in page
    assert 'href="#main">Skip to content</a>' in page
    assert f'data-error="{status}"' in page
    return page


def test_a_missing_page_is_the_portals_404(anonymous: Client) -> None:
    page = _page(anonymous.get("/no-such-page/"), 404)

    assert "<h1>Page not found</h1>" in page
    assert "<code>/no-such-page/</code>" in page
    assert ">Sign in</a>" in page


def test_a_signed_in_user_keeps_the_navigation_on_a_404(client: Client, owner: User) -> None:
    login_verified(client, owner)

    page = _page(client.get("/no-such-page/"), 404)

    assert 'aria-label="Main"' in page and ">Sign out</button>" in page


@with_test_views
def test_a_refusal_is_the_portals_403_and_json_in_the_api(anonymous: Client) -> None:
    page = _page(anonymous.get("/test/refusing/"), 403)
    assert "<h1>You may not open this page</h1>" in page

    response = anonymous.get("/api/v1/test/refusing/")
    assert response.status_code == 403
    assert response.json() == {"detail": "Not for you.", "code": "permission_denied"}


@with_test_views
def test_an_unexpected_error_is_the_portals_500_without_the_database(
    anonymous: Client, django_assert_max_num_queries: Any
) -> None:
    # The 500 page is rendered after the failure, with no query of its own: the database may
    # be what failed.
    with django_assert_max_num_queries(0):
        page = _page(anonymous.get("/test/failing/"), 500)

    assert "Something went wrong on our side" in page
    assert "a bug in a page" not in page

    response = anonymous.get("/api/v1/test/failing/")
    assert response.status_code == 500
    assert response.json()["code"] == "server_error"


def test_a_malformed_request_is_the_portals_400(anonymous: Client, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    page = _page(anonymous.post("/login/", {"username": "x" * 2000, "password": "y"}), 400)

    assert "could not read this request" in page


def test_a_form_without_its_token_is_the_portals_csrf_page() -> None:
    browser = Client(enforce_csrf_checks=True)

    page = _page(browser.post("/login/", {"username": "owner", "password": "x"}), 403)

    assert "<h1>This form has expired</h1>" in page
