"""Web pages of the sessions: the launcher, the session page, its status JSON, stop, and the
user's own usage."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render, resolve_url
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts_app.access import public_view
from portal.client_ip import client_ip
from sessions_app.charts import stacked_bar_chart
from sessions_app.forms import LaunchForm, environment_choices
from sessions_app.models import Session
from sessions_app.route_auth import Verdict, route_verdict, session_verdict
from sessions_app.selectors import (
    environments_launchable,
    session_active_for,
    session_current_for,
    session_status_payload,
)
from sessions_app.services import (
    LaunchError,
    TermsAgreement,
    session_launch,
    session_request_stop,
)
from sessions_app.usage import usage_range, user_usage
from storage_app.selectors import storage_overview, storage_warnings_for
from terms_app.rendering import render_terms_markdown
from terms_app.selectors import terms_current, terms_has_accepted
from terms_app.services import TermsError

if TYPE_CHECKING:  # a type only: views reach other apps through services and selectors
    from terms_app.models import TermsVersion

STALE_TERMS_MESSAGE = (
    "The terms of use changed while you were reading them: please read the new version "
    "and tick “I agree to the terms of use” again."
)


def _user(request: HttpRequest) -> AbstractBaseUser:
    # The views below are all behind login_required.
    assert isinstance(request.user, AbstractBaseUser)
    return request.user


def _launcher_page(
    request: HttpRequest,
    form: LaunchForm,
    terms: TermsVersion | None,
    terms_needed: bool,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    environments = list(environments_launchable(request.user))
    posted = request.POST if request.method == "POST" else None
    selected = posted.get("environment", "") if posted else ""
    if not selected and environments:
        selected = environments[0].slug
    context = {
        "form": form,
        "error": error,
        "choices": environment_choices(environments, posted),
        "selected": selected,
        "terms": terms,
        "terms_html": render_terms_markdown(terms.body) if terms else "",
        "terms_needed": terms_needed,
        "storage_warnings": storage_warnings_for(request.user),
    }
    return render(request, "sessions/launcher.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def launcher(request: HttpRequest) -> HttpResponse:
    """Pick an environment, agree to the terms, launch; or go back into the active session."""
    user = _user(request)
    if session_active_for(user) is not None:
        # One session per user: launching again means going back into it.
        return redirect("session")
    terms = terms_current()
    terms_needed = terms is not None and not terms_has_accepted(user, terms)
    needed_version = terms.version if terms is not None and terms_needed else None

    if request.method == "GET":
        form = LaunchForm(current_terms_version=needed_version)
        return _launcher_page(request, form, terms, terms_needed)

    form = LaunchForm(request.POST, current_terms_version=needed_version)
    if not form.is_valid():
        error = " ".join(str(e) for errors in form.errors.values() for e in errors)
        return _launcher_page(request, form, terms, terms_needed, error, status=400)
    agreement = (
        TermsAgreement(
            version=form.cleaned_data["terms_version"],
            ip_address=client_ip(request),
            user_agent=request.headers.get("user-agent", ""),
        )
        if terms_needed
        else None
    )
    try:
        result = session_launch(
            user=user,
            environment_slug=form.cleaned_data["environment"],
            options=form.submitted_options(),
            agreement=agreement,
        )
    except TermsError as exc:
        # Re-read: a newer version may have been published since the page was shown.
        terms = terms_current()
        message = STALE_TERMS_MESSAGE if exc.code == "terms_version_stale" else str(exc)
        return _launcher_page(request, form, terms, terms is not None, message, status=400)
    except LaunchError as exc:
        return _launcher_page(request, form, terms, terms_needed, str(exc), status=400)
    if not result.created:
        messages.info(request, "You already have a session: here it is.")
    return redirect("session")


def _format_duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


@login_required
@require_GET
@never_cache
def session_page(request: HttpRequest) -> HttpResponse:
    """The user's session: progress while it starts, the link and time left while it runs,
    and how it ended."""
    session = session_current_for(_user(request))
    context: dict[str, Any] = {
        "session": session,
        "storage_warnings": storage_warnings_for(request.user),
    }
    if session is not None:
        status = session_status_payload(session)
        remaining = status["remaining_seconds"]
        warning_seconds = settings.SESSION_WARNING_MINUTES * 60
        context.update(
            status=status,
            remaining_display=_format_duration(remaining) if remaining is not None else "",
            warning_seconds=warning_seconds,
            warning_minutes=settings.SESSION_WARNING_MINUTES,
            warn=remaining is not None and remaining <= warning_seconds,
        )
    return render(request, "sessions/session.html", context)


@login_required
@require_GET
@never_cache
def session_status(request: HttpRequest) -> JsonResponse:
    """The status call: state (as people are told it), progress and time left, as JSON. The
    session page asks it when its event stream breaks; JupyterLab's status bar polls it."""
    session = session_current_for(_user(request))
    if session is None:
        return JsonResponse({"detail": "You have no session.", "code": "no_session"}, status=404)
    return JsonResponse(session_status_payload(session))


@login_required
@require_POST
def session_stop(request: HttpRequest) -> HttpResponse:
    """Stop the user's active session, then show the session page as it winds down."""
    session = session_active_for(_user(request))
    if session is None:
        messages.info(request, "You have no running session to stop.")
    elif session_request_stop(str(session.id), Session.Reason.USER_STOPPED):
        messages.success(request, "Your session is being stopped.")
    else:
        messages.info(request, "Your session is already stopping.")
    return redirect("session")


@login_required
@require_GET
def usage_page(request: HttpRequest) -> HttpResponse:
    """The user's own sessions and CPU-hours per day over the last 30 days, and their storage."""
    user = _user(request)
    span = usage_range(timezone.now())
    days = user_usage(user, span)
    labels = [f"{row.day:%d %b}" for row in days]
    context = {
        "range": span,
        "days": [row for row in days if row.sessions_started or row.cpu_hours],
        "total_sessions": sum(row.sessions_started for row in days),
        "total_cpu_hours": sum(row.cpu_hours for row in days),
        "cpu_chart": stacked_bar_chart(
            labels, {"CPU-hours": [row.cpu_hours for row in days]}, "Your CPU-hours per day"
        ),
        "storage": storage_overview(user),
    }
    return render(request, "sessions/usage.html", context)


def _forward_auth_response(verdict: Verdict) -> HttpResponse:
    """The answer a router reads: only the status and, when allowed, the headers."""
    response = HttpResponse(
        verdict.message, status=verdict.status, content_type="text/plain; charset=utf-8"
    )
    for name, value in verdict.headers.items():
        response[name] = value
    return response


@public_view  # it answers 401 and 403 itself: the ingress controller wants no redirect
@never_cache
@require_GET
def session_route_auth(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """Forward-auth for one session's route (ingress-nginx's ``auth-url``).

    The ingress controller asks before every request to ``/user/<name>/…`` (websocket
    upgrades included), passing on the browser's cookies and Authorization header: 200 lets
    it through with ``Authorization: token …`` for the server (``auth-response-headers``),
    401 sends the browser to sign in, 403 refuses (:mod:`sessions_app.route_auth`).
    """
    return _forward_auth_response(session_verdict(request, str(session_id)))


@public_view  # answered to the local router (nginx's auth_request) only, never redirected
@never_cache
@require_GET
def route_auth(request: HttpRequest) -> HttpResponse:
    """Forward-auth for the local router: the route is in ``X-Original-URI``; when the caller
    may pass, the answer also names the server's socket (``X-Jupyter-Upstream``)."""
    return _forward_auth_response(route_verdict(request))


def _wants_json(request: HttpRequest, uri: str) -> bool:
    accept = request.headers.get("accept", "")
    return "/api/" in uri.split("?", 1)[0] or (
        "application/json" in accept and "text/html" not in accept
    )


@public_view
@never_cache
@require_GET
def route_refusal(request: HttpRequest) -> HttpResponse:
    """What the local router shows when it refused a request into a session: browsers that
    are not signed in go to the sign-in page and come back; programs get the API's JSON
    errors; people get a page that says why."""
    verdict = route_verdict(request)
    uri = request.headers.get("x-original-uri", "")
    if verdict.allowed:
        # Signed in or resumed between the two questions: the next try passes.
        response = HttpResponse("Please try again.", status=503, content_type="text/plain")
        response["Retry-After"] = "1"
        return response
    method = request.headers.get("x-original-method", "GET")
    browser = "text/html" in request.headers.get("accept", "")
    if verdict.status == 401 and browser and method in ("GET", "HEAD"):
        return redirect(f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': uri})}")
    if _wants_json(request, uri):
        response = JsonResponse(
            {"detail": verdict.message, "code": verdict.code}, status=verdict.status
        )
        if verdict.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    if browser:
        return render(
            request,
            "sessions/route_refused.html",
            {"verdict": verdict},
            status=verdict.status,
        )
    return HttpResponse(verdict.message, status=verdict.status, content_type="text/plain")
