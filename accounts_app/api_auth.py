"""DRF authentication with the identity provider's access tokens.

A token counts only when it was issued to the portal (its audience: ``oidc_audience.py``) and
the provider says the person used a second factor (``amr``/``acr`` in its userinfo answer): an
API call must not skip the second factor the pages ask for.

Whom a token is for is remembered for OIDC_BEARER_CACHE_SECONDS (by its SHA-256 digest): the
provider round trip and the claims update cost more than the rest of a request
(``docs/benchmarks.md``). A token revoked at the provider works that much longer here; the
access policy and suspension are still checked on every request.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts_app.oidc import PortalOidcBackend, SignInRefused, mfa_asserted, user_for_claims
from accounts_app.oidc_audience import AudienceRefused, access_token_audience_check
from accounts_app.policy import oidc_enabled
from portal.api_errors import ApiError
from portal.tokens import TOKEN_PREFIX

log = logging.getLogger(__name__)


def _remembered(key: str) -> Any:
    """Whom the token is for, if the cache (Redis on the broker) remembers it. A cache that does
    not answer only costs the provider's round trip, never the request."""
    try:
        return cache.get(key)
    except Exception as exc:  # noqa: BLE001 - redis-py's errors, or another back-end's
        log.warning("OIDC bearer cache not read (the cache does not answer): %s", exc)
        return None


def _remember(key: str, user_id: Any) -> None:
    try:
        cache.set(key, user_id, settings.OIDC_BEARER_CACHE_SECONDS)
    except Exception as exc:  # noqa: BLE001 - as in _remembered
        log.warning("OIDC bearer cache not written (the cache does not answer): %s", exc)


class OidcAccessToken(str):
    """``request.auth`` for a request authenticated with the provider's access token."""


class OidcBearerAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <access token from the identity provider>``."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).split()
        if len(header) != 2 or header[0].lower() != b"bearer":
            return None  # the portal-token class has already answered malformed headers
        raw = header[1].decode(errors="replace")
        if raw.startswith(TOKEN_PREFIX):
            return None
        if not oidc_enabled():
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        cache_key = "oidc-bearer:" + hashlib.sha256(raw.encode()).hexdigest()
        user_id = _remembered(cache_key)
        if user_id is not None:
            user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
            if user is not None:
                return user, OidcAccessToken(raw)
        user = self._user_from_provider(raw)
        if settings.OIDC_BEARER_CACHE_SECONDS:
            _remember(cache_key, user.pk)
        return user, OidcAccessToken(raw)

    def _user_from_provider(self, raw: str) -> Any:
        """Check that the token was issued to the portal (``oidc_audience``), ask the
        provider's userinfo endpoint who it is for, then apply the multi-factor requirement,
        the claims mapping and the access policy."""
        try:
            access_token_audience_check(raw)
            claims = PortalOidcBackend().get_userinfo(raw, None, None)
        except AudienceRefused as exc:
            raise exceptions.AuthenticationFailed(exc.message, code=exc.code) from None
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code in (400, 401, 403):
                raise exceptions.AuthenticationFailed(
                    "The identity provider does not accept this access token."
                ) from None
            raise ApiError(
                503, "The identity provider could not check the token: try again.", "idp_error"
            ) from None
        except requests.RequestException:
            raise ApiError(
                503, "The identity provider could not be reached: try again.", "idp_unreachable"
            ) from None
        if not isinstance(claims, dict):
            raise exceptions.AuthenticationFailed("The identity provider's answer was not usable.")
        if not mfa_asserted(claims):
            raise ApiError(
                403,
                "This access token does not show a second factor: sign in at the identity "
                "provider with multi-factor authentication, or use a portal token.",
                "second_factor_required",
            )
        try:
            return user_for_claims(claims)
        except SignInRefused as exc:
            raise ApiError(403, exc.message, exc.code) from None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class OidcBearerScheme(OpenApiAuthenticationExtension):
    """Documents the provider's access tokens (a bearer scheme beside portal tokens)."""

    target_class = "accounts_app.api_auth.OidcBearerAuthentication"
    name = "oidcBearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An access token of the identity provider whose userinfo carries "
            "the multi-factor claim (amr/acr).",
        }
