"""REST API v1, staff part: the queue (``/api/v1/admin/queue/``), to watch it and to move or
remove a waiting session. The same permissions as the admin's: ``view`` to read, ``change`` to
move and remove."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import BasePermission, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts_app.permissions import PortalAccess
from portal.api_errors import ApiError, ApiErrorSerializer
from sessions_app.queue_changes import QueueError, queue_move, queue_remove
from sessions_app.selectors import queue_overview
from sessions_app.serializers import QueueMoveSerializer, QueuePlaceSerializer

VIEW_PERMISSION = "sessions_app.view_session"
CHANGE_PERMISSION = "sessions_app.change_session"

_QUEUE_ERROR_STATUS = {"not_queued": status.HTTP_404_NOT_FOUND}


def _staff(request: Request) -> AbstractBaseUser:
    # IsAdminUser has let only staff reach the views.
    return cast(AbstractBaseUser, request.user)


def _api_error(exc: QueueError) -> ApiError:
    return ApiError(
        _QUEUE_ERROR_STATUS.get(exc.code, status.HTTP_400_BAD_REQUEST), str(exc), exc.code
    )


def _queue_answer() -> Response:
    return Response([QueuePlaceSerializer(place).data for place in queue_overview()])


class CanWatchOrChangeQueue(BasePermission):
    """The session permissions the admin asks for: ``view`` (or ``change``) to read the queue,
    ``change`` to move or remove an entry (superusers have them all)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if request.method in ("GET", "HEAD", "OPTIONS"):
            allowed = user.has_perm(VIEW_PERMISSION) or user.has_perm(CHANGE_PERMISSION)
            needed = VIEW_PERMISSION
        else:
            allowed = user.has_perm(CHANGE_PERMISSION)
            needed = CHANGE_PERMISSION
        if not allowed:
            raise ApiError(
                status.HTTP_403_FORBIDDEN,
                f"You need the permission '{needed}' for this.",
                "permission_denied",
            )
        return True


_PERMISSIONS = [PortalAccess, IsAdminUser, CanWatchOrChangeQueue]


class QueueListView(APIView):
    """The sessions waiting for room, in the order admission takes them. Not paginated: the
    order and the estimates come from the whole queue at once."""

    permission_classes = _PERMISSIONS

    @extend_schema(responses={200: QueuePlaceSerializer(many=True)})
    def get(self, request: Request) -> Response:
        """The queue, first (position 1, the next to be admitted) to last."""
        return _queue_answer()


class QueueEntryView(APIView):
    """One waiting session."""

    permission_classes = _PERMISSIONS

    @extend_schema(responses={204: None, 404: ApiErrorSerializer})
    def delete(self, request: Request, session_id: UUID) -> Response:
        """Remove a session from the queue: it ends as stopped by staff (the owner sees so on
        their session page and may launch again) and those behind it move up.

        Errors: 404 ``not_queued`` when it is not waiting (unknown, ended, admitted or
        running)."""
        try:
            queue_remove(str(session_id), by=_staff(request))
        except QueueError as exc:
            raise _api_error(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class QueueMoveView(APIView):
    """Move a waiting session forward or back."""

    permission_classes = _PERMISSIONS

    @extend_schema(
        request=QueueMoveSerializer,
        responses={
            200: QueuePlaceSerializer(many=True),
            400: ApiErrorSerializer,
            404: ApiErrorSerializer,
        },
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
        try:
            queue_move(str(session_id), serializer.validated_data["steps"], by=_staff(request))
        except QueueError as exc:
            raise _api_error(exc) from None
        return _queue_answer()
