"""Every answer under ``/api/`` is JSON ``{detail, code}`` — unknown paths, malformed path
parameters, methods, formats, bodies over the limit, unexpected exceptions — while pages keep
their HTML; and every endpoint answers with or without its trailing slash, never redirecting.

The unexpected exceptions come from views this module adds to the portal's own URLs (its
``urlpatterns``, with the portal's error handlers): no real endpoint is meant to fail.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client
from django.urls import path
from django.views.decorators.http import require_GET
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from accounts_app.access import public_view
from portal import urls as portal_urls
from terms_app.models import TermsAcceptance, TermsVersion
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db


class _Failing(APIView):
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        raise RuntimeError("a bug in a DRF view")


@public_view
def _failing_plain(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a plain view")


@public_view
@require_GET
def _get_only(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@public_view
def _refusing_plain(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied("Not for you.")


@public_view
def _reads_form(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(len(request.POST)))


# The portal's URLs and error handlers, and views that fail (``pytest.mark.urls`` below).
handler400 = portal_urls.handler400
handler403 = portal_urls.handler403
handler404 = portal_urls.handler404
handler500 = portal_urls.handler500
urlpatterns = [
    path("api/v1/test/failing/", _Failing.as_view()),
    path("api/v1/test/failing-plain/", _failing_plain),
    path("api/v1/test/get-only/", _get_only),
    path("api/v1/test/form/", _reads_form),
    path("api/v1/test/refusing-plain/", _refusing_plain),
    path("test/failing-page/", _failing_plain),
    *portal_urls.urlpatterns,
]
with_failing_views = pytest.mark.urls(__name__)


@pytest.fixture
def anonymous() -> Client:
    # Exceptions become the responses a client would get, not errors in the test.
    return Client(raise_request_exception=False)


@pytest.fixture
def signed_in(owner: User) -> APIClient:
    client = APIClient(raise_request_exception=False)
    login_verified(client, owner)
    return client


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["detail"]
    return body


# --- 404 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/no-such-thing/",
        "/api/v1/no-such-thing",
        "/api/v2/session/",
        "/api/",
        "/api/v1/tokens/abc/",  # an int parameter that is not one
        "/api/v1/admin/queue/not-a-uuid/",
        "/api/v1/session/extra/",
    ],
)
def test_a_path_that_names_no_endpoint_is_a_json_404(signed_in: APIClient, url: str) -> None:
    _error(signed_in.get(url), 404, "not_found")


def test_pages_keep_their_html_404(anonymous: Client) -> None:
    response = anonymous.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


# --- 405, 406 -------------------------------------------------------------------------------------


def test_a_method_an_endpoint_lacks_is_a_json_405_with_allow(signed_in: APIClient) -> None:
    response = signed_in.put("/api/v1/environments/", {}, format="json")

    _error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


@with_failing_views
def test_a_405_made_outside_drf_is_json_too(anonymous: Client) -> None:
    response = anonymous.post("/api/v1/test/get-only/")

    body = _error(response, 405, "method_not_allowed")
    assert body["detail"] == 'Method "POST" not allowed.'
    assert response["Allow"] == "GET"


@with_failing_views
def test_a_permission_refused_outside_drf_is_a_json_403(anonymous: Client) -> None:
    body = _error(anonymous.get("/api/v1/test/refusing-plain/"), 403, "permission_denied")

    assert body["detail"] == "Not for you."


def test_an_unknown_format_is_a_406_with_a_code(signed_in: APIClient) -> None:
    _error(signed_in.get("/api/v1/environments/", {"format": "xml"}), 406, "not_acceptable")
    _error(
        signed_in.get("/api/v1/environments/", headers={"Accept": "application/xml"}),
        406,
        "not_acceptable",
    )


def test_a_browser_gets_json_not_a_browsable_page(signed_in: APIClient) -> None:
    accept = "text/html,application/xhtml+xml,*/*;q=0.8"

    response = signed_in.get("/api/v1/session/", headers={"Accept": accept})

    _error(response, 404, "no_active_session")


# --- 413 ------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_json_413(signed_in: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = signed_in.post("/api/v1/terms/accept/", {"version": "x" * 2000}, format="json")

    _error(response, 413, "too_large")


@with_failing_views
def test_a_body_over_the_limit_read_outside_drf_is_a_json_413(
    anonymous: Client, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = anonymous.post("/api/v1/test/form/", {"field": "x" * 2000})

    _error(response, 413, "too_large")


def test_a_page_keeps_its_html_400_for_a_body_over_the_limit(
    anonymous: Client, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = anonymous.post("/login/", {"username": "x" * 2000, "password": "y"})

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


# --- 500 ------------------------------------------------------------------------------------------


@with_failing_views
@pytest.mark.parametrize("url", ["/api/v1/test/failing/", "/api/v1/test/failing-plain/"])
def test_an_unexpected_exception_is_a_json_500_and_logged(
    anonymous: Client, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = anonymous.get(url)

    body = _error(response, 500, "server_error")
    assert "bug" not in body["detail"]  # no internals in the answer
    logged = [record for record in caplog.records if record.name == "django.request"]
    assert logged and logged[-1].exc_info is not None
    assert "a bug in" in str(logged[-1].exc_info[1])


@with_failing_views
def test_a_page_keeps_its_html_500(anonymous: Client) -> None:
    response = anonymous.get("/test/failing-page/")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


# --- no trailing-slash redirects -----------------------------------------------------------------


def test_a_post_without_the_trailing_slash_is_answered_not_redirected(
    owner: User, signed_in: APIClient, terms: TermsVersion
) -> None:
    # given: APPEND_SLASH would answer 301, which clients follow as a GET
    # when
    response = signed_in.post("/api/v1/terms/accept", {"version": terms.version}, format="json")
    # then
    assert response.status_code == 201, response.content
    assert TermsAcceptance.objects.filter(user=owner, version=terms).exists()


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("get", "/api/v1/session", 404),  # no_active_session, as with the slash
        ("delete", "/api/v1/session", 404),
        ("get", "/api/v1/environments", 200),
        ("get", "/api/v1/tokens/12345", 405),
        ("delete", "/api/v1/tokens/12345", 404),
    ],
)
def test_every_endpoint_answers_without_its_trailing_slash(
    signed_in: APIClient, method: str, url: str, status: int
) -> None:
    without = getattr(signed_in, method)(url)
    with_slash = getattr(signed_in, method)(url + "/")

    assert without.status_code == with_slash.status_code == status
    assert without.json() == with_slash.json()


def test_the_schema_names_each_endpoint_once_with_its_slash(signed_in: APIClient) -> None:
    schema = signed_in.get("/api/v1/schema/", {"format": "json"}).json()

    assert all(route.endswith("/") for route in schema["paths"])


def test_the_long_poll_without_its_slash_still_waits_on_the_event_loop() -> None:
    # The web server picks the event loop by resolving the path before any middleware runs
    # (portal/asgi.py): the slashless form must resolve to the same async view.
    from portal.asgi import _view_for
    from sessions_app.live import api_session

    assert _view_for("/api/v1/session") is _view_for("/api/v1/session/") is api_session


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("/api/v1/no-such-thing/", 404, "not_found"),
        ("/api/v1/session/?wait=1&note=%00", 400, "invalid_characters"),
        ("/api/v1/session?wait=1", 401, "not_authenticated"),
    ],
)
def test_the_event_loops_chain_answers_json_too(url: str, status: int, code: str) -> None:
    # Django's async handler: the long poll's chain, in which the middleware runs on the loop.
    response = async_to_sync(AsyncClient().get)(url)

    _error(response, status, code)
