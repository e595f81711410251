"""The OpenAPI document, behind the same guard as the API, with JSON errors. What it says
beside each view's own answers: ``portal.api_openapi``."""

from __future__ import annotations

from drf_spectacular.views import SpectacularAPIView
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response


class SchemaView(SpectacularAPIView):
    """drf-spectacular's view; its refusals are JSON like every other API error (the
    negotiated renderer would write them as an OpenAPI YAML document)."""

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response
