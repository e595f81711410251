"""The storage page (usage, deadline, history) and the storage warnings on the launcher and
session pages."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from sessions_app.models import Environment
from storage_app.accounts import storage_account_for
from storage_app.models import StorageAccount
from tests.conftest import login_verified
from tests.storage_app.test_api import GB, removals
from tests.storage_app.test_services import T0
from tests.suspension_app.conftest import make_session

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner_client(client: Client, owner: User) -> Client:
    login_verified(client, owner)
    return client


def _text(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return html.unescape(response.content.decode()).replace("\xa0", " ")


def test_the_storage_page_shows_usage_against_quotas_and_the_deadline(
    owner_client: Client, owner: User
) -> None:
    account = storage_account_for(owner, T0)
    StorageAccount.objects.filter(pk=account.pk).update(
        private_bytes=GB // 2, private_measured_at=T0, scratch_bytes=120 * GB
    )
    page = _text(owner_client, "/storage/")
    assert "512.0 MB" in page and "1.0 GB" in page  # private: used and quota
    assert "120.0 GB" in page and "100.0 GB" in page and "over quota" in page
    assert "will be deleted after" in page and "1 April 2031, 08:00" in page
    assert 'aria-current="page">Storage</a>' in page
    assert "No cleanup has removed any of your files." in page


def test_the_history_lists_every_removed_file_with_size_mtime_rule_and_time(
    owner_client: Client, owner: User, other_user: User
) -> None:
    removals(owner, 60)
    removals(other_user, 2, prefix="not-yours")
    page = _text(owner_client, "/storage/")
    assert page.count('class="removal"') == 50
    assert "file-59.nc" in page and "file-10.nc" in page and "file-9.nc" not in page
    newest = page.split('class="removal"')[1]
    assert "file-59.nc" in newest and "58.6 KB" in newest  # 60,000 bytes
    assert "1 Mar 2031, 08:59 UTC" in newest  # removed
    assert "1 Jan 2031, 08:00 UTC" in newest  # modified, 59 days before
    assert "scratch quota: largest files first" in page
    assert "Page 1 of 2 (60 entries)" in page
    second = _text(owner_client, "/storage/?page=2")
    assert second.count('class="removal"') == 10 and "file-0.nc" in second
    assert "not-yours" not in page + second


def test_an_exempt_account_says_so(owner_client: Client, owner: User) -> None:
    StorageAccount.objects.filter(pk=storage_account_for(owner).pk).update(
        retention_exempt=True, retention_exempt_reason="Service account."
    )
    assert "Your private storage is exempt" in _text(owner_client, "/storage/")


def test_the_launcher_warns_about_private_storage_over_quota_and_the_coming_deletion(
    owner_client: Client, owner: User, environment: Environment
) -> None:
    # Given private storage over its quota, to be deleted in 3 days
    account = storage_account_for(owner)
    StorageAccount.objects.filter(pk=account.pk).update(
        private_bytes=2 * GB, delete_after=timezone.now() + timedelta(days=3)
    )
    page = _text(owner_client, "/")
    assert 'id="storage-warnings"' in page
    assert "Your private storage uses 2.0 GB, over its quota of 1.0 GB" in page
    assert "will be deleted after" in page and "unless you start a session" in page
    assert 'href="/storage/"' in page


def test_the_session_page_warns_about_a_recent_scratch_cleanup(
    owner_client: Client, owner: User, environment: Environment
) -> None:
    storage_account_for(owner)
    removals(owner, 2)  # at T0: in the future of the real clock, so "recent"
    make_session(owner, environment, "running")
    page = _text(owner_client, "/session/")
    assert "Scratch cleanups removed 2 of your files" in page


def test_no_warning_when_all_is_well(
    owner_client: Client, owner: User, environment: Environment
) -> None:
    # (a deadline near, but the last scan found no home: nothing to lose, nothing to say)
    account = storage_account_for(owner)
    StorageAccount.objects.filter(pk=account.pk).update(
        private_bytes=0, delete_after=timezone.now() + timedelta(days=3)
    )
    assert 'id="storage-warnings"' not in _text(owner_client, "/")
    assert 'id="storage-warnings"' not in _text(owner_client, "/session/")
