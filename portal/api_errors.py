"""Every API error is JSON with a human-readable ``detail`` and a stable ``code``.

An error can be answered at three depths, and each answers in the same shape under ``/api/``:

- in a DRF view (parsing, authentication, permissions, throttles, the view itself):
  :func:`exception_handler`, DRF's ``EXCEPTION_HANDLER``;
- outside one (a path that names no endpoint, a malformed path parameter, a body over
  ``DATA_UPLOAD_MAX_MEMORY_SIZE`` met before the view, an unexpected exception): Django's error
  handlers, :func:`bad_request`, :func:`permission_denied`, :func:`page_not_found` and
  :func:`server_error` (``portal.urls``), which keep the pages' HTML outside ``/api/``: the
  portal's own ``templates/400.html``, ``403.html``, ``404.html`` and ``500.html`` (400 and 500
  are rendered without the request, so they extend ``error_standalone.html``, not ``base.html``);
- anything else that still answers an API request with a page (a 405 from
  ``require_GET``, a middleware's refusal): ``portal.api_middleware.ApiMiddleware`` rewrites it.
"""

from __future__ import annotations

import sys
from http import HTTPStatus
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response

from portal.errors import ServiceError

#: The stable code of an error answered outside DRF's handler, by status.
STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
    503: "unavailable",
}
NOT_FOUND = "No such endpoint (see /api/v1/schema/)."
TOO_LARGE = "The request body is larger than the portal accepts."
SERVER_ERROR = "The portal met an unexpected error; it has been logged."


def is_api(request: HttpRequest) -> bool:
    """Whether ``request`` is for the API, whose every answer is JSON."""
    return request.path_info.startswith("/api/")


def error_body(status: int, detail: str = "", code: str = "") -> dict[str, str]:
    """``{detail, code}`` for ``status``; the status's own phrase and code by default."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:  # a status outside the standard's list
        phrase = "Error"
    return {"detail": detail or f"{phrase}.", "code": code or STATUS_CODES.get(status, "error")}


def json_error(status: int, detail: str = "", code: str = "") -> JsonResponse:
    return JsonResponse(error_body(status, detail, code), status=status)


def _first_message(detail: Any) -> str:
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        message = _first_message(value)
        return message if key in ("non_field_errors", "detail") else f"{key}: {message}"
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # Imported here: DRF's views module loads the authentication classes, which raise ApiError.
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

    from portal import outage

    if not isinstance(exc, exceptions.APIException) and outage.is_outage(exc):
        # The database (or the shared cache) does not answer: the same 503 as the pages'.
        request = context.get("request")
        if request is not None:
            outage.log_outage(request, exc)
        set_rollback()
        return Response(
            outage.outage_body(),
            status=503,
            headers={"Retry-After": str(outage.RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
        )
    if isinstance(exc, RequestDataTooBig):
        # Django refuses to read the body (DRF reads it for the parser): a SuspiciousOperation
        # that would otherwise reach Django as a 400 page.
        exc = ApiError(413, TOO_LARGE, "too_large")
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, ServiceError):
        exc = service_error(exc)
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    detail = exc.detail
    if isinstance(detail, dict) and "code" in detail and "detail" in detail:
        body: dict[str, Any] = {"detail": str(detail["detail"]), "code": str(detail["code"])}
    elif isinstance(detail, dict | list):
        body = {
            "detail": _first_message(detail),
            "code": "invalid",
            "errors": exc.get_full_details(),
        }
    else:
        body = {"detail": str(detail), "code": getattr(detail, "code", None) or exc.default_code}
    response.data = body
    return response


class ApiError(exceptions.APIException):
    """An error with our own stable code, e.g. ``ApiError(409, "…", "terms_version_stale")``."""

    def __init__(self, status_code: int, detail: str, code: str) -> None:
        self.status_code = status_code
        super().__init__(detail={"detail": detail, "code": code})


def service_error(exc: ServiceError) -> ApiError:
    """The API's answer to a service's refusal (:mod:`portal.errors`): its status, detail and
    code, and ``Retry-After`` when it says when to try again."""
    error = ApiError(exc.status, exc.detail, exc.code)
    # DRF's handler turns ``wait`` into the Retry-After header.
    error.wait = exc.retry_after  # type: ignore[attr-defined]
    return error


class ApiErrorSerializer(serializers.Serializer[Any]):
    """The body of every API error (documentation only; ``portal.api_errors`` builds it)."""

    detail = serializers.CharField(help_text="What went wrong, for people.")
    code = serializers.CharField(help_text="A stable identifier, for programs.")

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # Added here, not as an attribute: ``errors`` is already Serializer.errors.
        fields = super().get_fields()
        fields["errors"] = serializers.JSONField(
            required=False, help_text="Per-field errors, when the request body was malformed."
        )
        return fields


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, but ``?format=`` naming no renderer is 406 ``not_acceptable``, as an
    ``Accept`` header naming none is (DRF answers it 404 with no ``code``)."""

    def filter_renderers(self, renderers: Any, format: str) -> Any:  # noqa: A002 - DRF's name
        found = [renderer for renderer in renderers if renderer.format == format]
        if not found:
            raise exceptions.NotAcceptable(
                f"Unknown format {format!r}: this endpoint answers "
                + ", ".join(sorted({renderer.format for renderer in renderers}))
                + "."
            )
        return found


# --- Django's error handlers (portal.urls) -------------------------------------------------------


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler400``: a body over the limit is 413 in the API (Django says 400 for every
    SuspiciousOperation)."""
    if not is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return json_error(413, TOO_LARGE)
    return json_error(400)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api(request):
        return defaults.permission_denied(request, exception)
    return json_error(403, str(exception))


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: an unknown ``/api/…`` path, or a path parameter of the wrong shape
    (``/api/v1/tokens/abc/``): no route matches either."""
    if not is_api(request):
        return defaults.page_not_found(request, exception)
    return json_error(404, NOT_FOUND)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: an outage answers 503 (``portal.outage``); any other exception is
    Django's 500, JSON in the API. Django has logged it (``django.request``, with its
    traceback) before it calls this."""
    from portal import outage

    exc = sys.exc_info()[1]
    if exc is not None and outage.is_outage(exc):
        return outage.outage_response(request, exc)
    if not is_api(request):
        return defaults.server_error(request)
    return json_error(500, SERVER_ERROR)
