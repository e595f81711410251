"""What the OpenAPI document says beside each view's own answers.

Each view documents its own answers (its bodies, its refusals, their examples). Beside them,
any operation can meet the answers of the layers around every view, and the document says so
(:class:`AutoSchema`): 401 from authentication (a bad or revoked token, even where none is
required), 403 from the permissions (the second factor, the terms, a suspension, staff only),
429 from the request rates, 400 from the input checks (``portal.api_parser`` refuses NUL in
any query string, every body that is not clean JSON or form data), 404 where the path names an
object or a list has pages, 406 when the client accepts no JSON, 413 and 415 where a body is
read, 503 while the database or the cache does not answer. Every answer has a description.

Apart from ``portal.api_schema`` (the document's view): drf-spectacular's view module applies
``extend_schema`` when it loads, which loads ``DEFAULT_SCHEMA_CLASS`` (this module's) first.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.conf import settings
from drf_spectacular import openapi
from drf_spectacular.plumbing import ComponentRegistry
from rest_framework.permissions import AllowAny
from rest_framework.request import Request

from portal.api_errors import ApiErrorSerializer

_RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer", "minimum": 0},
        "description": "Seconds to wait before trying again.",
    }
}
_LOCATION = {
    "Location": {
        "schema": {"type": "string"},
        "description": "The address of what was created (every 201 under /api/ has one).",
    }
}
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "schema": {"type": "string"},
        "description": "How to authenticate: `Bearer`.",
    }
}

#: What each generic answer means, and the descriptions of answers a view left without one.
DESCRIPTIONS = {
    "200": "OK.",
    "201": "Created.",
    "202": "Accepted.",
    "204": "No content.",
    "400": "The request is malformed: a query or body that fails validation, is not valid "
    "JSON or form data (`invalid_json`), nests deeper than 32 levels (`too_deep`), or holds a "
    "NUL character or an unpaired surrogate (`invalid_characters`).",
    "401": "Not authenticated: no credentials, or a token that is unknown, revoked or expired "
    "(`not_authenticated`, `authentication_failed`).",
    "403": "Authenticated, but not allowed: the second factor is not passed, the access policy "
    "refuses, the current terms are not accepted, the account is suspended, or the operation "
    "needs a staff permission the caller lacks.",
    "404": "No such object, or not the caller's, or no such page of a list (`not_found`); a "
    "path parameter of the wrong shape is also 404.",
    "406": "The `Accept` header (or `?format=`) asks for something other than JSON "
    "(`not_acceptable`).",
    "409": "The request conflicts with the object's current state.",
    "413": "The request body is larger than the portal accepts (`too_large`).",
    "415": "The request body is neither JSON nor form data (`unsupported_media_type`).",
    "429": "Too many requests from this account or address (`throttled`), or too many waits "
    "at once (`too_many_waits`): try again after `Retry-After` seconds.",
    "503": "The portal's database or cache does not answer (`unavailable`), or the identity "
    "provider could not check a token: try again after `Retry-After` seconds.",
}
_BODY_METHODS = ("POST", "PUT", "PATCH")
# Statuses whose generic causes a view's own description does not list.
_ALSO_GENERIC = ("400", "403")


def _description(status: str) -> str:
    if status in DESCRIPTIONS:
        return DESCRIPTIONS[status]
    try:
        return HTTPStatus(int(status)).phrase + "."
    except ValueError:  # "default", "2XX"
        return "An answer of this class."


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema of a view, with the answers of the layers around it; a view's
    own documentation of a status comes first."""

    def get_operation(
        self,
        path: str,
        path_regex: str,
        path_prefix: str,
        method: str,
        registry: ComponentRegistry,
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses: dict[str, Any] = operation.setdefault("responses", {})
        for status, headers in self._generic_statuses(path, operation).items():
            if status not in responses:
                responses[status] = self._error_response(status, headers)
            elif headers:
                responses[status].setdefault("headers", {}).update(headers)
        for status, response in responses.items():
            if not response.get("description"):
                response["description"] = _description(status)
            elif status in _ALSO_GENERIC and _description(status) not in response["description"]:
                # The view's own codes, then what the layers around every view answer too.
                response["description"] += " Also, as everywhere: " + _description(status)
        if "201" in responses:
            responses["201"].setdefault("headers", {}).update(_LOCATION)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _generic_statuses(self, path: str, operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The statuses the layers around the view can answer, with their headers."""
        statuses: dict[str, dict[str, Any]] = {"400": {}, "406": {}, "503": dict(_RETRY_AFTER)}
        if self.view.get_authenticators():
            statuses["401"] = dict(_WWW_AUTHENTICATE)
        if any(not isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            statuses["403"] = {}
        if self.view.get_throttles():
            statuses["429"] = dict(_RETRY_AFTER)
        pages = any(
            parameter.get("in") == "query" and parameter.get("name") == "page"
            for parameter in operation.get("parameters", [])
        )
        if "{" in path or pages:  # a page past the last one is DRF's 404 "Invalid page"
            statuses["404"] = {}
        if self.method in _BODY_METHODS or "requestBody" in operation:
            statuses["413"] = {}
            statuses["415"] = {}
        return statuses

    def _error_response(self, status: str, headers: dict[str, Any]) -> dict[str, Any]:
        component = self.resolve_serializer(ApiErrorSerializer, "response")
        response: dict[str, Any] = {
            "description": _description(status),
            "content": {"application/json": {"schema": component.ref}},
        }
        if headers:
            response["headers"] = headers
        return response


def only_slashed_paths(
    endpoints: list[tuple[str, str, str, Any]], **kwargs: Any
) -> list[tuple[str, str, str, Any]]:
    """A PREPROCESSING_HOOK: every endpoint answers with and without its trailing slash
    (``portal.urls``); the document names the slashed form only."""
    return [endpoint for endpoint in endpoints if endpoint[0].endswith("/")]


def add_servers(
    result: dict[str, Any], generator: Any, request: Request | None, public: bool, **kwargs: Any
) -> dict[str, Any]:
    """A POSTPROCESSING_HOOK: ``servers`` is the portal that served the document (its public
    address when it is generated offline, ``manage.py spectacular``)."""
    url = request.build_absolute_uri("/") if request is not None else settings.PORTAL_PUBLIC_URL
    result["servers"] = [{"url": url.rstrip("/"), "description": "This portal."}]
    return result
