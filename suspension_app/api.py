"""REST API v1, staff part: suspensions (``/api/v1/admin/suspensions/``), for automation."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import BasePermission, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts_app.permissions import PortalAccess
from accounts_app.ranks import outranks
from portal.api_errors import ApiError, ApiErrorSerializer
from portal.api_staff import permission_denied
from suspension_app.models import LIFT_PERMISSION, Suspension
from suspension_app.selectors import suspension_active_for, suspension_by_id, suspensions_filtered
from suspension_app.serializers import (
    LiftSerializer,
    SuspendSerializer,
    SuspensionQuerySerializer,
    SuspensionSerializer,
)
from suspension_app.services import suspension_impose, suspension_lift


def _staff(request: Request) -> AbstractBaseUser:
    # IsAdminUser has let only staff reach the views.
    return cast(AbstractBaseUser, request.user)


def _not_found(pk: int) -> ApiError:
    return ApiError(
        status.HTTP_404_NOT_FOUND, f"There is no suspension {pk}.", "suspension_not_found"
    )


class _StaffMay(BasePermission):
    """The same model permissions the admin asks for: ``view`` to read, ``add`` to suspend,
    ``lift`` to reinstate (superusers have them all)."""

    perms: dict[str, str] = {}

    def has_permission(self, request: Request, view: Any) -> bool:
        needed = self.perms.get(request.method or "", self.perms.get("*", ""))
        if needed and not request.user.has_perm(needed):
            raise permission_denied(needed)
        return True


class CanViewOrSuspend(_StaffMay):
    perms = {
        "GET": "suspension_app.view_suspension",
        "POST": "suspension_app.add_suspension",
    }


class CanLift(_StaffMay):
    perms = {"*": LIFT_PERMISSION}


class SuspensionListView(generics.ListAPIView[Suspension]):
    """Suspensions, newest first and paginated; staff suspend users here."""

    permission_classes = [PortalAccess, IsAdminUser, CanViewOrSuspend]
    serializer_class = SuspensionSerializer

    @extend_schema(
        parameters=[SuspensionQuerySerializer],
        responses={
            200: SuspensionSerializer(many=True),
            400: ApiErrorSerializer,
            404: OpenApiResponse(ApiErrorSerializer, description="``not_found``: no such page."),
        },
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Suspensions; ``?active=1`` only those in force (0: only lifted), ``?user=<username>``
        only that user's."""
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Suspension]:
        query = SuspensionQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return suspensions_filtered(
            active=query.validated_data.get("active"),
            username=query.validated_data.get("user"),
        )

    @extend_schema(
        request=SuspendSerializer,
        responses={
            200: SuspensionSerializer,
            201: SuspensionSerializer,
            400: ApiErrorSerializer,
            403: ApiErrorSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        """Suspend a user: 201 with the new suspension (their session is stopped and they are
        told by e-mail), or 200 with the suspension already in force.

        Errors: 400 ``unknown_user``, ``own_suspension``, ``invalid`` for a malformed body
        (e.g. a blank reason, evidence that is not an object); 403 ``permission_denied`` for
        a superuser, unless the caller is one too.
        """
        serializer = SuspendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username = serializer.validated_data["user"]
        try:
            user = get_user_model()._default_manager.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            raise ApiError(
                status.HTTP_400_BAD_REQUEST, f"There is no user {username!r}.", "unknown_user"
            ) from None
        if user.is_superuser and not getattr(request.user, "is_superuser", False):
            # As in the admin: a suspended superuser cannot reach it, so only a peer may.
            raise ApiError(
                status.HTTP_403_FORBIDDEN,
                "Only a superuser can suspend a superuser.",
                "permission_denied",
            )
        if outranks(user, request.user):
            # Nor may staff lock out a colleague who holds more than they do.
            raise ApiError(
                status.HTTP_403_FORBIDDEN,
                "You cannot suspend an account that holds permissions you do not hold.",
                "permission_denied",
            )
        # Only for the status code: the service itself returns the suspension in force.
        existing = suspension_active_for(user)
        if existing is not None:
            return Response(SuspensionSerializer(existing).data, status=status.HTTP_200_OK)
        suspension = suspension_impose(
            user=user,
            reason=serializer.validated_data["reason"],
            imposed_by=_staff(request),
            evidence=serializer.validated_data.get("evidence") or {},
        )
        suspension = suspension_by_id(suspension.pk) or suspension
        location = request.build_absolute_uri(reverse("api-admin-suspension", args=[suspension.pk]))
        return Response(
            SuspensionSerializer(suspension).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": location},
        )


class SuspensionDetailView(APIView):
    """One suspension (the address a new suspension's ``Location`` gives)."""

    permission_classes = [PortalAccess, IsAdminUser, CanViewOrSuspend]

    @extend_schema(responses={200: SuspensionSerializer, 404: ApiErrorSerializer})
    def get(self, request: Request, pk: int) -> Response:
        """The suspension, in force or lifted; 404 ``suspension_not_found``."""
        suspension = suspension_by_id(pk)
        if suspension is None:
            raise _not_found(pk)
        return Response(SuspensionSerializer(suspension).data)


class SuspensionLiftView(APIView):
    """Reinstate a suspended user, with the investigation note."""

    permission_classes = [PortalAccess, IsAdminUser, CanLift]

    @extend_schema(
        request=LiftSerializer,
        responses={
            200: SuspensionSerializer,
            400: ApiErrorSerializer,
            404: ApiErrorSerializer,
            409: ApiErrorSerializer,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        """200 with the lifted suspension; the user is told by e-mail (not the note).

        Errors: 400 ``note_required`` for a blank note, ``own_suspension``; 404
        ``suspension_not_found``; 409 ``already_lifted``.
        """
        serializer = LiftSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        suspension = suspension_by_id(pk)
        if suspension is None:
            raise _not_found(pk)
        suspension = suspension_lift(
            suspension=suspension,
            lifted_by=_staff(request),
            note=serializer.validated_data["note"],
        )
        return Response(SuspensionSerializer(suspension).data)
