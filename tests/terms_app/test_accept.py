"""Acceptances of the terms of use: recorded with their context, current version only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db.models import ProtectedError
from django.utils import timezone

from terms_app.models import TermsAcceptance, TermsVersion
from terms_app.selectors import terms_accepted_current, terms_current
from terms_app.services import TermsError, terms_accept

pytestmark = pytest.mark.django_db


def test_a_new_installation_already_asks_for_agreement(owner: Any, terms: TermsVersion) -> None:
    assert terms_current() == terms
    assert not terms_accepted_current(owner)


def test_an_acceptance_records_version_time_address_and_browser(
    owner: Any, terms: TermsVersion
) -> None:
    acceptance = terms_accept(
        user=owner, version=terms.version, ip_address="192.0.2.7", user_agent="Firefox/140"
    )
    assert (acceptance.version, acceptance.ip_address, acceptance.user_agent) == (
        terms,
        "192.0.2.7",
        "Firefox/140",
    )
    assert terms_accepted_current(owner)


def test_accepting_twice_keeps_the_first_record(owner: Any, terms: TermsVersion) -> None:
    first = terms_accept(user=owner, version=terms.version, ip_address=None, user_agent="a")
    again = terms_accept(user=owner, version=terms.version, ip_address=None, user_agent="b")
    assert again.pk == first.pk and TermsAcceptance.objects.count() == 1


def test_publishing_a_new_version_asks_everyone_again(accepted: Any, terms: TermsVersion) -> None:
    TermsVersion.objects.create(
        version="2", title="New terms", body="…", published_at=timezone.now()
    )
    assert not terms_accepted_current(accepted)
    with pytest.raises(TermsError) as error:
        terms_accept(user=accepted, version=terms.version, ip_address=None, user_agent="")
    assert error.value.code == "terms_version_stale"


def test_a_version_published_in_the_future_is_not_current_yet(terms: TermsVersion) -> None:
    TermsVersion.objects.create(
        version="3", title="Later", body="…", published_at=timezone.now() + timedelta(days=1)
    )
    assert terms_current() == terms


def test_acceptances_are_never_deleted_with_their_user(accepted: Any) -> None:
    with pytest.raises(ProtectedError):
        accepted.delete()
