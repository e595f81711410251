"""REST API v1: environments, the caller's session and their session history."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ApiError, ApiErrorSerializer
from sessions_app.models import Environment, Session
from sessions_app.selectors import (
    environments_launchable,
    session_active_for,
    sessions_for_user,
)
from sessions_app.serializers import (
    EnvironmentSerializer,
    LaunchSerializer,
    SessionQuerySerializer,
    SessionSerializer,
)
from sessions_app.services import LaunchError, session_launch, session_request_stop

_LAUNCH_ERROR_STATUS = {
    "terms_not_accepted": status.HTTP_403_FORBIDDEN,
    "suspended": status.HTTP_403_FORBIDDEN,
    "unknown_environment": status.HTTP_400_BAD_REQUEST,
    "invalid_options": status.HTTP_400_BAD_REQUEST,
}


def _user(request: Request) -> AbstractBaseUser:
    # IsAuthenticated (the default permission) has let only real users reach the views.
    return cast(AbstractBaseUser, request.user)


def no_active_session() -> ApiError:
    return ApiError(status.HTTP_404_NOT_FOUND, "You have no active session.", "no_active_session")


class EnvironmentListView(generics.ListAPIView[Environment]):
    """The environments the caller may launch, with their options. Not paginated: a handful."""

    serializer_class = EnvironmentSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[Environment]:
        return environments_launchable(self.request.user)


class SessionView(APIView):
    """The caller's active session: read it, launch one, stop it."""

    @extend_schema(
        parameters=[SessionQuerySerializer],
        responses={
            200: SessionSerializer,
            400: ApiErrorSerializer,
            404: ApiErrorSerializer,
            429: ApiErrorSerializer,
        },
    )
    def get(self, request: Request) -> Response:
        """The active session; 404 ``no_active_session`` if there is none.

        With ``?wait=N`` (at most 30), answers as soon as the session is running or has ended,
        or after N seconds. Too many waits open at once: 429 ``too_many_waits`` with
        ``Retry-After``.
        """
        # A positive ``wait`` never reaches this method: sessions_app.live answers it without
        # holding a thread. Here: no wait (or 0), checked all the same.
        query = SessionQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        session = session_active_for(_user(request))
        if session is None:
            raise no_active_session()
        return Response(SessionSerializer(session).data)

    @extend_schema(
        request=LaunchSerializer,
        responses={
            200: SessionSerializer,
            201: SessionSerializer,
            400: ApiErrorSerializer,
            403: ApiErrorSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        """Launch a session: 201 with the new one, or 200 with the one already active.

        Errors: 403 ``terms_not_accepted``, 400 ``unknown_environment``, 400
        ``invalid_options``, 400 ``invalid`` / ``parse_error`` for a malformed body.
        """
        serializer = LaunchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            result = session_launch(
                user=_user(request),
                environment_slug=serializer.validated_data["environment"],
                options=serializer.validated_data.get("options"),
            )
        except LaunchError as exc:
            raise ApiError(
                _LAUNCH_ERROR_STATUS.get(exc.code, status.HTTP_400_BAD_REQUEST), str(exc), exc.code
            ) from None
        return Response(
            SessionSerializer(result.session).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )

    @extend_schema(responses={202: SessionSerializer, 404: ApiErrorSerializer})
    def delete(self, request: Request) -> Response:
        """Stop the active session: 202 with it as it is now (stopped, or stopping while the
        server goes down); 404 ``no_active_session`` if there is none."""
        session = session_active_for(_user(request))
        if session is None:
            raise no_active_session()
        # False means the session was already stopping or ended meanwhile: either way the
        # caller's wish holds, and the reloaded row below says how it ended.
        session_request_stop(str(session.pk), Session.Reason.USER_STOPPED)
        session.refresh_from_db()
        return Response(SessionSerializer(session).data, status=status.HTTP_202_ACCEPTED)


class SessionHistoryView(generics.ListAPIView[Session]):
    """The caller's sessions, newest first and paginated, each with its state and reason."""

    serializer_class = SessionSerializer

    def get_queryset(self) -> QuerySet[Session]:
        return sessions_for_user(_user(self.request))
