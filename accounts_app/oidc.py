"""OpenID Connect sign-in (mozilla-django-oidc): claims → users, the access policy at each
sign-in, the provider's multi-factor assertion, and RP-initiated logout."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from accounts_app.models import OidcIdentity
from accounts_app.policy import NOT_OPEN_MESSAGE, access_group, oidc_enabled
from accounts_app.second_factor import second_factor_mark
from portal.json_values import has_nul

logger = logging.getLogger(__name__)

# Why the latest sign-in was refused, for the page the browser lands on next.
REFUSAL_SESSION_KEY = "portal_login_refusal"


class SignInRefused(SuspiciousOperation):
    """The provider vouched for the person, but the portal does not let them in."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, Iterable):
        return [str(item) for item in value]
    return [str(value)]


def mfa_asserted(claims: Mapping[str, Any]) -> bool:
    """Whether the provider says the person used more than one factor (``amr``/``acr``)."""
    amr = set(_as_list(claims.get("amr")))
    acr = set(_as_list(claims.get("acr")))
    return bool(amr & set(settings.OIDC_MFA_AMR_VALUES)) or bool(
        acr & set(settings.OIDC_MFA_ACR_VALUES)
    )


def claims_admit(claims: Mapping[str, Any]) -> bool:
    """The access policy on the provider's claims: one of the configured values present."""
    if not settings.ACCESS_GROUP:
        return True
    values = set(_as_list(claims.get(settings.OIDC_ACCESS_CLAIM)))
    return bool(values & set(settings.OIDC_ACCESS_VALUES))


def _claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name) if name else None
    return value.strip() if isinstance(value, str) else ""


def _sync(user: User, claims: Mapping[str, Any]) -> None:
    """Keep e-mail and names as the provider has them now."""
    fields = {
        "email": _claim(claims, settings.OIDC_EMAIL_CLAIM)[:254],
        "first_name": _claim(claims, settings.OIDC_FIRST_NAME_CLAIM)[:150],
        "last_name": _claim(claims, settings.OIDC_LAST_NAME_CLAIM)[:150],
    }
    changed = [name for name, value in fields.items() if getattr(user, name) != value]
    for name in changed:
        setattr(user, name, fields[name])
    if changed:
        user.save(update_fields=changed)


def user_for_claims(claims: Mapping[str, Any]) -> User:
    """The portal user for the provider's claims, created or brought up to date.

    Refuses (``SignInRefused``) people outside the access policy without creating anything
    for them; someone who was admitted before and no longer is loses the access group.
    """
    subject = _claim(claims, "sub")
    username = _claim(claims, settings.OIDC_USERNAME_CLAIM)
    if not subject or not username:
        raise SignInRefused(
            f"The identity provider did not send the '{settings.OIDC_USERNAME_CLAIM}' claim "
            "the portal needs: ask the service desk.",
            "claims_missing",
        )
    if len(username) > 150 or has_nul(claims):
        raise SignInRefused(
            "The identity provider sent claims the portal cannot store (a username over 150 "
            "characters, or a NUL character): ask the service desk.",
            "claims_invalid",
        )
    group = access_group()
    now = timezone.now()
    with transaction.atomic():
        identity = OidcIdentity.objects.select_related("user").filter(subject=subject).first()
        admitted = claims_admit(claims)
        if not admitted and identity is not None and group is not None:
            identity.user.groups.remove(group)
    if not admitted:
        # Raised outside the transaction: the removal from the group above must stay.
        raise SignInRefused(NOT_OPEN_MESSAGE, "access_denied")
    with transaction.atomic():
        if identity is None:
            model = get_user_model()
            if model.objects.filter(username=username).exists():
                # Linking by name would hand a local account (say, a break-glass admin) to
                # whoever the provider calls by that name.
                raise SignInRefused(
                    f"An account named '{username}' already exists here and is not linked to "
                    "your identity: ask the service desk to link it.",
                    "account_conflict",
                )
            try:
                with transaction.atomic():
                    identity = OidcIdentity.objects.create(
                        user=model.objects.create_user(username=username),
                        subject=subject,
                        created_at=now,
                        last_login_at=now,
                        claims=dict(claims),
                    )
            except IntegrityError:
                raise SignInRefused(
                    "Your account is being created by another sign-in: try again.", "conflict"
                ) from None
        else:
            OidcIdentity.objects.filter(pk=identity.pk).update(
                last_login_at=now, claims=dict(claims)
            )
        user = identity.user
        if not user.is_active:
            raise SignInRefused("Your account here is disabled: ask the service desk.", "inactive")
        _sync(user, claims)
        if group is not None:
            user.groups.add(group)
    return user


class PortalOidcBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's code flow, with the portal's claims mapping and policy."""

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> User | None:
        if not oidc_enabled():
            return None
        return super().authenticate(request, **kwargs)

    def get_or_create_user(
        self, access_token: str, id_token: str | None, payload: Mapping[str, Any] | None
    ) -> User:
        userinfo = self.get_userinfo(access_token, id_token, payload)
        if payload and userinfo.get("sub") != payload.get("sub"):
            # OIDC Core 5.3.2: a userinfo answer about someone else must not be used.
            raise SignInRefused("The identity provider's answers did not agree.", "claims_invalid")
        # amr/acr usually come in the ID token; the userinfo answer has the rest.
        claims = {**(payload or {}), **userinfo}
        for name in ("amr", "acr"):
            if payload and name in payload:
                claims[name] = payload[name]
        try:
            user = user_for_claims(claims)
        except SignInRefused as exc:
            request = getattr(self, "request", None)
            if request is not None:
                request.session[REFUSAL_SESSION_KEY] = {"code": exc.code, "message": exc.message}
            logger.info("OIDC sign-in of sub=%s refused: %s", claims.get("sub"), exc.code)
            raise
        user._portal_mfa_by_provider = mfa_asserted(claims)  # type: ignore[attr-defined]
        return user


def oidc_session_stale(request: HttpRequest) -> bool:
    """A session signed in through the provider whose re-check is due: the provider has not
    vouched for it for OIDC_RENEW_SECONDS. Only a page GET can do the re-check (a redirect
    through the provider), so writes and API calls with such a session wait for one."""
    if not oidc_enabled() or not request.user.is_authenticated:
        return False
    expires = request.session.get("oidc_id_token_expiration")
    return expires is not None and float(expires) <= time.time()


class PortalCallbackView(OIDCAuthenticationCallbackView):
    """After the provider: sign in, and count the provider's multi-factor assertion."""

    def login_failure(self) -> HttpResponse:
        # Also when a re-check of a signed-in session is refused: it ends here too.
        if self.request.user.is_authenticated:
            refusal = self.request.session.get(REFUSAL_SESSION_KEY)
            auth.logout(self.request)
            if refusal:
                self.request.session[REFUSAL_SESSION_KEY] = refusal
        response: HttpResponse = super().login_failure()
        return response

    def login_success(self) -> HttpResponse:
        response: HttpResponse = super().login_success()
        self.request.session.pop(REFUSAL_SESSION_KEY, None)
        if getattr(self.user, "_portal_mfa_by_provider", False):
            second_factor_mark(self.request, "provider")
        return response


class PortalAuthenticationRequestView(OIDCAuthenticationRequestView):
    """The start of the provider's round trip; there is none while OIDC is off."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if not oidc_enabled():
            raise Http404("Signing in with an identity provider is not configured here.")
        response: HttpResponse = super().get(request)
        return response


def provider_logout_url(request: HttpRequest) -> str:
    """Where to send the browser so the provider ends its session too (RP-initiated logout).

    Falls back to the portal's sign-in page when the provider has no end-session endpoint or
    the session did not come from the provider.
    """
    back = request.build_absolute_uri(reverse("login"))
    id_token = request.session.get("oidc_id_token")
    endpoint = settings.OIDC_OP_LOGOUT_ENDPOINT
    if not (oidc_enabled() and endpoint and id_token):
        return reverse("login")
    query = urlencode(
        {
            "id_token_hint": id_token,
            "post_logout_redirect_uri": back,
            "client_id": settings.OIDC_RP_CLIENT_ID,
        }
    )
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"
