"""Staff in the admin: accounts with usage, quotas, exemption and last scan; overrides and
exemptions; "Scan now" and "Run scratch cleanup now"; read-only removal records and runs."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from storage_app.accounts import storage_account_for
from storage_app.models import CleanupRun, RemovalRecord, StorageAccount
from tests.conftest import login_verified
from tests.storage_app.test_api import GB, removals
from tests.storage_app.test_services import PAST, files_under, home_of, put, scratch_of, usage

pytestmark = pytest.mark.django_db

ACCOUNTS = "/admin/storage_app/storageaccount/"
RECORDS = "/admin/storage_app/removalrecord/"
RUNS = "/admin/storage_app/cleanuprun/"


@pytest.fixture
def staff_client(staff: User) -> Client:
    client = Client()
    login_verified(client, staff)
    return client


def _text(response: Any) -> str:
    return html.unescape(response.content.decode()).replace("\xa0", " ")


def _action(client: Client, action: str, *accounts: StorageAccount) -> str:
    response = client.post(
        ACCOUNTS,
        {"action": action, "_selected_action": [account.pk for account in accounts]},
        follow=True,
    )
    assert response.status_code == 200
    return _text(response)


def test_the_account_list_shows_usage_effective_quotas_exemption_and_last_scan(
    staff_client: Client, owner: User, other_user: User
) -> None:
    account = storage_account_for(owner)
    StorageAccount.objects.filter(pk=account.pk).update(
        private_bytes=GB // 4, scratch_bytes=3 * GB, scratch_quota_bytes=500 * GB
    )
    storage_account_for(other_user)
    page = _text(staff_client.get(ACCOUNTS))
    assert "256.0 MB" in page and "3.0 GB" in page
    assert "500.0 GB (override)" in page and "100.0 GB" in page and "1.0 GB" in page
    for url in (
        f"{ACCOUNTS}?q=owner",
        f"{ACCOUNTS}?retention_exempt__exact=1",
        f"{ACCOUNTS}{account.pk}/change/",
    ):
        assert staff_client.get(url).status_code == 200, url


def test_staff_override_quotas_and_exempt_an_account_with_a_reason(
    staff_client: Client, owner: User
) -> None:
    account = storage_account_for(owner)
    url = f"{ACCOUNTS}{account.pk}/change/"
    form = {
        "private_quota_bytes": str(5 * GB),
        "scratch_quota_bytes": "",
        "retention_exempt": "on",
        "retention_exempt_reason": "",
    }
    # An exemption without a reason is refused
    refused = staff_client.post(url, form)
    assert refused.status_code == 200
    assert "Say why the account is exempt from deletion." in _text(refused)
    # and a negative quota too
    negative = staff_client.post(url, {**form, "private_quota_bytes": "-1"})
    assert "The private quota cannot be negative." in _text(negative)
    # With a reason it is saved
    saved = staff_client.post(url, {**form, "retention_exempt_reason": "Course account."})
    assert saved.status_code == 302
    account.refresh_from_db()
    assert (account.private_quota, account.retention_exempt) == (5 * GB, True)
    assert account.scratch_quota_bytes is None


def test_scan_now_measures_the_selected_users_and_says_what_it_found(
    staff_client: Client, owner: User
) -> None:
    put(home_of(owner), "a", blocks=2)
    put(scratch_of(owner), "b", blocks=3)
    account = storage_account_for(owner)
    page = _action(staff_client, "scan_now", account)
    account.refresh_from_db()
    assert account.private_bytes == usage(home_of(owner))
    assert account.scratch_bytes == usage(scratch_of(owner))
    assert "Scanned owner: private 12.0 KB (1 files), scratch 16.0 KB (1 files)." in page


def test_cleanup_now_enforces_the_quota_and_says_what_it_removed(
    staff_client: Client, owner: User, settings: Any
) -> None:
    root = scratch_of(owner)
    put(root, "big", blocks=4, mtime=PAST)
    put(root, "small", blocks=1, mtime=PAST)
    settings.STORAGE_SCRATCH_LOW_WATER = 1.0
    account = storage_account_for(owner)
    StorageAccount.objects.filter(pk=account.pk).update(scratch_quota_bytes=usage(root) - 1)
    page = _action(staff_client, "cleanup_now", account)
    assert files_under(root) == {"small"}
    assert "Cleanup of owner: scratch 24.0 KB was over its quota" in page
    assert "removed 1 file(s) (16.0 KB), now 8.0 KB." in page
    assert RemovalRecord.objects.filter(user=owner, path="big").exists()
    # Within the quota, it says so
    page = _action(staff_client, "cleanup_now", account)
    assert "is within its quota" in page and "nothing removed" in page


def test_removal_records_and_runs_are_read_only_and_searchable_by_user(
    staff_client: Client, owner: User, other_user: User
) -> None:
    removals(owner, 2)
    removals(other_user, 1, prefix="others")
    record = RemovalRecord.objects.filter(user=owner).first()
    run = CleanupRun.objects.filter(user=owner).first()
    assert record is not None and run is not None
    found = _text(staff_client.get(f"{RECORDS}?q=other"))
    assert "others-0.nc" in found and "file-1.nc" not in found
    assert "owner" in _text(staff_client.get(f"{RUNS}?q=owner"))
    detail = _text(staff_client.get(f"{RECORDS}{record.pk}/change/"))
    assert 'name="path"' not in detail  # shown, not editable
    assert staff_client.get(f"{RECORDS}add/").status_code == 403
    assert staff_client.get(f"{RUNS}{run.pk}/delete/").status_code == 403
    assert staff_client.get(f"{RUNS}{run.pk}/change/").status_code == 200
