"""The waiting views, async: the API's long poll and the session page's event stream.

Both wait for a session row to change without holding a thread or a database connection:
they subscribe to the session's events (``sessions_app.waiting``), read the row, and sleep on
an ``asyncio.Event`` until a notification or their time is up. Reads and the API's checks run
in Django's sync thread (``sync_to_async``) for a few milliseconds each; the waiting itself
costs a coroutine. Under the ASGI server that runs the web, hundreds of waiting clients leave
the threads to everyone else.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from accounts_app.policy import access_refusal
from portal.client_ip import client_ip
from portal.outage import is_outage, log_outage, outage_body
from sessions_app.api import SessionView, no_active_session
from sessions_app.events import QUEUE
from sessions_app.models import Session
from sessions_app.selectors import (
    session_active_for,
    session_current_for,
    session_of_user,
    session_status_payload,
)
from sessions_app.serializers import SessionQuerySerializer, SessionSerializer
from sessions_app.waiting import SessionEvents, TooManyWaits, session_events, wait_slot

WAITING = (Session.State.QUEUED, Session.State.STARTING)

_T = TypeVar("_T")


def _released(func: Callable[..., _T]) -> Callable[..., Awaitable[_T]]:
    """``func`` run in Django's sync thread, after which its database connection is given back
    (to the pool, with ``DATABASE_POOL_SIZE``): a waiting request holds none."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> _T:
        try:
            return func(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:  # a test's transaction keeps its connection
                connection.close()

    return sync_to_async(run)


#: A client told to come back later (too many waits) is told to wait this long.
RETRY_AFTER_SECONDS = 5
#: The event stream ends after this long; the browser reconnects (and is checked again).
STREAM_SECONDS = 300
#: A comment line this often keeps proxies from closing a quiet stream.
HEARTBEAT_SECONDS = 15


class TooManyWaitsError(exceptions.Throttled):
    default_code = "too_many_waits"

    def __init__(self, detail: str) -> None:
        super().__init__(wait=RETRY_AFTER_SECONDS, detail=detail, code=self.default_code)


# --- the API's long poll: GET /api/v1/session/?wait=N -------------------------------------------

_session_view = SessionView.as_view()


def _waits(request: HttpRequest) -> bool:
    return request.method == "GET" and request.GET.get("wait") not in (None, "", "0")


async def api_session(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """``/api/v1/session/``: the long poll (``GET`` with ``wait``) waits here, without a
    thread; everything else is the DRF view, as before."""
    if _waits(request):
        return await _long_poll(request)
    response: HttpResponse = await sync_to_async(_session_view)(request, *args, **kwargs)
    return response


# The access middleware, the CSRF middleware and the schema generator see the DRF view.
api_session.cls = SessionView  # type: ignore[attr-defined]
api_session.initkwargs = {}  # type: ignore[attr-defined]
api_session.csrf_exempt = True  # type: ignore[attr-defined]
# The web (portal/asgi.py) runs only a long poll on its event loop; the rest on its threads.
api_session.waits = _waits  # type: ignore[attr-defined]
api_session.sync_view = _session_view  # type: ignore[attr-defined]


@dataclass
class _Poll:
    view: SessionView
    request: Request
    user_id: int
    address: str | None
    session_id: str | None
    state: str | None
    seconds: float


def _finish(
    view: SessionView,
    request: Request,
    response: Response | None = None,
    exc: Exception | None = None,
) -> HttpResponse:
    """An answer made the way DRF's own dispatch makes it (errors through the API's handler)."""
    if exc is not None:
        response = view.handle_exception(exc)
    assert response is not None
    finished = view.finalize_response(request, response)
    finished.render()
    return finished


def _begin(request: HttpRequest) -> _Poll | HttpResponse:
    """Authentication, permissions and the query, as the DRF view checks them; then the row."""
    view = SessionView()
    view.setup(request)
    view.args, view.kwargs = (), {}
    drf_request = view.initialize_request(request)
    view.request = drf_request
    view.headers = view.default_response_headers
    try:
        view.initial(drf_request)
        query = SessionQuerySerializer(data=drf_request.query_params)
        query.is_valid(raise_exception=True)
        session = session_active_for(drf_request.user)
    except Exception as exc:  # noqa: BLE001 - answered as the DRF view answers it
        return _finish(view, drf_request, exc=exc)
    return _Poll(
        view=view,
        request=drf_request,
        user_id=int(drf_request.user.pk or 0),
        address=client_ip(request),
        session_id=str(session.pk) if session else None,
        state=session.state if session else None,
        seconds=float(query.validated_data.get("wait") or 0),
    )


def _state_of(session_id: str) -> str | None:
    return Session.objects.filter(pk=session_id).values_list("state", flat=True).first()


def _answer(poll: _Poll) -> HttpResponse:
    """The session the poll found, as it is now: ended while it waited included (200 with its
    end state and reason, the contract of ``SessionView.get``), not a 404 that would leave the
    client to guess what became of it."""
    session = (
        session_of_user(cast(AbstractBaseUser, poll.request.user), poll.session_id)
        if poll.session_id is not None
        else None
    )
    if session is None:
        return _finish(poll.view, poll.request, exc=no_active_session())
    return _finish(poll.view, poll.request, Response(SessionSerializer(session).data))


async def _wait_settled(hub: SessionEvents, session_id: str, seconds: float) -> None:
    """Until the session is neither queued nor starting, or ``seconds`` have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with hub.subscription(session_id) as changed:
        while True:
            changed.clear()  # before the read: a change after it sets the event again
            if await _released(_state_of)(session_id) not in WAITING:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await hub.wait(changed, remaining)


async def _long_poll(request: HttpRequest) -> HttpResponse:
    begun = await _released(_begin)(request)
    if isinstance(begun, HttpResponse):
        return begun
    if begun.session_id is not None and begun.state in WAITING and begun.seconds > 0:
        hub = session_events()
        try:
            with wait_slot(f"user:{begun.user_id}", begun.address):
                await _wait_settled(hub, begun.session_id, begun.seconds)
        except TooManyWaits as exc:
            error = TooManyWaitsError(str(exc))
            response: HttpResponse = await _released(_finish)(begun.view, begun.request, exc=error)
            return response
    answer: HttpResponse = await _released(_answer)(begun)
    return answer


# --- the session page's event stream: GET /session/events/ --------------------------------------


def _page_status(user: AbstractBaseUser) -> tuple[str, dict[str, Any]]:
    """What the page shows now: ``status`` (the JSON of /session/status/), ``none`` (no session
    at all) or ``refused`` (suspended or no longer admitted: the page shows ``detail``)."""
    refusal = access_refusal(user)
    if refusal is not None:
        return "refused", {"detail": refusal.message, "code": refusal.code}
    session = session_current_for(user)
    if session is None:
        return "none", {"detail": "You have no session.", "code": "no_session"}
    return "status", session_status_payload(session, shared=True)


def _nothing() -> None:
    return None


def _event(kind: str, payload: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(payload)}\n\n"


def _shown(payload: dict[str, Any]) -> dict[str, Any]:
    # The countdown runs in the page: a new figure for the time left alone is not news.
    return {key: value for key, value in payload.items() if key != "remaining_seconds"}


async def _stream(
    request: HttpRequest, user: AbstractBaseUser, address: str | None
) -> AsyncIterator[str]:
    hub = session_events()
    slot = wait_slot(f"user:{user.pk}", address)
    try:
        slot.__enter__()
    except TooManyWaits as exc:
        yield _event("busy", {"detail": str(exc), "code": "too_many_waits"})
        return
    try:
        yield f"retry: {RETRY_AFTER_SECONDS * 1000}\n\n"
        kind, payload = await _released(_page_status)(user)
        if kind != "status" or not payload["active"]:
            yield _event(kind, payload)
            return
        session_id = payload["id"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STREAM_SECONDS
        last: dict[str, Any] | None = None
        async with hub.subscription(session_id, QUEUE) as changed:
            while True:
                changed.clear()
                kind, payload = await _released(_page_status)(user)
                if kind != "status":
                    yield _event(kind, payload)
                    return
                if _shown(payload) != last:
                    last = _shown(payload)
                    yield _event("status", payload)
                if payload["id"] != session_id or not payload["active"]:
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    # A planned end, not a failure: the page opens the next stream at once
                    # (an "error" would show "reconnecting" and ask the status call first).
                    yield _event("reconnect", {"detail": "Open the stream again."})
                    return
                if not await hub.wait(changed, min(HEARTBEAT_SECONDS, remaining)):
                    yield ": keep-alive\n\n"
    except Exception as exc:
        if not is_outage(exc):
            raise
        # The stream's 200 is sent: it ends with the API's 503 body as an event instead, and
        # the browser reconnects after ``retry`` (answered 503 while the outage lasts).
        log_outage(request, exc)
        yield _event("unavailable", outage_body())
    finally:
        slot.__exit__(None, None, None)


@login_required
@require_GET
@never_cache
async def session_events_stream(request: HttpRequest) -> StreamingHttpResponse:
    """Server-sent events of the user's session: one ``status`` event (the JSON of
    /session/status/) at once and one at each change, ending after one that is no longer
    active; ``refused`` (suspended or no longer admitted: ``detail`` says why, the page shows
    it) or ``none`` (no session at all) when there is nothing to follow; keep-alive comments in
    between; ``unavailable`` (the API's 503 body) when the database goes away meanwhile;
    ``busy`` when the person has too many waits open. After ``STREAM_SECONDS`` the stream
    ends with ``reconnect``: the page opens the next one, which passes the page's checks
    again."""
    user = await request.auser()
    assert isinstance(user, AbstractBaseUser)
    # The page's checks (middleware) used a connection: the stream must not keep it.
    await _released(_nothing)()
    return StreamingHttpResponse(
        _stream(request, user, client_ip(request)),
        content_type="text/event-stream",
        # nginx (the router, ingress-nginx) passes each event on at once.
        headers={"X-Accel-Buffering": "no"},
    )
