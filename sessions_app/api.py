"""REST API v1: environments, the caller's session and their session history."""

from __future__ import annotations

from typing import cast
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ApiError, ApiErrorSerializer
from sessions_app import api_examples
from sessions_app.models import Environment, Session
from sessions_app.selectors import (
    environments_launchable,
    session_active_for,
    session_of_user,
    sessions_for_user,
)
from sessions_app.serializers import (
    EnvironmentSerializer,
    LaunchSerializer,
    SessionHistorySerializer,
    SessionListQuerySerializer,
    SessionQuerySerializer,
    SessionSerializer,
)
from sessions_app.services import session_launch, session_request_stop


def _user(request: Request) -> AbstractBaseUser:
    # IsAuthenticated (the default permission) has let only real users reach the views.
    return cast(AbstractBaseUser, request.user)


def no_active_session() -> ApiError:
    return ApiError(status.HTTP_404_NOT_FOUND, "You have no active session.", "no_active_session")


def session_location(request: Request, session: Session) -> str:
    """The address of one session (``GET /api/v1/sessions/<id>/``), for ``Location``."""
    return request.build_absolute_uri(reverse("api-session-detail", args=[session.pk]))


@extend_schema_view(get=extend_schema(examples=api_examples.ENVIRONMENTS))
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
            200: OpenApiResponse(
                SessionSerializer,
                description="The active session; with ``wait``, the session waited for as it "
                "is when the wait ends (possibly ended: see the description).",
            ),
            400: OpenApiResponse(ApiErrorSerializer, description="A bad ``wait`` (``invalid``)."),
            404: OpenApiResponse(
                ApiErrorSerializer,
                description="``no_active_session``: no active session (to wait for).",
            ),
            429: OpenApiResponse(
                ApiErrorSerializer,
                description="``too_many_waits`` (with ``Retry-After``): too many waits open "
                "at once; or ``throttled``: too many requests.",
            ),
        },
        examples=api_examples.SESSION_GET,
    )
    def get(self, request: Request) -> Response:
        """The active session; 404 ``no_active_session`` if there is none.

        The long poll, ``?wait=N`` (seconds, at most 30): when the active session is queued
        or starting, the answer waits until it is running or has ended, or N seconds have
        passed. It is then 200 with **the session that was waited for**, as it is at that
        moment: ``running`` (with its ``url``), still ``queued``/``starting`` (time was up),
        or ended: ``failed``, ``stopped`` or ``expired``, with ``reason`` and, in
        ``message``, why (e.g. ``backend_error``, "The server could not be started: …").
        The same session is at ``GET /api/v1/sessions/<id>/`` afterwards. A wait that finds
        no active session is answered at once: 404 ``no_active_session``. Too many waits
        open at once: 429 ``too_many_waits`` with ``Retry-After``.
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
            200: OpenApiResponse(
                SessionSerializer,
                description="A session was already active (queued, starting or running): "
                "that one, whatever was asked for.",
            ),
            201: OpenApiResponse(
                SessionSerializer,
                description="The new session, queued; ``Location`` is its address.",
            ),
            400: OpenApiResponse(
                ApiErrorSerializer,
                description="``unknown_environment``, ``invalid_options``, "
                "``environment_too_large``; ``invalid`` or ``invalid_json`` for a malformed body.",
            ),
            403: OpenApiResponse(
                ApiErrorSerializer,
                description="``terms_not_accepted``: accept the current terms first.",
            ),
            409: OpenApiResponse(
                ApiErrorSerializer,
                description="``still_stopping`` (with ``Retry-After``): the last session is "
                "still stopping; nothing was launched, launch again after that many seconds.",
            ),
        },
        examples=api_examples.SESSION_LAUNCH,
    )
    def post(self, request: Request) -> Response:
        """Launch a session: 201 with the new one (queued; ``Location``: its address), or 200
        with the one already active (queued, starting or running).

        A session that is **stopping** still counts as the caller's one session, but it is not
        handed back: the launch is refused with 409 ``still_stopping`` and ``Retry-After``
        (seconds), and nothing is queued. Launch again after that.
        """
        serializer = LaunchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # A LaunchError rises to the API's error handler (portal.api_errors).
        result = session_launch(
            user=_user(request),
            environment_slug=serializer.validated_data["environment"],
            options=serializer.validated_data.get("options"),
        )
        if not result.created:
            return Response(SessionSerializer(result.session).data)
        return Response(
            SessionSerializer(result.session).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": session_location(request, result.session)},
        )

    @extend_schema(
        responses={
            202: OpenApiResponse(
                SessionSerializer,
                description="The session as it is now: ``stopped`` (a queued one ends at once) "
                "or ``stopping`` while its server goes down.",
            ),
            404: OpenApiResponse(
                ApiErrorSerializer, description="``no_active_session``: nothing to stop."
            ),
        },
        examples=api_examples.SESSION_STOP,
    )
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


@extend_schema_view(
    get=extend_schema(
        parameters=[SessionListQuerySerializer],
        responses={
            200: SessionHistorySerializer(many=True),
            400: OpenApiResponse(
                ApiErrorSerializer,
                description="``invalid``: an unknown ``state``, or a ``page_size`` out of range.",
            ),
            404: OpenApiResponse(ApiErrorSerializer, description="``not_found``: no such page."),
        },
        examples=api_examples.SESSION_LIST,
    )
)
class SessionHistoryView(generics.ListAPIView[Session]):
    """The caller's sessions, newest first and paginated, each with its state and reason, how
    it ended in words, why a failure failed, its server log's last lines and how long it ran
    (``?state=`` only those in one state)."""

    serializer_class = SessionHistorySerializer

    def get_queryset(self) -> QuerySet[Session]:
        query = SessionListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return sessions_for_user(_user(self.request), state=query.validated_data.get("state"))


class SessionDetailView(APIView):
    """One of the caller's sessions, active or ended."""

    @extend_schema(
        responses={
            200: SessionHistorySerializer,
            404: OpenApiResponse(
                ApiErrorSerializer,
                description="``session_not_found``: no such session of the caller's (another "
                "person's sessions are not told apart from unknown ones).",
            ),
        },
        examples=api_examples.SESSION_DETAIL,
    )
    def get(self, request: Request, session_id: UUID) -> Response:
        """The session with its state; once ended, how (``state`` ``stopped``, ``expired`` or
        ``failed``; ``ended_how`` in words), why (``reason``, ``reason_label``, and ``message``;
        for a failure ``failure_detail`` and the last lines of its server's log, ``log_tail``),
        when (``ended_at``) and how long it ran (``duration_seconds``)."""
        session = session_of_user(_user(request), session_id)
        if session is None:
            # Not even the id echoed: the answer is the same for another person's session.
            raise ApiError(
                status.HTTP_404_NOT_FOUND, "You have no such session.", "session_not_found"
            )
        return Response(SessionHistorySerializer(session).data)
