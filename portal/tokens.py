"""API tokens: issue, revoke and resolve bearer tokens (stored as SHA-256 digests).

Every token has an absolute deadline (``expires_at``): ``API_TOKEN_DAYS`` after it was made
unless its owner asked for another lifetime, never more than ``API_TOKEN_MAX_DAYS``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from portal.models import ApiToken
from portal.prepared import Param, PreparedRead, attnames, build, related

TOKEN_PREFIX = "jlp_"
# Writing last_used_at on every request would make every API call a write; once a minute is
# enough to tell staff whether a token is still in use.
_LAST_USED_RESOLUTION = timedelta(minutes=1)

RevokedBecause = ApiToken.RevokedBecause


class TokenRefused(Exception):
    """A token that does not authenticate anyone: a message for people and a stable code
    (``authentication_failed``: unknown or revoked, as DRF calls it; ``token_expired``)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class TokenLifetimeError(ValueError):
    """A lifetime outside 1 … ``API_TOKEN_MAX_DAYS`` days."""


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_lifetime_days(days: int | None) -> int:
    """The lifetime a new token gets: ``days`` if given and allowed, else ``API_TOKEN_DAYS``."""
    if days is None:
        return min(settings.API_TOKEN_DAYS, settings.API_TOKEN_MAX_DAYS)
    if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
        raise TokenLifetimeError(
            f"A token lives from 1 to {settings.API_TOKEN_MAX_DAYS} days, not {days}."
        )
    return days


def token_create(
    *, user: AbstractBaseUser, name: str = "", days: int | None = None
) -> tuple[str, ApiToken]:
    """Create a token for ``user`` that lives ``days`` (default ``API_TOKEN_DAYS``): the token
    itself (shown once, never stored) and its row. Raises :class:`TokenLifetimeError`."""
    lifetime = timedelta(days=token_lifetime_days(days))
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = timezone.now()
    token = ApiToken.objects.create(
        user_id=user.pk,
        name=name,
        prefix=raw[:12],
        digest=_digest(raw),
        created_at=now,
        expires_at=now + lifetime,
    )
    return raw, token


def token_issue(*, user: AbstractBaseUser, name: str = "", days: int | None = None) -> str:
    """Create a token for ``user`` and return it; it is shown once and never stored."""
    return token_create(user=user, name=name, days=days)[0]


def tokens_live_for(user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """The user's tokens that still work (neither revoked nor expired), newest first."""
    return ApiToken.objects.filter(
        user_id=user.pk, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).order_by("-created_at", "-pk")


def token_revoke(token: ApiToken, because: str = RevokedBecause.OWNER) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_because=because
    )


def tokens_revoke_all(user: AbstractBaseUser, because: str) -> int:
    """Revoke every token of ``user`` that is not revoked yet; returns how many."""
    return ApiToken.objects.filter(user_id=user.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_because=because
    )


def _unrevoked_token_with_user(param: Param) -> QuerySet[ApiToken]:
    user_model = get_user_model()
    return (
        ApiToken.objects.filter(digest=param.text("digest"), revoked_at__isnull=True)
        .order_by()
        .values_list(*attnames(ApiToken), *related("user", user_model))
    )


# Every API request with a token, and every forward-auth request, reads this (portal/prepared.py).
# Expired tokens are found too, so that their owners learn why they no longer work.
_UNREVOKED_TOKEN = PreparedRead(_unrevoked_token_with_user, "digest")


def token_authenticate(raw: str) -> ApiToken:
    """The live token for ``raw``, with its user; raises :class:`TokenRefused` for a token
    that is unknown, revoked or expired."""
    rows = _UNREVOKED_TOKEN.rows(digest=_digest(raw))
    if not rows:
        raise TokenRefused("Invalid or revoked token.", "authentication_failed")
    width = len(attnames(ApiToken))
    token = build(ApiToken, rows[0][:width])
    token.user = build(get_user_model(), rows[0][width:])
    now = timezone.now()
    if token.expires_at <= now:
        raise TokenRefused(
            f"This token expired at {token.expires_at:%Y-%m-%d %H:%M} UTC: make a new one on "
            "your account page.",
            "token_expired",
        )
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def token_resolve(raw: str) -> ApiToken | None:
    """The live token for ``raw`` with its user, or None if unknown, revoked or expired."""
    try:
        return token_authenticate(raw)
    except TokenRefused:
        return None
