"""Usage figures: the arithmetic (hours split at midnight, running sessions counted to now, wait
percentiles), the staff dashboard and its CSV for an empty and a busy database, who may see
it, a user's own page (their data only), and charts that reference nothing on the network."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.test import Client

from sessions_app.charts import stacked_bar_chart
from sessions_app.models import Environment, Session
from sessions_app.usage import percentile, split_by_day, usage_range, usage_report, user_usage
from storage_app.models import StorageAccount
from tests.conftest import _make_user, login_verified

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
USAGE = "/admin/sessions_app/session/usage/"
GIB = 1024**3


@pytest.fixture(autouse=True)
def _frozen() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_client(staff: User) -> Client:
    client = Client()
    login_verified(client, staff)
    return client


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


def _session(user: User, environment: Environment, **fields: Any) -> Session:
    fields.setdefault("state", Session.State.STOPPED)
    return Session.objects.create(user=user, environment=environment, **fields)


@pytest.fixture
def busy(environment: Environment, owner: User, other_user: User) -> dict[str, Any]:
    """The owner's small session over midnight (2 CPUs, 4 GB), another user's large one running
    since 07:00 (4 CPUs, 8 GB), two admissions after 10 and 30 minutes, a failure, a session
    before the range and the owner's storage measurement."""
    large = Environment.objects.create(
        slug="large", name="Large", use_case="big jobs", memory_mb=8192, cpus=4,
        max_duration_minutes=600,
    )  # fmt: skip
    # 2 h on 1 March and 2 h on 2 March
    _session(owner, environment, created_at=_at(1, 22), started_at=_at(1, 22), ended_at=_at(2, 2))
    # still running at 09:00: 2 h to now; waited 30 minutes
    _session(
        other_user,
        large,
        state=Session.State.RUNNING,
        created_at=_at(3, 6, 30),
        admitted_at=_at(3, 7),
        started_at=_at(3, 7),
        expires_at=_at(3, 17),
    )
    # waited 10 minutes, ran 50 minutes on 2 March
    _session(
        other_user,
        large,
        created_at=_at(2, 10),
        admitted_at=_at(2, 10, 10),
        started_at=_at(2, 10, 10),
        ended_at=_at(2, 11),
    )
    _session(
        owner,
        environment,
        state=Session.State.FAILED,
        reason=Session.Reason.BACKEND_ERROR,
        created_at=_at(2, 12),
        ended_at=_at(2, 12),
    )
    long_ago = NOW - timedelta(days=60)
    _session(owner, environment, created_at=long_ago, started_at=long_ago, ended_at=long_ago)
    StorageAccount.objects.create(
        user=owner,
        created_at=NOW,
        delete_after=NOW + timedelta(days=90),
        private_bytes=GIB,
        private_measured_at=NOW,
        scratch_bytes=GIB // 2,
        scratch_measured_at=NOW,
    )
    return {"large": large}


# --- The arithmetic ---------------------------------------------------------------------------


def test_a_span_over_midnight_is_split_between_the_two_days() -> None:
    assert split_by_day(_at(1, 22), _at(2, 2, 30)) == [
        (date(2025, 3, 1), 7200.0),
        (date(2025, 3, 2), 9000.0),
    ]


def test_percentiles_interpolate_between_ranks() -> None:
    values = [float(n) for n in range(1, 11)]

    assert percentile(values, 50) == 5.5
    assert percentile(values, 95) == pytest.approx(9.55)
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) == 0.0


def test_the_range_is_the_last_thirty_utc_days_up_to_now() -> None:
    span = usage_range(NOW)

    assert (span.first, span.last) == (date(2025, 2, 2), date(2025, 3, 3))
    assert len(span.days) == 30
    assert span.end == NOW


def test_the_report_splits_hours_counts_running_sessions_to_now_and_gives_wait_percentiles(
    busy: dict[str, Any], environment: Environment
) -> None:
    report = usage_report(usage_range(NOW))

    rows = {(row.day.day, row.environment): row for row in report.rows}
    assert rows[(1, "ecmwf-dss")].cpu_hours == pytest.approx(4.0)  # 2 h × 2 CPUs
    assert rows[(1, "ecmwf-dss")].memory_gb_hours == pytest.approx(8.0)  # 2 h × 4 GB
    assert rows[(1, "ecmwf-dss")].sessions_started == 1
    assert rows[(2, "ecmwf-dss")].cpu_hours == pytest.approx(4.0)
    assert rows[(2, "ecmwf-dss")].sessions_started == 0
    assert rows[(2, "large")].cpu_hours == pytest.approx(50 / 60 * 4)
    assert rows[(3, "large")].cpu_hours == pytest.approx(8.0)  # running: 07:00 to now
    assert rows[(3, "large")].memory_gb_hours == pytest.approx(16.0)
    assert sum(row.cpu_hours for row in report.rows) == pytest.approx(8 + 50 / 60 * 4 + 8)
    assert sum(row.sessions_started for row in report.rows) == 3  # not the one 60 days ago

    (wait,) = report.waits
    assert (wait.environment, wait.admitted) == ("large", 2)
    assert wait.median_seconds == 20 * 60
    assert wait.p95_seconds == pytest.approx((10 + 20 * 0.95) * 60)
    assert report.failures == [("the server could not be started", 1)]
    assert [(u.username, round(u.cpu_hours, 2)) for u in report.top_users] == [
        ("other", round(8 + 50 / 60 * 4, 2)),
        ("owner", 8.0),
    ]
    assert report.storage.accounts_measured == 1
    assert report.storage.private_bytes == GIB
    assert report.storage.scratch_bytes == GIB // 2


def test_a_user_sees_only_their_own_hours(busy: dict[str, Any], owner: User) -> None:
    days = user_usage(owner, usage_range(NOW))

    assert sum(day.cpu_hours for day in days) == pytest.approx(8.0)
    assert sum(day.sessions_started for day in days) == 1


# --- The staff dashboard ----------------------------------------------------------------------


def _csv(client: Client) -> list[dict[str, str]]:
    response = client.get(USAGE, {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_the_dashboard_renders_for_an_empty_database(
    admin_client: Client, environment: Environment
) -> None:
    page = admin_client.get(USAGE)

    assert page.status_code == 200
    text = page.content.decode()
    assert "No usage in this range." in text
    assert "No session was admitted in this range." in text
    assert text.count('<svg class="chart"') == 3
    response = admin_client.get(USAGE, {"format": "csv"})
    assert response.content.decode().splitlines() == [
        "date,environment,sessions_started,cpu_hours,memory_gb_hours"
    ]


def test_the_busy_dashboard_shows_the_figures_and_the_csv_has_them(
    admin_client: Client, busy: dict[str, Any]
) -> None:
    text = admin_client.get(USAGE).content.decode()

    assert text.count('class="day-row"') == 4  # 1 and 2 March small, 2 and 3 March large
    assert "<td>2025-03-03</td><td>large</td><td>1</td><td>8.00</td><td>16.00</td>" in text
    assert "<td>20.0</td><td>29.0</td>" in text  # median and p95 wait, minutes
    assert "the server could not be started" in text
    assert "<td>other</td><td>11.33</td>" in text
    assert "1.0\xa0GB" in text and "512.0\xa0MB" in text

    rows = _csv(admin_client)
    assert len(rows) == 30 * 2  # every day × both environments
    by_key = {(row["date"], row["environment"]): row for row in rows}
    assert by_key[("2025-03-01", "ecmwf-dss")] == {
        "date": "2025-03-01",
        "environment": "ecmwf-dss",
        "sessions_started": "1",
        "cpu_hours": "4.00",
        "memory_gb_hours": "8.00",
    }
    assert by_key[("2025-03-02", "large")]["cpu_hours"] == "3.33"
    assert by_key[("2025-02-10", "large")]["cpu_hours"] == "0.00"


def test_the_sessions_list_links_to_the_dashboard(
    admin_client: Client, environment: Environment
) -> None:
    page = admin_client.get("/admin/sessions_app/session/").content.decode()

    assert f'href="{USAGE}"' in page


def test_non_staff_are_sent_away_from_the_dashboard(owner: User, environment: Environment) -> None:
    client = Client()
    login_verified(client, owner)

    response = client.get(USAGE)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert client.get(USAGE, {"format": "csv"}).status_code == 302


def test_staff_without_the_view_permission_on_sessions_are_refused(
    environment: Environment,
) -> None:
    clerk = _make_user("clerk", is_staff=True)
    client = Client()
    login_verified(client, clerk)
    assert client.get(USAGE).status_code == 403

    clerk.user_permissions.add(
        Permission.objects.get(codename="view_session", content_type__app_label="sessions_app")
    )
    assert client.get(USAGE).status_code == 200


# --- A user's own page ------------------------------------------------------------------------


def test_the_users_page_shows_only_their_own_usage(
    busy: dict[str, Any], owner: User, other_user: User
) -> None:
    client = Client()
    login_verified(client, owner)

    text = client.get("/usage/").content.decode()

    assert re.search(r'id="usage-total-sessions">1<', text)
    assert re.search(r'id="usage-total-cpu-hours">8.00<', text)
    assert text.count('class="day-row"') == 2
    assert "1.0\xa0GB of" in text  # their private storage
    assert "11.33" not in text and "large" not in text  # nothing of the other user's

    login_verified(client, other_user)
    text = client.get("/usage/").content.decode()
    assert re.search(r'id="usage-total-cpu-hours">11.33<', text)
    assert "not measured yet" in text


def test_the_users_page_renders_without_sessions(owner: User, environment: Environment) -> None:
    client = Client()
    login_verified(client, owner)

    page = client.get("/usage/")

    assert page.status_code == 200
    assert "You ran no session in this period." in page.content.decode()


def test_the_session_page_links_to_the_usage_page(owner: User, environment: Environment) -> None:
    client = Client()
    login_verified(client, owner)

    assert 'href="/usage/"' in client.get("/session/").content.decode()


# --- The charts -------------------------------------------------------------------------------


def _svgs(text: str) -> list[str]:
    return re.findall(r"<svg class=\"chart\".*?</svg>", text, flags=re.S)


def test_the_charts_reference_nothing_on_the_network(
    admin_client: Client, busy: dict[str, Any], owner: User
) -> None:
    user_client = Client()
    login_verified(user_client, owner)
    svgs = _svgs(admin_client.get(USAGE).content.decode())
    svgs += _svgs(user_client.get("/usage/").content.decode())

    assert len(svgs) == 4
    assert all("<rect" in svg for svg in svgs)
    for svg in svgs:
        assert not re.search(r"https?:|//|href|<script|<image", svg, flags=re.I)


def test_a_chart_escapes_its_texts_and_stacks_its_series() -> None:
    svg = str(
        stacked_bar_chart(
            ["1 Mar", "2 Mar"], {"<b>a</b>": [1, 2], "b": [3, 0]}, "Title & co", "hours"
        )
    )

    assert "<b>" not in svg and "&lt;b&gt;a&lt;/b&gt;" in svg
    assert "Title &amp; co" in svg
    assert svg.count("<rect") == 3 + 2  # three non-zero segments, two legend keys
