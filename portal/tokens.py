"""API tokens: issue, revoke and resolve bearer tokens (stored as SHA-256 digests)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

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


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(*, user: AbstractBaseUser, name: str = "") -> tuple[str, ApiToken]:
    """Create a token for ``user``: the token itself (shown once, never stored) and its row."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user_id=user.pk,
        name=name,
        prefix=raw[:12],
        digest=_digest(raw),
        created_at=timezone.now(),
    )
    return raw, token


def token_issue(*, user: AbstractBaseUser, name: str = "") -> str:
    """Create a token for ``user`` and return it; it is shown once and never stored."""
    return token_create(user=user, name=name)[0]


def tokens_live_for(user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """The user's tokens that still work, newest first."""
    return ApiToken.objects.filter(user_id=user.pk, revoked_at__isnull=True).order_by(
        "-created_at", "-pk"
    )


def token_revoke(token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def _live_token_with_user(param: Param) -> QuerySet[ApiToken]:
    user_model = get_user_model()
    return (
        ApiToken.objects.filter(digest=param.text("digest"), revoked_at__isnull=True)
        .order_by()
        .values_list(*attnames(ApiToken), *related("user", user_model))
    )


# Every API request with a token, and every forward-auth request, reads this (portal/prepared.py).
_LIVE_TOKEN = PreparedRead(_live_token_with_user, "digest")


def token_resolve(raw: str) -> ApiToken | None:
    """The live token for ``raw`` with its user, or None if unknown or revoked."""
    rows = _LIVE_TOKEN.rows(digest=_digest(raw))
    if not rows:
        return None
    width = len(attnames(ApiToken))
    token = build(ApiToken, rows[0][:width])
    token.user = build(get_user_model(), rows[0][width:])
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
