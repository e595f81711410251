"""Cleanups that race the user or each other remove no more than the rules select: a file the
user deleted after the scan counts as freed, and a lease lost during a long scan stops the
cleanup before it removes anything."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from storage_app import scratch as services
from storage_app.accounts import storage_account_for
from storage_app.lease import StorageBusy
from storage_app.models import StorageAccount, StorageLock
from storage_app.scratch import scratch_enforce_user
from tests.storage_app.test_services import files_under, put, scratch_of, usage

pytestmark = pytest.mark.django_db


def test_a_file_the_user_deleted_after_the_scan_counts_as_freed(
    owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = scratch_of(owner)
    put(root, "big", blocks=100)
    put(root, "medium", blocks=50)
    put(root, "small", blocks=10)
    used = usage(root)
    storage_account_for(owner)
    StorageAccount.objects.filter(user=owner).update(scratch_quota_bytes=used - 4096)
    real = services.remove_entries

    def user_deletes_the_biggest_first(root_: Any, entries: Any, **options: Any) -> Any:
        os.unlink(os.path.join(root_, "big"))  # between the scan and the removals
        return real(root_, entries, **options)

    monkeypatch.setattr(services, "remove_entries", user_deletes_the_biggest_first)

    report = scratch_enforce_user(owner)

    # Usage is already under the low-water mark without "medium": it stays.
    assert sorted(files_under(root)) == ["medium", "small"]
    assert report.files_removed == 0


def test_a_lease_lost_during_the_scan_stops_the_cleanup_before_any_removal(
    owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    root: Path = scratch_of(owner)
    put(root, "big", blocks=100)
    put(root, "small", blocks=10)
    storage_account_for(owner)
    StorageAccount.objects.filter(user=owner).update(scratch_quota_bytes=4096)
    real_scan = services._scan

    def slow_scan(*args: Any, **kwargs: Any) -> Any:
        result = real_scan(*args, **kwargs)
        # Meanwhile the lease expired and another cleanup took it over.
        StorageLock.objects.update(holder="someone-else")
        return result

    monkeypatch.setattr(services, "_scan", slow_scan)

    with pytest.raises(StorageBusy):
        scratch_enforce_user(owner)

    assert sorted(files_under(root)) == ["big", "small"]
