"""The storage account's invariants live in the database; effective quotas come from it."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from storage_app.accounts import storage_account_for
from storage_app.models import StorageAccount

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("field", ["private_quota_bytes", "scratch_quota_bytes"])
def test_the_database_refuses_a_negative_quota(owner: User, field: str) -> None:
    account = storage_account_for(owner)
    with pytest.raises(IntegrityError), transaction.atomic():
        StorageAccount.objects.filter(pk=account.pk).update(**{field: -1})


def test_the_database_refuses_an_exemption_without_a_reason(owner: User) -> None:
    account = storage_account_for(owner)
    with pytest.raises(IntegrityError), transaction.atomic():
        StorageAccount.objects.filter(pk=account.pk).update(retention_exempt=True)


def test_one_account_per_user(owner: User) -> None:
    account = storage_account_for(owner)
    with pytest.raises(IntegrityError), transaction.atomic():
        StorageAccount.objects.create(
            user=owner, created_at=account.created_at, delete_after=account.delete_after
        )


def test_effective_quotas_are_the_override_or_the_current_default(
    owner: User, settings: Any
) -> None:
    account = storage_account_for(owner)
    settings.STORAGE_PRIVATE_QUOTA_BYTES = 123
    settings.STORAGE_SCRATCH_QUOTA_BYTES = 456
    assert (account.private_quota, account.scratch_quota) == (123, 456)
    account.private_quota_bytes = 0  # an override of zero is a quota of zero, not "default"
    account.scratch_quota_bytes = 789
    assert (account.private_quota, account.scratch_quota) == (0, 789)
