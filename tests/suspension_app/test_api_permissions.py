"""The staff API asks for the admin's permissions: view, add (suspend), lift (reinstate);
and evidence the database cannot store is a 400, not a server error."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from suspension_app.models import Suspension
from suspension_app.services import suspension_impose
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db


@pytest.fixture
def junior(other_user: User) -> User:
    """Staff, without any of the suspension permissions."""
    other_user.is_staff = True
    other_user.save()
    return other_user


def _client(user: User) -> APIClient:
    client = APIClient()
    login_verified(client, user)
    return client


def test_staff_without_permissions_can_neither_read_suspend_nor_lift(
    junior: User, owner: User, staff: User
) -> None:
    suspension = suspension_impose(user=owner, reason="Testing.", imposed_by=staff)
    client = _client(junior)

    listed = client.get("/api/v1/admin/suspensions/")
    imposed = client.post(
        "/api/v1/admin/suspensions/", {"user": staff.username, "reason": "x"}, format="json"
    )
    lifted = client.post(
        f"/api/v1/admin/suspensions/{suspension.pk}/lift/", {"note": "ok"}, format="json"
    )

    assert [r.status_code for r in (listed, imposed, lifted)] == [403, 403, 403]
    assert lifted.json()["code"] == "permission_denied"
    assert Suspension.objects.get().lifted_at is None
    assert not Suspension.objects.filter(user=staff).exists()


def test_the_lift_permission_lets_staff_reinstate(junior: User, owner: User, staff: User) -> None:
    suspension = suspension_impose(user=owner, reason="Testing.", imposed_by=staff)
    junior.user_permissions.add(Permission.objects.get(codename="lift_suspension"))

    response = _client(junior).post(
        f"/api/v1/admin/suspensions/{suspension.pk}/lift/", {"note": "Checked."}, format="json"
    )

    assert response.status_code == 200


def test_evidence_with_a_nul_character_is_a_clear_400(staff: User, owner: User) -> None:
    response = _client(staff).post(
        "/api/v1/admin/suspensions/",
        {"user": owner.username, "reason": "x", "evidence": {"note": "a\x00b"}},
        format="json",
    )

    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]
    assert not Suspension.objects.exists()
