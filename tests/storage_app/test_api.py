"""``GET /api/v1/storage/`` and ``GET /api/v1/storage/removals/``: the caller's usage, quotas,
deadline and cleanup history, and never another user's."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from storage_app.accounts import storage_account_for
from storage_app.models import CleanupRun, RemovalRecord, StorageAccount
from tests.conftest import login_verified
from tests.storage_app.test_services import T0

pytestmark = pytest.mark.django_db

GB = 1024**3


def removals(user: User, count: int, prefix: str = "file") -> None:
    """``count`` removal records of ``user``, one run, one a minute from T0 (newest: last)."""
    run = CleanupRun.objects.create(kind="scratch_user", user=user, started_at=T0)
    RemovalRecord.objects.bulk_create(
        RemovalRecord(
            user=user,
            run=run,
            area="scratch",
            path=f"{prefix}-{index}.nc",
            size=(index + 1) * 1000,
            mtime=T0 - timedelta(days=index),
            rule="scratch_quota_largest",
            removed_at=T0 + timedelta(minutes=index),
        )
        for index in range(count)
    )


@pytest.fixture
def measured(owner: User) -> StorageAccount:
    account = storage_account_for(owner, T0)
    StorageAccount.objects.filter(pk=account.pk).update(
        private_bytes=3 * GB // 2,
        private_files=12,
        private_measured_at=T0,
        scratch_bytes=5 * GB,
        scratch_files=3,
        scratch_measured_at=T0,
        scratch_quota_bytes=200 * GB,
    )
    account.refresh_from_db()
    return account


def test_storage_shows_usage_quotas_deadline_and_the_newest_history(
    api: APIClient, owner: User, measured: StorageAccount
) -> None:
    # Given 25 removals of the owner's
    removals(owner, 25)
    # When they ask
    response = api.get("/api/v1/storage/")
    # then usage against the effective quotas (the override for scratch, the default else)
    assert response.status_code == 200
    data = response.json()
    assert data["private"] == {
        "used_bytes": 3 * GB // 2,
        "files": 12,
        "quota_bytes": GB,
        "measured_at": "2031-03-01T08:00:00Z",
        "over_quota": True,
    }
    assert data["scratch"]["quota_bytes"] == 200 * GB
    assert data["scratch"]["over_quota"] is False
    assert data["delete_after"] == "2031-04-01T08:00:00Z"
    assert data["retention_exempt"] is False and data["retention_days"] == 31
    assert any("over its quota" in warning for warning in data["warnings"])
    # and the 20 newest removals, with the link to all of them
    assert data["removals_count"] == 25
    assert [item["path"] for item in data["recent_removals"]][:2] == ["file-24.nc", "file-23.nc"]
    assert len(data["recent_removals"]) == 20
    assert data["recent_removals"][0] == {
        "area": "scratch",
        "path": "file-24.nc",
        "size": 25000,
        "mtime": "2031-02-05T08:00:00Z",
        "rule": "scratch_quota_largest",
        "removed_at": "2031-03-01T08:24:00Z",
    }
    assert data["removals"] == "http://testserver/api/v1/storage/removals/"


def test_the_history_is_paginated_newest_first(api: APIClient, owner: User) -> None:
    removals(owner, 25)
    first = api.get("/api/v1/storage/removals/").json()
    assert first["count"] == 25
    assert [item["path"] for item in first["results"]][0] == "file-24.nc"
    second = api.get(first["next"]).json()
    assert [item["path"] for item in second["results"]] == [
        f"file-{index}.nc" for index in range(4, -1, -1)
    ]


def test_another_users_history_and_usage_are_never_shown(
    owner: User, other_user: User, measured: StorageAccount
) -> None:
    # Given removals of the owner's, and the other user, who has none
    removals(owner, 3, prefix="owners-secret")
    client = APIClient()
    login_verified(client, other_user)
    # When the other user asks
    data = client.get("/api/v1/storage/").json()
    listed = client.get("/api/v1/storage/removals/").json()
    # then they see their own (empty) storage only
    assert data["removals_count"] == 0 and data["recent_removals"] == []
    assert data["private"]["used_bytes"] is None and data["delete_after"] is None
    assert listed["count"] == 0
    assert "owners-secret" not in str(data) + str(listed)


def test_a_user_never_scanned_gets_the_default_quotas(api: APIClient, settings: Any) -> None:
    data = api.get("/api/v1/storage/").json()
    assert data["private"]["quota_bytes"] == settings.STORAGE_PRIVATE_QUOTA_BYTES
    assert data["scratch"]["quota_bytes"] == settings.STORAGE_SCRATCH_QUOTA_BYTES
    assert data["private"]["used_bytes"] is None and data["warnings"] == []


def test_refusals_are_json_with_a_code(owner: User) -> None:
    response = APIClient().get("/api/v1/storage/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_the_schema_documents_the_storage_endpoints(api: APIClient) -> None:
    schema = api.get("/api/v1/schema/", {"format": "json"}).json()
    storage = schema["paths"]["/api/v1/storage/"]["get"]
    assert set(storage["responses"]) >= {"200", "401", "403"}
    ref = storage["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"private", "scratch", "delete_after", "recent_removals", "removals"} <= set(
        body["properties"]
    )
    listing = schema["paths"]["/api/v1/storage/removals/"]["get"]
    assert "page" in {parameter["name"] for parameter in listing["parameters"]}
    assert set(listing["responses"]) >= {"200", "401", "403"}
    page_ref = listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert "results" in schema["components"]["schemas"][page_ref.rsplit("/", 1)[1]]["properties"]
