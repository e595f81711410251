"""Reads of the terms of use."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.utils import timezone

from terms_app.models import TermsAcceptance, TermsVersion


def terms_current(now: datetime | None = None) -> TermsVersion | None:
    """The latest version published at ``now``, or None if nothing is published yet."""
    now = now or timezone.now()
    return (
        TermsVersion.objects.filter(published_at__lte=now).order_by("-published_at", "-id").first()
    )


def terms_has_accepted(user: AbstractBaseUser | AnonymousUser, version: TermsVersion) -> bool:
    if not user.is_authenticated:
        return False
    return TermsAcceptance.objects.filter(user_id=user.pk, version=version).exists()


def terms_accepted_current(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether the user may launch as far as the terms go (True when none are published)."""
    current = terms_current()
    return current is None or terms_has_accepted(user, current)
