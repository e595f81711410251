"""The API's pages: ``?page=`` and ``?page_size=`` on every list, checked rather than guessed.

DRF's own ``PageNumberPagination`` quietly takes the default for a ``page_size`` it cannot read
and clamps one over its maximum: a script asking for 500 rows gets 100 and may never notice.
Here a ``page_size`` that is not a whole number from 1 to ``MAX_PAGE_SIZE`` is a 400, as the
OpenAPI document says.
"""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

from portal.api_errors import ApiError

#: The most rows one page holds (``?page_size=``): bounds what one request reads and renders.
MAX_PAGE_SIZE = 100


class PortalPagination(PageNumberPagination):
    """Pages of ``PAGE_SIZE`` rows (20), or ``?page_size=`` (1 to ``MAX_PAGE_SIZE``); a page
    that does not exist is a 404 ``not_found``."""

    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request: Request) -> int | None:
        raw = request.query_params.get(self.page_size_query_param)
        if not raw:
            # Empty counts as not given, as for every other query parameter (DRF's fields).
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ApiError(
                status.HTTP_400_BAD_REQUEST,
                f"page_size: give a whole number from 1 to {MAX_PAGE_SIZE}.",
                "invalid",
            )
        return size

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "Which page (1: the first); a page that does not exist is a "
                "404 ``not_found``.",
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Rows per page, 1 to {MAX_PAGE_SIZE} (default: {self.page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
            },
        ]
