"""REST API v1: the caller's storage and its cleanup history."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, cast

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ApiErrorSerializer
from storage_app.models import RemovalRecord
from storage_app.selectors import (
    AreaUsage,
    storage_overview,
    storage_removals,
    storage_warnings_for,
)
from storage_app.serializers import RemovalSerializer, StorageSerializer

RECENT_REMOVALS = 20


def _user(request: Request) -> AbstractBaseUser:
    # PortalAccess (the default permission) has let only real users reach the views.
    return cast(AbstractBaseUser, request.user)


def _area(usage: AreaUsage) -> dict[str, Any]:
    return {**asdict(usage), "over_quota": usage.over_quota}


class StorageView(APIView):
    @extend_schema(
        responses={200: StorageSerializer, 401: ApiErrorSerializer, 403: ApiErrorSerializer}
    )
    def get(self, request: Request) -> Response:
        """The caller's private and scratch usage against their quotas, the date the private
        storage will be deleted if unused, warnings, and the newest entries of the cleanup
        history (all of it: ``removals``)."""
        user = _user(request)
        overview = storage_overview(user)
        removals = storage_removals(user)
        data = {
            "private": _area(overview.private),
            "scratch": _area(overview.scratch),
            "delete_after": overview.delete_after,
            "last_session_at": overview.last_session_at,
            "retention_exempt": overview.retention_exempt,
            "private_deleted_at": overview.private_deleted_at,
            "retention_days": overview.retention_days,
            "warnings": storage_warnings_for(user),
            "removals_count": removals.count(),
            "recent_removals": list(removals[:RECENT_REMOVALS]),
            "removals": request.build_absolute_uri(reverse("api-storage-removals")),
        }
        return Response(StorageSerializer(data).data)


@extend_schema_view(
    get=extend_schema(
        responses={
            200: RemovalSerializer(many=True),
            400: OpenApiResponse(
                ApiErrorSerializer, description="``invalid``: a ``page_size`` out of range."
            ),
            401: ApiErrorSerializer,
            403: ApiErrorSerializer,
            404: OpenApiResponse(ApiErrorSerializer, description="``not_found``: no such page."),
        }
    )
)
class RemovalListView(generics.ListAPIView[RemovalRecord]):
    """The caller's cleanup history: every file a cleanup removed (with its size, modification
    time, the rule that removed it, and when), newest first, paginated."""

    serializer_class = RemovalSerializer

    def get_queryset(self) -> QuerySet[RemovalRecord]:
        return storage_removals(_user(self.request))
