"""DRF permissions: the API applies the pages' policy itself, not only through middleware."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request

from accounts_app.api_auth import OidcBearerAuthentication
from accounts_app.oidc import oidc_session_stale
from accounts_app.policy import access_refusal
from accounts_app.second_factor import second_factor_passed
from portal.api_auth import BearerTokenAuthentication
from portal.api_errors import ApiError

SECOND_FACTOR_MESSAGE = (
    "Your sign-in has not passed the second factor yet: enter a code from your "
    "authenticator app on the portal first."
)


def request_passed_second_factor(request: Request) -> bool:
    """Portal tokens are made from sessions that passed it; provider tokens are only accepted
    with the provider's multi-factor claim; a browser session must have passed it."""
    authenticator = request.successful_authenticator
    if isinstance(authenticator, BearerTokenAuthentication | OidcBearerAuthentication):
        return True
    return second_factor_passed(request._request)


class PortalAccess(permissions.BasePermission):
    """Signed in, second factor passed, admitted by the access policy, not suspended."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if user is None or not user.is_authenticated:
            return False  # DRF answers 401 with the authentication challenge
        if not request_passed_second_factor(request):
            raise ApiError(403, SECOND_FACTOR_MESSAGE, "second_factor_required")
        if isinstance(
            request.successful_authenticator, SessionAuthentication
        ) and oidc_session_stale(request._request):
            raise ApiError(
                403,
                "Your sign-in needs to be confirmed by the identity provider again: open any "
                "portal page, then retry.",
                "reauthentication_required",
            )
        refusal = access_refusal(user)
        if refusal is not None:
            raise ApiError(403, refusal.message, refusal.code)
        return True


class BrowserSessionOnly(permissions.BasePermission):
    """For minting tokens: a token must not make more tokens, so only a browser session
    (which passed the second factor) may."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        if not isinstance(request.successful_authenticator, SessionAuthentication):
            raise ApiError(
                403,
                "Tokens are created from a signed-in browser session, not with a token.",
                "session_required",
            )
        return True
