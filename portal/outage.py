"""What the portal answers while the database, or the broker behind the shared cache, does not:
503 with ``Retry-After``, never a 500.

A database that is down, restarting or cut off makes its driver raise ``OperationalError`` or
``InterfaceError`` (Django wraps psycopg's; a pool that cannot get a connection within its
timeout raises ``PoolTimeout``, which Django wraps too); the shared cache (Redis on the broker)
raises redis-py's connection errors. None of them is a fault of the request or of the code:
the client should come back shortly, and it is told so — JSON ``{"detail", "code":
"unavailable"}`` under ``/api/`` (and to callers that ask for JSON), the branded page
``503.html`` elsewhere.

Such an error can surface at three depths, and each answers the same way:

- in a DRF view (the API, its authentication and permissions): ``portal.api_errors``'s
  exception handler calls :func:`outage_response`;
- in any other view (pages, the waiting views): :class:`OutageMiddleware`'s ``process_exception``;
- in a middleware, before or after the view — above all the session and user lookup that every
  signed-in request makes (``AuthenticationMiddleware``'s lazy user, read first by the access
  policy's ``process_view``): Django turns the exception into its 500 response through
  ``handler500``, which is :func:`server_error` (``portal.urls``).

The page must render with the database gone: it is rendered without the request, so no context
processor runs (the user menu, ``messages`` and the session would each query the database).
"""

from __future__ import annotations

import logging
import sys

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.utils.deprecation import MiddlewareMixin
from django.views import defaults

log = logging.getLogger(__name__)

#: What clients are told to wait before they try again (``Retry-After``, seconds).
RETRY_AFTER_SECONDS = 5
CODE = "unavailable"
DETAIL = "The service is temporarily unavailable. Try again in a few seconds."
TEMPLATE = "503.html"
# How far down a chain of causes to look (Django's wrapper, a wrapper of ours, the driver's).
_CHAIN_DEPTH = 5


def _outage_types() -> tuple[type[BaseException], ...]:
    # Imported here: this module is loaded with the settings' middleware and urls, before
    # anything needs the drivers.
    import django.db
    import kombu.exceptions
    import psycopg
    import redis.exceptions

    return (
        django.db.OperationalError,
        django.db.InterfaceError,
        # psycopg's own (psycopg_pool.PoolTimeout is one), where code talks to it directly.
        psycopg.OperationalError,
        psycopg.InterfaceError,
        # The shared cache (redis-py, through Django's RedisCache): refused, reset, timed out.
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        # A task sent to a broker that is away (kombu wraps the transport's error).
        kombu.exceptions.OperationalError,
    )


def is_outage(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised ``from``) says a back-end service does not answer.
    Not what it was raised *while handling*: code that met an outage and chose another answer
    (a 409, a retry) keeps it."""
    types = _outage_types()
    for _ in range(_CHAIN_DEPTH):
        if exc is None:
            return False
        if isinstance(exc, types):
            return True
        exc = exc.__cause__
    return False


def wants_json(request: HttpRequest) -> bool:
    """The API, and callers that ask for JSON rather than a page (the session page's status
    poll): a body a program can read."""
    if request.path_info.startswith("/api/"):
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def outage_body() -> dict[str, str]:
    return {"detail": DETAIL, "code": CODE}


def log_outage(request: HttpRequest, exc: BaseException) -> None:
    """One line, no traceback: during an outage every request ends here."""
    message = str(exc).strip()
    log.warning(
        "unavailable: %s %s: %s: %s",
        request.method,
        request.path,
        type(exc).__name__,
        message.splitlines()[0] if message else "",
    )


def outage_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """503 with ``Retry-After``: JSON for programs, the branded page for people."""
    log_outage(request, exc)
    response: HttpResponse
    if wants_json(request):
        response = JsonResponse(outage_body(), status=503)
    else:
        # No request: no context processor may touch the database (see the module's doc).
        page = loader.render_to_string(
            TEMPLATE,
            {
                "retry_after": RETRY_AFTER_SECONDS,
                # A page the browser may simply ask for again; a form's answer it may not.
                "refresh": request.method in ("GET", "HEAD"),
            },
        )
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


class OutageMiddleware(MiddlewareMixin):
    """A view that met an outage answers 503 (see the module's doc). Async-capable, as every
    middleware of the waiting views' chain must be (``portal/asgi.py``)."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_outage(exception):
            return outage_response(request, exception)
        return None


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: an outage met in a middleware (the session and user lookup) answers 503;
    anything else is Django's own 500. Django calls it while handling the exception."""
    exc = sys.exc_info()[1]
    if exc is not None and is_outage(exc):
        return outage_response(request, exc)
    return defaults.server_error(request)
