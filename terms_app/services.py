"""Writes of the terms of use: recording acceptances."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.errors import ServiceError
from terms_app.models import TermsAcceptance
from terms_app.selectors import terms_current


class TermsError(ServiceError):
    """The acceptance cannot be recorded."""

    statuses = {"terms_not_published": 404, "terms_version_stale": 409}


def terms_accept(
    *, user: AbstractBaseUser, version: str, ip_address: str | None, user_agent: str
) -> TermsAcceptance:
    """Record that ``user`` accepts ``version``, which must be the current version.

    Accepting twice keeps the first record (the time the user first agreed).
    """
    current = terms_current()
    if current is None:
        raise TermsError("There are no published terms of use to accept.", "terms_not_published")
    if str(version) != current.version:
        raise TermsError(
            f"Terms version {version!r} is not the current version ({current.version}); "
            "reload the page and read the current terms.",
            "terms_version_stale",
        )
    try:
        with transaction.atomic():
            acceptance, _ = TermsAcceptance.objects.get_or_create(
                user_id=user.pk,
                version=current,
                defaults={
                    "accepted_at": timezone.now(),
                    "ip_address": ip_address or None,
                    "user_agent": user_agent[:1000],
                },
            )
    except IntegrityError:
        # A concurrent request recorded it first: keep that record.
        acceptance = TermsAcceptance.objects.get(user_id=user.pk, version=current)
    return acceptance
