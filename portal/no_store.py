"""``Cache-Control: no-store`` on the API answers that carry a secret.

The caller's session (``/api/v1/session/``, ``/api/v1/sessions/…``, staff's
``/api/v1/admin/sessions/…``) has a ``url`` with the Jupyter server's token in it, and the
token endpoints answer with a new portal token: no browser, proxy or client cache may keep
them. Set here by path, for every method and status, so that a new endpoint under these paths
cannot forget it. The pages that show a secret (a new token, backup codes, the authenticator's
key) say so themselves with ``never_cache``.
"""

from __future__ import annotations

from collections.abc import Callable
from inspect import iscoroutinefunction
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import sync_and_async_middleware

SECRET_PATHS = (
    "/api/v1/session",  # /session/ and /sessions/…
    "/api/v1/admin/sessions",
    "/api/v1/tokens",
)


def _mark(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    if request.path.startswith(SECRET_PATHS):
        add_never_cache_headers(response)
    return response


@sync_and_async_middleware
def no_store_middleware(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    # Both kinds: the API's long poll is an async view, which must not wait on a thread.
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            return _mark(request, await get_response(request))

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        return _mark(request, get_response(request))

    return middleware
