"""The probes: ``/healthz`` answers while the process runs; ``/readyz`` only when the database
and the broker answer too."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_answer() -> None:
    """Each test asks afresh (the answer is kept for READY_CACHE_SECONDS)."""
    from portal import health

    health._last = None


def test_healthz_answers_without_signing_in(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response.headers["Cache-Control"]


def test_readyz_checks_the_database_and_the_broker(client: Client) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert {key: body[key] for key in ("status", "database", "broker")} == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
    }


def test_readyz_is_unavailable_when_the_broker_does_not_answer(client: Client) -> None:
    from portal.celery import app

    # A port nothing listens on (the discard port, closed on these machines): a real refusal.
    before = app.conf.broker_write_url
    app.conf["broker_write_url"] = "redis://127.0.0.1:9/0"
    try:
        response = client.get("/readyz")
    finally:
        app.conf["broker_write_url"] = before

    assert response.status_code == 503
    body = response.json()
    assert {key: body[key] for key in ("status", "database", "broker")} == {
        "status": "unavailable",
        "database": "ok",
        "broker": "unavailable",
    }


def test_readyz_is_unavailable_when_the_database_does_not_answer(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connection
    from django.db.utils import OperationalError

    # Stopping the test's PostgreSQL would stop every other test too: the cursor fails instead,
    # as it does when the server is gone.
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refuse)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["database"] == "unavailable"


def test_a_burst_of_probes_checks_once(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from portal import health

    calls: list[str] = []

    def broker() -> str:
        calls.append("broker")
        return "ok"

    monkeypatch.setattr(health, "_broker", broker)

    for _ in range(5):
        assert client.get("/readyz").status_code == 200

    assert calls == ["broker"]


def test_probes_take_no_writes(client: Client) -> None:
    assert client.post("/healthz").status_code == 405
    assert client.post("/readyz").status_code == 405
