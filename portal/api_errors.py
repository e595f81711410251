"""Every API error is JSON with a human-readable ``detail`` and a stable ``code``."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, serializers
from rest_framework.response import Response


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
