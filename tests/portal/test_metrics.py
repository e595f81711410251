"""``/metrics``: the Prometheus figures read from the database, and who may read them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, User
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from portal.metrics import QUERIES, PortalCollector
from portal.tokens import token_create, token_issue, token_revoke
from sessions_app.models import Environment, Session
from storage_app.models import CleanupRun, RemovalRecord, StorageAccount
from suspension_app.models import Suspension
from suspension_app.services import suspension_impose
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MIB = 2**20
OUTSIDE = "198.51.100.7"  # not in METRICS_ALLOWED_ADDRESSES

FAMILIES = {
    "portal_sessions": "gauge",
    "portal_queue_length": "gauge",
    "portal_queue_oldest_wait_seconds": "gauge",
    "portal_queue_wait_seconds": "histogram",
    "portal_spawn_duration_seconds": "histogram",
    "portal_expiry_lag_seconds": "histogram",
    "portal_sessions_ended_total": "gauge",
    "portal_sessions_failed_total": "gauge",
    "portal_storage_used_bytes": "gauge",
    "portal_storage_removed_bytes": "counter",  # exposed as ..._bytes_total
    "portal_suspensions_active": "gauge",
    "portal_suspensions": "counter",  # exposed as portal_suspensions_total
    "portal_pool_cpus": "gauge",
    "portal_pool_memory_bytes": "gauge",
    "portal_pool_used_cpus": "gauge",
    "portal_pool_used_memory_bytes": "gauge",
}


@pytest.fixture(autouse=True)
def _pool(settings: Any) -> None:
    settings.SESSION_POOL_CPUS = 64
    settings.SESSION_POOL_MEMORY_MB = 65536
    settings.METRICS_WINDOW_HOURS = 24
    settings.METRICS_ALLOWED_ADDRESSES = ["127.0.0.1", "::1"]


# --- Reading the answer -----------------------------------------------------------------------


class Scrape:
    """The parsed answer: families by name, and one sample's value by name and labels."""

    def __init__(self, text: str) -> None:
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples: list[Sample] = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
        return found[0]

    def buckets(self, name: str, environment: str) -> dict[str, float]:
        return {
            s.labels["le"]: s.value
            for s in self.samples
            if s.name == f"{name}_bucket" and s.labels.get("environment") == environment
        }


def scrape(client: Client, **extra: Any) -> Scrape:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.content.decode())


# --- The figures --------------------------------------------------------------------------------


def test_an_empty_database_answers_every_family_with_zeros(
    client: Client, environment: Environment
) -> None:
    result = scrape(client)

    assert {name: f.type for name, f in result.families.items()} == FAMILIES
    pool = {"portal_pool_cpus": 64, "portal_pool_memory_bytes": 65536 * MIB}
    for sample in result.samples:
        assert sample.value == pool.get(sample.name, 0), sample
    # Every environment has its series from the start, at zero.
    assert result.value("portal_sessions", state="running", environment="ecmwf-dss") == 0
    assert result.value("portal_queue_length", environment="ecmwf-dss") == 0
    assert result.buckets("portal_queue_wait_seconds", "ecmwf-dss")["+Inf"] == 0
    assert result.value("portal_storage_used_bytes", area="scratch") == 0
    assert result.value("portal_storage_removed_bytes_total", rule="private_retention") == 0
    assert result.value("portal_sessions_failed_total", reason="backend_error") == 0


_users = count()


def _user() -> User:
    return get_user_model().objects.create(username=f"user{next(_users)}")


def _ago(seconds: float | None) -> datetime | None:
    return None if seconds is None else NOW - timedelta(seconds=seconds)


def _session(
    environment: Environment,
    state: str,
    created: float,
    admitted: float | None = None,
    started: float | None = None,
    ended: float | None = None,
    expires: float | None = None,
    reason: str = "",
) -> Session:
    """A session whose moments are given in seconds before NOW."""
    return Session.objects.create(
        user=_user(),
        environment=environment,
        state=state,
        reason=reason,
        created_at=NOW - timedelta(seconds=created),
        admitted_at=_ago(admitted),
        started_at=_ago(started),
        ended_at=_ago(ended),
        expires_at=_ago(expires),
    )


@pytest.fixture
def busy(environment: Environment, staff: User) -> None:
    """Sessions in every state in two environments besides the default one, storage
    measurements and removals, one suspension in force and one lifted."""
    small = Environment.objects.create(
        slug="small", name="Small", use_case="x", cpus=1, memory_mb=1024, max_duration_minutes=60
    )
    large = Environment.objects.create(
        slug="large", name="Large", use_case="x", cpus=4, memory_mb=8192, max_duration_minutes=600
    )
    S = Session.State
    # small: waiting for room (600 s and 120 s so far), admitted but not yet claimed (waited
    # 240 s), starting, two running, stopping; one failed and two stopped in the window.
    _session(small, S.QUEUED, created=600)
    _session(small, S.QUEUED, created=120)
    _session(small, S.QUEUED, created=300, admitted=60)
    _session(small, S.STARTING, created=100, admitted=100)
    _session(small, S.RUNNING, created=3600, admitted=3590, started=3580, expires=-100)
    _session(small, S.RUNNING, created=1800, admitted=1800, started=1797, expires=-1800)
    _session(small, S.STOPPING, created=7200, admitted=7200, started=7190, expires=-10)
    _session(small, S.FAILED, created=600, admitted=560, ended=500, reason="backend_error")
    _session(
        small, S.STOPPED, created=20000, admitted=20000, started=19995, ended=15000,
        reason="user_stopped",
    )  # fmt: skip
    # A session from before admission was recorded: no queue wait or spawn duration to tell.
    _session(small, S.STOPPED, created=4000, started=3990, ended=3000, reason="user_stopped")
    # large: one waiting 3000 s, one running, two expired late (3 s and 40 s), one failed.
    _session(large, S.QUEUED, created=3000)
    _session(large, S.RUNNING, created=5000, admitted=4000, started=3950, expires=-1000)
    _session(
        large, S.EXPIRED, created=10000, admitted=10000, started=9990, expires=1003, ended=1000,
        reason="time_limit",
    )  # fmt: skip
    _session(
        large, S.EXPIRED, created=12000, admitted=11900, started=11880, expires=2040,
        ended=2000, reason="time_limit",
    )  # fmt: skip
    _session(
        large, S.FAILED, created=9020, admitted=9010, started=9000, ended=100,
        reason="server_died",
    )  # fmt: skip
    # Outside the 24-hour window: counted nowhere (its lag would be an hour).
    hour = 3600
    _session(
        large, S.EXPIRED, created=32 * hour, admitted=32 * hour, started=32 * hour - 5,
        expires=31 * hour, ended=30 * hour, reason="time_limit",
    )  # fmt: skip

    accounts = [(1000, 300), (500, None)]
    for private, scratch in accounts:
        StorageAccount.objects.create(
            user=_user(),
            created_at=NOW,
            delete_after=NOW + timedelta(days=31),
            private_bytes=private,
            scratch_bytes=scratch,
        )
    someone = _user()
    run = CleanupRun.objects.create(kind=CleanupRun.Kind.SCRATCH_USER, user=someone, started_at=NOW)
    for size, rule, area in [
        (100, "scratch_quota_largest", "scratch"),
        (200, "scratch_quota_largest", "scratch"),
        (5000, "private_retention", "private"),
    ]:
        RemovalRecord.objects.create(
            user=someone, run=run, area=area, path="f", size=size, rule=rule, removed_at=NOW
        )

    Suspension.objects.create(user=_user(), created_at=NOW, imposed_by=staff, reason="Abuse.")
    Suspension.objects.create(
        user=_user(),
        created_at=NOW,
        imposed_by=staff,
        reason="Abuse.",
        lifted_at=NOW,
        lifted_by=staff,
        investigation_note="A mistake.",
    )


def test_a_busy_database_gives_the_right_figures(client: Client, busy: None) -> None:
    with time_machine.travel(NOW, tick=False):
        result = scrape(client)

    sessions = {
        (s.labels["state"], s.labels["environment"]): s.value
        for s in result.samples
        if s.name == "portal_sessions" and s.value
    }
    assert sessions == {
        ("queued", "small"): 3,  # two waiting, one admitted
        ("starting", "small"): 1,
        ("running", "small"): 2,
        ("stopping", "small"): 1,
        ("queued", "large"): 1,
        ("running", "large"): 1,
    }
    assert result.value("portal_sessions", state="stopping", environment="ecmwf-dss") == 0

    assert result.value("portal_queue_length", environment="small") == 2
    assert result.value("portal_queue_length", environment="large") == 1
    assert result.value("portal_queue_length", environment="ecmwf-dss") == 0
    assert result.value("portal_queue_oldest_wait_seconds", environment="small") == 600
    assert result.value("portal_queue_oldest_wait_seconds", environment="large") == 3000
    assert result.value("portal_queue_oldest_wait_seconds", environment="ecmwf-dss") == 0

    # Held: five small (admitted, starting, two running, stopping) and one large.
    assert result.value("portal_pool_cpus") == 64
    assert result.value("portal_pool_memory_bytes") == 65536 * MIB
    assert result.value("portal_pool_used_cpus") == 5 * 1 + 4
    assert result.value("portal_pool_used_memory_bytes") == (5 * 1024 + 8192) * MIB

    # Queue waits (admitted in the window): small 240, 0, 10, 0, 0, 40, 0; large 1000, 0, 100, 10.
    wait = "portal_queue_wait_seconds"
    assert result.buckets(wait, "small") == {
        "1.0": 4, "5.0": 4, "15.0": 5, "30.0": 5, "60.0": 6, "120.0": 6, "300.0": 7,
        "600.0": 7, "1200.0": 7, "1800.0": 7, "3600.0": 7, "7200.0": 7, "14400.0": 7,
        "+Inf": 7,
    }  # fmt: skip
    assert result.value(f"{wait}_count", environment="small") == 7
    assert result.value(f"{wait}_sum", environment="small") == 290
    large_waits = result.buckets(wait, "large")
    assert (large_waits["1.0"], large_waits["15.0"], large_waits["120.0"]) == (1, 2, 3)
    assert (large_waits["600.0"], large_waits["1200.0"], large_waits["+Inf"]) == (3, 4, 4)
    assert result.value(f"{wait}_sum", environment="large") == 1110
    assert result.value(f"{wait}_count", environment="ecmwf-dss") == 0

    # Spawns (server answered in the window, admission known): small 10, 3, 10, 5;
    # large 50, 10, 20, 10.
    spawn = "portal_spawn_duration_seconds"
    small_spawns = result.buckets(spawn, "small")
    assert (small_spawns["2.0"], small_spawns["5.0"], small_spawns["10.0"]) == (0, 2, 4)
    assert small_spawns["+Inf"] == result.value(f"{spawn}_count", environment="small") == 4
    assert result.value(f"{spawn}_sum", environment="small") == 28
    large_spawns = result.buckets(spawn, "large")
    assert (large_spawns["5.0"], large_spawns["10.0"], large_spawns["20.0"]) == (0, 2, 3)
    assert (large_spawns["30.0"], large_spawns["60.0"], large_spawns["+Inf"]) == (3, 4, 4)
    assert result.value(f"{spawn}_sum", environment="large") == 90

    # Expiry lag (expired in the window): large 3 and 40; the older one is outside.
    lag = "portal_expiry_lag_seconds"
    large_lags = result.buckets(lag, "large")
    assert (large_lags["1.0"], large_lags["5.0"], large_lags["30.0"]) == (0, 1, 1)
    assert (large_lags["60.0"], large_lags["+Inf"]) == (2, 2)
    assert result.value(f"{lag}_sum", environment="large") == 43
    assert result.value(f"{lag}_count", environment="small") == 0

    ended = {
        (s.labels["state"], s.labels["reason"]): s.value
        for s in result.samples
        if s.name == "portal_sessions_ended_total"
    }
    assert ended == {
        ("stopped", "user_stopped"): 2,
        ("expired", "time_limit"): 2,
        ("failed", "backend_error"): 1,
        ("failed", "server_died"): 1,
    }
    failed = {
        s.labels["reason"]: s.value
        for s in result.samples
        if s.name == "portal_sessions_failed_total" and s.value
    }
    assert failed == {"backend_error": 1, "server_died": 1}

    assert result.value("portal_storage_used_bytes", area="private") == 1500
    assert result.value("portal_storage_used_bytes", area="scratch") == 300
    removed = "portal_storage_removed_bytes_total"
    assert result.value(removed, rule="scratch_quota_largest") == 300
    assert result.value(removed, rule="private_retention") == 5000
    assert result.value(removed, rule="scratch_shared_lru") == 0
    assert result.value("portal_suspensions_active") == 1
    assert result.value("portal_suspensions_total") == 2


def test_the_window_follows_the_setting(client: Client, busy: None, settings: Any) -> None:
    # Given a one-hour window, when scraped, then only what happened in that hour counts.
    settings.METRICS_WINDOW_HOURS = 1
    with time_machine.travel(NOW, tick=False):
        result = scrape(client)

    # Admitted within the hour: small ones 60, 100, 560, 1800 and 3590 s ago (not 7200, 20000).
    assert result.value("portal_queue_wait_seconds_count", environment="small") == 5
    # Stopped within the hour: 3000 s ago (not 15000).
    assert result.value("portal_sessions_ended_total", state="stopped", reason="user_stopped") == 1
    assert "1 hours" in result.families["portal_sessions_ended_total"].documentation


def test_a_scrape_costs_a_fixed_number_of_queries(
    busy: None, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(QUERIES):
        families = list(PortalCollector().collect())

    assert len(families) == len(FAMILIES)


# --- Who may read them --------------------------------------------------------------------------


def _bearer(raw: str) -> dict[str, Any]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}", "REMOTE_ADDR": OUTSIDE}


@pytest.mark.parametrize(
    ("allowed", "peer"),
    [
        (["127.0.0.1", "::1"], "127.0.0.1"),
        (["127.0.0.1", "::1"], "::1"),
        (["10.0.0.0/8"], "10.1.2.3"),
        (["10.0.0.0/8"], "::ffff:10.1.2.3"),  # an IPv4 client of a dual-stack socket
        (["2001:db8::/32"], "2001:db8::7"),
    ],
)
def test_an_allowed_address_needs_no_credentials(
    client: Client, settings: Any, allowed: list[str], peer: str
) -> None:
    settings.METRICS_ALLOWED_ADDRESSES = allowed

    response = client.get("/metrics", REMOTE_ADDR=peer)

    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]


def test_no_credentials_from_elsewhere_is_401_not_a_redirect(client: Client) -> None:
    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response["Content-Type"].startswith("text/plain")
    assert b"portal_" not in response.content


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_an_allowed_address_does_not_count_through_a_proxy(
    client: Client, settings: Any, header: str
) -> None:
    # Given a scraper network that also holds the ingress controller, when a request comes
    # through the controller (which adds its header), then the peer's address does not let it in.
    settings.METRICS_ALLOWED_ADDRESSES = ["10.0.0.0/8"]

    response = client.get("/metrics", REMOTE_ADDR="10.1.2.3", headers={header: "127.0.0.1"})

    assert response.status_code == 401


def test_an_empty_list_allows_no_address(client: Client, settings: Any) -> None:
    settings.METRICS_ALLOWED_ADDRESSES = []

    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 401


def test_a_staff_token_works_from_anywhere(client: Client, staff: User) -> None:
    result = scrape(client, **_bearer(token_issue(user=staff)))

    assert set(result.families) == set(FAMILIES)


def test_a_token_of_someone_not_staff_is_403(client: Client, owner: User) -> None:
    response = client.get("/metrics", **_bearer(token_issue(user=owner)))

    assert response.status_code == 403
    assert b"staff" in response.content


def _staff_member(*codenames: str) -> User:
    """A staff member (not a superuser) holding only these permissions of sessions_app."""
    member = get_user_model().objects.create_user("operator", is_staff=True)
    member.user_permissions.set(
        Permission.objects.filter(content_type__app_label="sessions_app", codename__in=codenames)
    )
    return member


def test_a_staff_token_without_the_metrics_permission_is_403(client: Client) -> None:
    # Given a staff member who may see and stop every session, but not read the metrics
    member = _staff_member("view_session", "change_session")

    response = client.get("/metrics", **_bearer(token_issue(user=member)))

    assert response.status_code == 403
    assert b"sessions_app.view_metrics" in response.content
    assert b"portal_" not in response.content


def test_the_metrics_permission_alone_lets_a_staff_token_read_them(client: Client) -> None:
    member = _staff_member("view_metrics")

    result = scrape(client, **_bearer(token_issue(user=member)))

    assert set(result.families) == set(FAMILIES)


def test_a_suspended_staff_member_is_403(client: Client, staff: User) -> None:
    raw = token_issue(user=staff)
    duty = get_user_model().objects.create_user("duty-officer", is_staff=True)
    suspension_impose(user=staff, reason="Scraping too hard.", imposed_by=duty)

    response = client.get("/metrics", **_bearer(raw))

    assert response.status_code == 403
    assert b"suspended" in response.content


@pytest.mark.parametrize("bad", ["revoked", "unknown", "inactive", "not-ours", "basic"])
def test_a_token_that_does_not_work_is_401(client: Client, staff: User, bad: str) -> None:
    raw, token = token_create(user=staff)
    headers = _bearer(raw)
    if bad == "revoked":
        token_revoke(token)
    elif bad == "unknown":
        headers = _bearer(raw + "x")
    elif bad == "inactive":
        staff.is_active = False
        staff.save()
    elif bad == "not-ours":
        headers = _bearer("an-identity-provider-token")
    elif bad == "basic":
        headers["HTTP_AUTHORIZATION"] = "Basic c3RhZmY6cGFzc3dvcmQ="

    response = client.get("/metrics", **headers)

    assert response.status_code == 401


def test_a_staff_browser_session_is_not_a_credential(client: Client, staff: User) -> None:
    login_verified(client, staff)

    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE)

    assert response.status_code == 401


def test_metrics_take_no_writes(client: Client) -> None:
    assert client.post("/metrics").status_code == 405


def test_no_address_is_allowed_unless_configured(tmp_path: Path) -> None:
    # The loopback address would let every process on the machine read them: a session's
    # server under the local back-end, any other account.
    env = {key: value for key, value in os.environ.items() if key != "METRICS_ALLOWED_ADDRESSES"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.METRICS_ALLOWED_ADDRESSES)",
        ],
        cwd=django_settings.BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "portal.settings", "PORTAL_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_bad_allowed_address_stops_the_start(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "METRICS_ALLOWED_ADDRESSES": "127.0.0.1,10.0.0.1/8",
        "PORTAL_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "METRICS_ALLOWED_ADDRESSES" in result.stderr
