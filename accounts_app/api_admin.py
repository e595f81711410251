"""REST API v1, staff part: users (``/api/v1/admin/users/``), with their suspension and their
use of the service. Staff read it with the user ``view`` permission (or ``change``), as the
admin's list of users."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts_app.permissions import PortalAccess
from accounts_app.staff_selectors import users_for_staff, users_hours
from accounts_app.staff_serializers import AdminUserSerializer, UserQuerySerializer
from portal.api_errors import ApiErrorSerializer
from portal.api_staff import StaffMay
from sessions_app.usage import UsageRange, usage_range


class CanViewUsers(StaffMay):
    """The user permissions the admin's list of users asks for: ``view`` (or ``change``)."""

    view = "auth.view_user"
    change = "auth.change_user"  # only GET here: others are a 405 for those who hold it


_EXAMPLE_USER = {
    "id": 7,
    "username": "ann",
    "email": "ann@example.org",
    "first_name": "Ann",
    "last_name": "Lee",
    "is_active": True,
    "is_staff": False,
    "is_superuser": False,
    "date_joined": "2026-01-12T08:30:00Z",
    "last_login": "2026-03-02T08:59:12Z",
    "suspended": True,
    "suspension": {
        "id": 3,
        "reason": "Scratch cleanup circumvented.",
        "since": "2026-03-01T17:00:00Z",
    },
    "active_session": None,
    "usage": {
        "days": 30,
        "sessions_in_range": 9,
        "sessions_total": 41,
        "cpu_hours": 72.5,
        "memory_gb_hours": 580.0,
        "private_bytes": 2147483648,
        "scratch_bytes": 0,
    },
}


@extend_schema_view(
    get=extend_schema(
        parameters=[UserQuerySerializer],
        responses={
            200: AdminUserSerializer(many=True),
            400: OpenApiResponse(
                ApiErrorSerializer,
                description="``invalid``: a bad filter, ``days`` not from 1 to 92, or a "
                "``page_size`` out of range.",
            ),
            403: OpenApiResponse(
                ApiErrorSerializer,
                description="``permission_denied``: not staff, or without the user ``view`` "
                "permission.",
            ),
            404: OpenApiResponse(ApiErrorSerializer, description="``not_found``: no such page."),
        },
        examples=[
            # One item: drf-spectacular puts it in a page of the list.
            OpenApiExample(
                "A suspended user", value=_EXAMPLE_USER, response_only=True, status_codes=["200"]
            )
        ],
    )
)
class AdminUserListView(generics.ListAPIView[Any]):
    """Every user by username, paginated, with their suspension in force (if any), their
    active session (if any), the sessions they launched and the CPU- and memory-GB-hours they
    used in the last ``days`` UTC days, and their storage at its latest measurement. Filters:
    ``?suspended=``, ``?search=`` (username or e-mail)."""

    permission_classes = [PortalAccess, IsAdminUser, CanViewUsers]
    serializer_class = AdminUserSerializer

    @cached_property
    def _query(self) -> tuple[UsageRange, dict[str, Any]]:
        # Once per request: the list and the figures of its page cover the same days.
        query = UserQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return usage_range(timezone.now(), query.validated_data["days"]), query.validated_data

    def get_queryset(self) -> QuerySet[Any]:
        span, query = self._query
        return users_for_staff(span, suspended=query.get("suspended"), search=query.get("search"))

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        span, _ = self._query
        page = self.paginate_queryset(self.get_queryset()) or []
        context = {"days": len(span.days), "hours": users_hours(span, page)}
        return self.get_paginated_response(
            AdminUserSerializer(page, many=True, context=context).data
        )
