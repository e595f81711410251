"""REST API v1, staff part: sessions (``/api/v1/admin/sessions/``: list, filter, stop one), the
queue (``/api/v1/admin/queue/``: watch it, move or remove a waiting session) and usage
(``/api/v1/admin/usage/``). The same permissions as the admin's: the session ``view``
permission to read, ``change`` to stop, move and remove."""

from __future__ import annotations

from typing import cast
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts_app.permissions import PortalAccess
from portal.api_errors import ApiErrorSerializer
from portal.api_staff import StaffMay
from sessions_app import api_admin_examples as examples
from sessions_app.models import Session
from sessions_app.queue_changes import queue_move, queue_remove
from sessions_app.selectors import queue_overview, sessions_filtered
from sessions_app.serializers import (
    AdminSessionQuerySerializer,
    AdminSessionSerializer,
    QueueMoveSerializer,
    QueuePlaceSerializer,
    UsageQuerySerializer,
    UsageSerializer,
)
from sessions_app.staff_stop import session_stop_by_staff
from sessions_app.usage import usage_range, usage_report

VIEW_PERMISSION = "sessions_app.view_session"
CHANGE_PERMISSION = "sessions_app.change_session"


def _staff(request: Request) -> AbstractBaseUser:
    # IsAdminUser has let only staff reach the views.
    return cast(AbstractBaseUser, request.user)


def _queue_answer() -> Response:
    return Response([QueuePlaceSerializer(place).data for place in queue_overview()])


class CanWatchOrChangeSessions(StaffMay):
    """The session permissions the admin asks for: ``view`` (or ``change``) to read sessions,
    the queue and usage, ``change`` to stop, move or remove (superusers have them all)."""

    view = VIEW_PERMISSION
    change = CHANGE_PERMISSION


_PERMISSIONS = [PortalAccess, IsAdminUser, CanWatchOrChangeSessions]

_NEEDS_VIEW = OpenApiResponse(
    ApiErrorSerializer,
    description="``permission_denied``: not staff, or without the session ``view`` permission.",
)
_NEEDS_CHANGE = OpenApiResponse(
    ApiErrorSerializer,
    description="``permission_denied``: not staff, or without the session ``change`` permission.",
)


@extend_schema_view(
    get=extend_schema(
        parameters=[AdminSessionQuerySerializer],
        responses={
            200: AdminSessionSerializer(many=True),
            400: OpenApiResponse(
                ApiErrorSerializer,
                description="``invalid``: an unknown ``state``, a blank filter, or a "
                "``page_size`` out of range.",
            ),
            403: _NEEDS_VIEW,
            404: OpenApiResponse(ApiErrorSerializer, description="``not_found``: no such page."),
        },
        examples=examples.SESSION_LIST,
    )
)
class AdminSessionListView(generics.ListAPIView[Session]):
    """Everyone's sessions, newest first and paginated: whose, which environment, where each
    stands and how it ended. Filters: ``?state=``, ``?active=``, ``?user=`` (username),
    ``?environment=`` (slug). Never a server's address or back-end state."""

    permission_classes = _PERMISSIONS
    serializer_class = AdminSessionSerializer

    def get_queryset(self) -> QuerySet[Session]:
        query = AdminSessionQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return sessions_filtered(
            state=query.validated_data.get("state"),
            active=query.validated_data.get("active"),
            username=query.validated_data.get("user"),
            environment=query.validated_data.get("environment"),
        )


class AdminSessionStopView(APIView):
    """Stop one user's session."""

    permission_classes = _PERMISSIONS

    @extend_schema(
        request=None,
        responses={
            202: OpenApiResponse(
                AdminSessionSerializer,
                description="The session as it is now: ``stopped`` (a queued one ends at "
                "once) or ``stopping`` while its server goes down; reason ``staff_stopped``.",
            ),
            403: _NEEDS_CHANGE,
            404: OpenApiResponse(
                ApiErrorSerializer, description="``session_not_found``: no such session."
            ),
            409: OpenApiResponse(
                ApiErrorSerializer, description="``session_ended``: it has already ended."
            ),
        },
        examples=examples.SESSION_STOP,
    )
    def post(self, request: Request, session_id: UUID) -> Response:
        """Stop the session as staff (its owner sees "stopped by staff"); recorded in the
        admin's history of the session. A session already stopping answers 202 as it is."""
        session = session_stop_by_staff(str(session_id), by=_staff(request))
        return Response(AdminSessionSerializer(session).data, status=status.HTTP_202_ACCEPTED)


class UsageView(APIView):
    """Usage figures: what the admin's usage page shows, as JSON."""

    permission_classes = _PERMISSIONS

    @extend_schema(
        parameters=[UsageQuerySerializer],
        responses={
            200: UsageSerializer,
            400: OpenApiResponse(
                ApiErrorSerializer, description="``invalid``: ``days`` not from 1 to 92."
            ),
            403: _NEEDS_VIEW,
        },
        examples=examples.USAGE,
    )
    def get(self, request: Request) -> Response:
        """Sessions started, CPU- and memory-GB-hours per UTC day and environment, queue
        waits, failures by reason, the top users by CPU-hours and storage totals, over the
        last ``days`` UTC days (today included)."""
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        report = usage_report(usage_range(timezone.now(), query.validated_data["days"]))
        return Response(UsageSerializer(report).data)


class QueueListView(APIView):
    """The sessions waiting for room, in the order admission takes them. Not paginated: the
    order and the estimates come from the whole queue at once."""

    permission_classes = _PERMISSIONS

    @extend_schema(
        responses={
            200: OpenApiResponse(
                QueuePlaceSerializer(many=True),
                description="The waiting sessions, first to last (an empty list: none).",
            ),
            403: _NEEDS_VIEW,
        }
    )
    def get(self, request: Request) -> Response:
        """The queue, first (position 1, the next to be admitted) to last."""
        return _queue_answer()


class QueueEntryView(APIView):
    """One waiting session."""

    permission_classes = _PERMISSIONS

    @extend_schema(
        responses={
            204: OpenApiResponse(description="Removed: it ended as stopped by staff."),
            403: _NEEDS_CHANGE,
            404: OpenApiResponse(
                ApiErrorSerializer, description="``not_queued``: it is not waiting."
            ),
        }
    )
    def delete(self, request: Request, session_id: UUID) -> Response:
        """Remove a session from the queue: it ends as stopped by staff (the owner sees so on
        their session page and may launch again) and those behind it move up.

        Errors: 404 ``not_queued`` when it is not waiting (unknown, ended, admitted or
        running)."""
        queue_remove(str(session_id), by=_staff(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class QueueMoveView(APIView):
    """Move a waiting session forward or back."""

    permission_classes = _PERMISSIONS

    @extend_schema(
        request=QueueMoveSerializer,
        responses={
            200: OpenApiResponse(
                QueuePlaceSerializer(many=True), description="The queue in its new order."
            ),
            400: OpenApiResponse(
                ApiErrorSerializer,
                description="``invalid``: bad ``steps``; ``boost_limit``: beyond ±100.",
            ),
            403: _NEEDS_CHANGE,
            404: OpenApiResponse(
                ApiErrorSerializer, description="``not_queued``: it is not waiting."
            ),
        },
        examples=examples.QUEUE_MOVE,
    )
    def post(self, request: Request, session_id: UUID) -> Response:
        """Change the session's boost by ``steps`` (each step is worth QUEUE_AGING_MINUTES of
        waiting); 200 with the queue in its new order. The entry may have left it already:
        the move asks for an admission pass.

        Errors: 400 ``invalid`` for steps that are not a whole number from -10 to 10 other
        than 0, ``boost_limit`` for a boost beyond ±100; 404 ``not_queued`` when the session
        is not waiting."""
        serializer = QueueMoveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        queue_move(str(session_id), serializer.validated_data["steps"], by=_staff(request))
        return _queue_answer()
