"""The API's answers are JSON, whoever makes them; its query strings are checked as its bodies.

DRF's views answer their own errors as JSON (``portal.api_errors``), and Django's error handlers
do for what never reaches a view. What is left answers with a page or with nothing: a
``require_GET`` view's 405, a middleware's refusal, Django's debug pages. This middleware, near
the top of the chain (outside every middleware that may refuse), turns any such error under
``/api/`` into ``{detail, code}`` with the same status and headers (``Allow``, ``Retry-After``,
``WWW-Authenticate``, …).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from portal.api_errors import error_body, is_api, json_error
from portal.api_parser import form_strings, has_forbidden_characters

#: Headers that describe a page answer's body, not kept by its JSON replacement.
_BODY_HEADERS = {"content-type", "content-length", "content-language", "content-disposition"}


def _is_json(response: HttpResponseBase) -> bool:
    content_type = response.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


class ApiMiddleware:
    """Refuses query strings with NUL (``%00``) under ``/api/`` (400 ``invalid_characters``,
    as ``portal.api_parser`` refuses bodies), and answers every API error as JSON.

    Sync and async, without a thread hop either way (its work is a few string checks): the
    long poll's chain runs on the event loop (``portal/asgi.py``)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._acall(request)
        refusal = _refusal(request)
        if refusal is not None:
            return refusal
        return _as_json(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        refusal = _refusal(request)
        if refusal is not None:
            return refusal
        return _as_json(request, await self.get_response(request))


def _refusal(request: HttpRequest) -> HttpResponse | None:
    if not is_api(request) or not request.META.get("QUERY_STRING"):
        return None
    # Django decodes the query with errors="replace": a lone surrogate cannot get through (its
    # UTF-8 bytes are invalid), NUL can.
    if any(has_forbidden_characters(text) for text in form_strings(request.GET)):
        return json_error(
            400,
            "The query string contains a NUL character, which the portal does not accept.",
            "invalid_characters",
        )
    return None


def _as_json(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    if response.status_code < 400 or not is_api(request) or _is_json(response):
        return response
    body = error_body(response.status_code)
    if response.status_code == 405 and request.method:
        body["detail"] = f'Method "{request.method}" not allowed.'
    answer = json_error(response.status_code, body["detail"], body["code"])
    for name, value in response.items():
        if name.lower() not in _BODY_HEADERS:
            answer[name] = value
    answer.cookies = response.cookies
    return answer
