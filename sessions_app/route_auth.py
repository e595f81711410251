"""Who may pass the router into a session, and what the router adds when they may.

The router (nginx locally, ingress-nginx on Kubernetes) asks before every request to
``/user/<route name>/…``. Only the session's owner passes: signed in in the browser with the
second factor (or with ``Authorization: Bearer`` and a portal token, or an identity provider's
token with its multi-factor claim, as the API accepts), admitted by the access policy and not
suspended, with their session starting or running. The answer then carries the server's
credential for the router to add, and the caller's cookies without the portal's own, so the
user's server never sees portal credentials. Views (``sessions_app.views``) only render this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.request import Request

from accounts_app.api_auth import OidcBearerAuthentication
from accounts_app.policy import access_refusal
from accounts_app.second_factor import second_factor_passed
from portal.api_auth import BearerTokenAuthentication
from sessions_app.models import Session
from sessions_app.selectors import session_routable_for
from sessions_app.spawners import get_spawner
from sessions_app.spawners.base import route_name

NOT_SIGNED_IN = "Sign in to the portal first."
SECOND_FACTOR = "Finish signing in to the portal first."
NOT_YOURS = "This is not your session, or it is not running."

_ROUTE = re.compile(r"^/user/([^/?#]+)/")
# A header value carries printable ASCII; CR or LF would end it (Django refuses to send one that
# holds them: a 500). What else a username holds is percent-encoded, ``%`` included.
_HEADER_SAFE = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) != "%")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Verdict:
    """The forward-auth's answer: 200 with headers for the router, or 401/403 with why."""

    status: int
    message: str = ""
    code: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    username: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200


def _refused(status: int, message: str, code: str) -> Verdict:
    return Verdict(status=status, message=message, code=code)


def _bearer_caller(request: HttpRequest) -> tuple[Any, Verdict | None]:
    """The account of a request with ``Authorization: Bearer …`` as the API sees it, or why
    not. ``(None, None)`` when the request carries no bearer token."""
    drf_request = Request(request)
    for authenticator in (BearerTokenAuthentication(), OidcBearerAuthentication()):
        try:
            found = authenticator.authenticate(drf_request)
        except exceptions.AuthenticationFailed as exc:
            return None, _refused(401, str(exc.detail), "not_authenticated")
        except exceptions.APIException as exc:
            # OidcBearerAuthentication refuses tokens without the multi-factor claim with
            # its own stable code.
            detail = exc.detail
            code = getattr(exc, "default_code", "not_authenticated")
            if isinstance(detail, dict):
                code = str(detail.get("code", code))
                detail = detail.get("detail", detail)
            return None, _refused(exc.status_code, str(detail), code)
        if found is not None:
            return found[0], None
    return None, None


def route_caller(request: HttpRequest) -> tuple[AbstractBaseUser | None, Verdict | None]:
    """Who asks: a bearer token first (explicit, as in the API), else the browser session
    with the second factor passed. Returns the account, or a 401/403 verdict."""
    header = request.headers.get("authorization", "")
    if header.split(" ", 1)[0].lower() == "bearer":
        user, refusal = _bearer_caller(request)
        if refusal is not None or user is not None:
            return user, refusal
    if not request.user.is_authenticated:
        return None, _refused(401, NOT_SIGNED_IN, "not_authenticated")
    if not second_factor_passed(request):
        return None, _refused(401, SECOND_FACTOR, "second_factor_required")
    assert isinstance(request.user, AbstractBaseUser)
    return request.user, None


def without_portal_cookies(header: str) -> str:
    """The ``Cookie`` header minus the portal's session and CSRF cookies (every copy of them:
    a user's own server could set one of the same name on its path), and minus any cookie
    with a control character, which no browser sends and no header may carry."""
    portal_names = {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME}
    kept = []
    for part in header.split(";"):
        name = part.split("=", 1)[0].strip()
        if name and name not in portal_names and not _CONTROL.search(part):
            kept.append(part.strip())
    return "; ".join(kept)


def header_username(username: str) -> str:
    """``X-Portal-User``: the username as it is when it is printable ASCII without ``%``
    (every local one); otherwise percent-encoded UTF-8, so that an identity provider's name
    with CR/LF or beyond ASCII can neither break nor forge a header."""
    return quote(username, safe=_HEADER_SAFE)


def _allowed(session: Session, user: AbstractBaseUser, request: HttpRequest) -> Verdict:
    route = get_spawner().route(session.spawner_state)
    if route is None:
        return _refused(403, NOT_YOURS, "not_routable")
    headers = {
        "Authorization": route.authorization,
        "X-Portal-User": header_username(user.get_username()),
    }
    if route.upstream:
        headers["X-Jupyter-Upstream"] = route.upstream
    cookies = without_portal_cookies(request.headers.get("cookie", ""))
    if cookies:
        headers["Cookie"] = cookies
    return Verdict(status=200, headers=headers, username=user.get_username())


def _judge(request: HttpRequest, session_id: str | None, uri: str | None) -> Verdict:
    user, refusal = route_caller(request)
    if refusal is not None:
        return refusal
    assert user is not None
    policy = access_refusal(user)
    if policy is not None:
        return _refused(403, policy.message, policy.code)
    if uri is not None:
        match = _ROUTE.match(uri)
        if match is None or match.group(1) != route_name(user.get_username()):
            return _refused(403, NOT_YOURS, "not_your_session")
    session = session_routable_for(user, session_id)
    if session is None:
        return _refused(403, NOT_YOURS, "not_your_session")
    return _allowed(session, user, request)


def session_verdict(request: HttpRequest, session_id: str) -> Verdict:
    """For one session's own route (a Kubernetes Ingress names the session in its auth URL)."""
    return _judge(request, session_id, None)


def route_verdict(request: HttpRequest) -> Verdict:
    """For the local router: the route is in the original URI it forwards
    (``X-Original-URI``); the caller's own active session answers for it."""
    return _judge(request, None, request.headers.get("x-original-uri", ""))
