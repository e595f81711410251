"""The cast every test can use: an owner, another user, a staff member; the default
environment and terms that the data migrations create; and a real Celery worker."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.test import APIClient

from sessions_app.models import Environment
from terms_app.models import TermsVersion
from terms_app.services import terms_accept

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _isolated_storage(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    # Homes and spawner runtime files of one test never meet another's (or a developer's).
    root = tmp_path_factory.mktemp("portal")
    settings.STORAGE_HOME_ROOT = root / "home"
    settings.LOCAL_SPAWNER_RUNTIME_DIR = root / "spawner"
    from sessions_app.spawners import get_spawner

    get_spawner.cache_clear()


def _make_user(username: str, **extra: Any) -> User:
    user = get_user_model().objects.create_user(
        username=username, email=f"{username}@example.org", password=PASSWORD, **extra
    )
    return user


@pytest.fixture
def owner(db: None) -> User:
    return _make_user("owner")


@pytest.fixture
def other_user(db: None) -> User:
    return _make_user("other")


@pytest.fixture
def staff(db: None) -> User:
    return _make_user("staff", is_staff=True, is_superuser=True)


def _run_data_migration(module: str, function: str) -> None:
    # Transactional tests flush every table, data migrations' rows included; running the same
    # function again (it is idempotent) gives every test the rows a new installation has.
    getattr(importlib.import_module(module), function)(django_apps, None)


@pytest.fixture
def api(owner: User) -> APIClient:
    """An API client logged in (browser session) as the owner."""
    client = APIClient()
    client.force_login(owner)
    return client


@pytest.fixture
def environment(db: None) -> Environment:
    _run_data_migration(
        "sessions_app.migrations.0002_default_environment", "create_default_environment"
    )
    return Environment.objects.get(slug="ecmwf-dss")


@pytest.fixture
def terms(db: None) -> TermsVersion:
    _run_data_migration("terms_app.migrations.0002_first_version", "publish_first_version")
    version = TermsVersion.objects.order_by("-published_at").first()
    assert version is not None
    return version


@pytest.fixture
def accepted(owner: User, terms: TermsVersion) -> User:
    """The owner, having accepted the current terms."""
    terms_accept(user=owner, version=terms.version, ip_address="127.0.0.1", user_agent="pytest")
    return owner


@pytest.fixture
def celery_worker(transactional_db: None) -> Iterator[Any]:
    """A real Celery worker (threads pool) in this process, on the configured broker.

    It shares the test database, so tests using it need committed data (``transactional_db``).
    At the end it stops every server the spawner still runs, so no test leaks a JupyterLab.
    """
    from celery.contrib.testing.worker import start_worker

    from portal.celery import app
    from sessions_app.spawners import get_spawner

    # Messages left by earlier tests (launches made without a worker) are not this test's work.
    app.control.purge()
    with start_worker(
        app, pool="threads", concurrency=8, perform_ping_check=False, shutdown_timeout=30
    ) as worker:
        yield worker
    spawner = get_spawner()
    for server in spawner.list_servers():
        spawner.stop(server.state)
    if connection.vendor == "postgresql":
        # Worker threads keep their own connections open; the test database cannot be flushed
        # or dropped while they exist.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
