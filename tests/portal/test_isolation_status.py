"""Staff and probes see which isolation local sessions get: the admin index says it (single-user
mode loudly) and ``/readyz`` reports it, failing only when isolation is required and missing."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

import portal.health
from sessions_app.spawners import isolation
from tests.conftest import login_verified


@pytest.fixture(autouse=True)
def _fresh_probe() -> None:
    # /readyz keeps its answer for two seconds; each test asks anew.
    portal.health._last = None


@pytest.fixture
def not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests run as root (CI does); a portal started by an ordinary account is the case here,
    # and only the effective uid the isolation code reads can stand in for one.
    monkeypatch.setattr(isolation.os, "geteuid", lambda: 1000)


def _readyz(client: Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    return response.status_code, response.json()


@pytest.mark.django_db
def test_readyz_reports_multi_user_isolation_when_the_portal_runs_as_root(client: Client) -> None:
    # given a portal that runs as root on a machine with bubblewrap, iptables and cgroups
    # when the probe asks
    status, body = _readyz(client)
    # then isolation is in force and said so
    assert status == 200, body
    assert body["isolation"] == "ok"
    assert body["isolation_detail"].startswith("multi-user")
    assert "cgroup" in body["isolation_detail"]


@pytest.mark.django_db
@pytest.mark.usefixtures("not_root")
def test_readyz_stays_ready_in_single_user_mode_by_default(client: Client) -> None:
    status, body = _readyz(client)
    assert status == 200, body
    assert body["isolation_detail"].startswith("single-user")


@pytest.mark.django_db
@pytest.mark.usefixtures("not_root")
def test_readyz_fails_when_isolation_is_required_but_missing(client: Client, settings: Any) -> None:
    settings.LOCAL_ISOLATION = "required"
    status, body = _readyz(client)
    assert status == 503, body
    assert body["isolation"] == "unavailable"


def test_admin_index_says_multi_user_mode(client: Client, staff: User) -> None:
    login_verified(client, staff)
    page = client.get("/admin/").content.decode()
    assert "Session isolation (local back-end)" in page
    assert "Multi-user mode: each person" in page
    assert "Single-user mode" not in page


@pytest.mark.usefixtures("not_root")
def test_admin_index_says_single_user_mode_loudly(client: Client, staff: User) -> None:
    login_verified(client, staff)
    page = client.get("/admin/").content.decode()
    assert "Single-user mode: every session runs as you." in page
    assert "cannot switch users" in page


def test_admin_index_says_nothing_of_local_isolation_on_kubernetes(
    client: Client, staff: User, settings: Any
) -> None:
    settings.SPAWNER = "kubernetes"
    login_verified(client, staff)
    page = client.get("/admin/").content.decode()
    assert "Session isolation" not in page
