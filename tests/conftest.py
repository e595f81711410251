"""The cast every test can use: an owner, another user, a staff member; the default
environment and terms that the data migrations create; and a real Celery worker."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from accounts_app.second_factor import SESSION_KEY as SECOND_FACTOR_SESSION_KEY
from sessions_app.models import Environment
from terms_app.models import TermsVersion
from terms_app.services import terms_accept

# The real OpenID Connect provider the identity tests sign in with (``oidc_provider``).
pytest_plugins = ["tests.idp.provider", "tests.kube.fixtures", "tests.portal.router_world"]

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _roomy_pool(settings: Any) -> None:
    """A pool no test fills unless it means to (the queue's own tests set a small one): the
    default is a share of the machine that runs the tests."""
    settings.SESSION_POOL_CPUS = 10_000
    settings.SESSION_POOL_MEMORY_MB = 10**8


@pytest.fixture(autouse=True)
def _no_request_rates(settings: Any) -> None:
    """The request rates' counters live in Redis, shared by the whole run (and a run a minute
    before): off unless a test sets them (tests/portal/test_throttles.py)."""
    settings.API_THROTTLE_USER = "off"
    settings.API_THROTTLE_ADDRESS = "off"


@pytest.fixture(autouse=True)
def _umask_kept() -> Iterator[None]:
    """Every test ends with the run's umask: importing the web's entry points (portal/asgi.py,
    wsgi.py) sets the portal's private one (077) in the process, and the tests after would
    make their folders private (a session account could not read the library they plant)."""
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)


@pytest.fixture(autouse=True)
def _isolated_storage(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    # Homes and spawner runtime files of one test never meet another's (or a developer's).
    root = tmp_path_factory.mktemp("portal")
    settings.STORAGE_HOME_ROOT = root / "home"
    settings.STORAGE_SCRATCH_ROOT = root / "scratch"
    settings.NOTEBOOKS_LIBRARY_URL = ""
    settings.LOCAL_SPAWNER_RUNTIME_DIR = root / "spawner"
    from sessions_app.spawners import get_spawner

    get_spawner.cache_clear()


def _make_user(username: str, *, admitted: bool = True, **extra: Any) -> User:
    """A local user; ``admitted`` puts them in the access policy's group (the portal's staff)."""
    user = get_user_model().objects.create_user(
        username=username, email=f"{username}@example.org", password=PASSWORD, **extra
    )
    if admitted:
        group, _ = Group.objects.get_or_create(name=django_settings.ACCESS_GROUP)
        user.groups.add(group)
    return user


def login_verified(client: Client, user: User, method: str = "totp") -> None:
    """Sign ``user`` in as if they had passed the second factor (its own tests do it for real)."""
    client.force_login(user)
    session = client.session
    session[SECOND_FACTOR_SESSION_KEY] = method
    session.save()


@pytest.fixture
def owner(db: None) -> User:
    return _make_user("owner")


@pytest.fixture
def other_user(db: None) -> User:
    return _make_user("other")


@pytest.fixture
def outsider(db: None) -> User:
    """Signed in fine, but outside the access policy (not the operator's staff)."""
    return _make_user("outsider", admitted=False)


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
    login_verified(client, owner)
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
    _run_data_migration("terms_app.migrations.0003_default_terms_text", "replace_placeholder")
    version = TermsVersion.objects.order_by("-published_at").first()
    assert version is not None
    return version


@pytest.fixture
def accepted(owner: User, terms: TermsVersion) -> User:
    """The owner, having accepted the current terms."""
    terms_accept(user=owner, version=terms.version, ip_address="127.0.0.1", user_agent="pytest")
    return owner


def all_queues(app: Any) -> list[str]:
    """Every queue of the settings, selected again for consuming (and purging): a worker
    started in this process for some queues only narrows the app's selection to them."""
    queues = [queue.name for queue in django_settings.CELERY_TASK_QUEUES]
    app.amqp.queues.select(queues)
    return queues


@pytest.fixture
def celery_worker(transactional_db: None) -> Iterator[Any]:
    """A real Celery worker (threads pool) in this process, on the configured broker, that
    consumes every queue (control, spawn, storage: one worker for all, unlike runportal's one
    per queue; ``tests/sessions_app/test_queues.py`` runs them apart).

    It shares the test database, so tests using it need committed data (``transactional_db``).
    At the end it stops every server the spawner still runs, so no test leaks a JupyterLab.
    """
    from celery.contrib.testing.worker import start_worker

    from portal.celery import app

    queues = all_queues(app)
    since = database_clock()
    # Messages left by earlier tests (launches made without a worker) are not this test's work.
    app.control.purge()
    with start_worker(
        app,
        pool="threads",
        concurrency=8,
        queues=queues,
        perform_ping_check=False,
        shutdown_timeout=30,
    ) as worker:
        yield worker
    after_workers(since)


def database_clock() -> Any:
    """The database's clock (PostgreSQL; None on SQLite), to tell the connections opened since."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def after_workers(since: Any = None) -> None:
    """Once a test's workers are stopped: stop every server the spawner still runs, and end the
    database connections opened ``since`` (``database_clock()`` before the workers started;
    None: every other connection)."""
    from sessions_app.spawners import get_spawner

    spawner = get_spawner()
    for server in spawner.list_servers():
        spawner.stop(server.state)
    if connection.vendor == "postgresql":
        # Worker threads keep their own connections open; the test database cannot be flushed
        # or dropped while they exist. Older ones are not the workers': a connection that code
        # under Playwright's event loop opened (another context) is reused by the next browser
        # test, which must not find it cut.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND (%s::timestamptz IS NULL OR backend_start >= %s)",
                [since, since],
            )


@pytest.fixture
def oidc(settings: Any, oidc_provider: Any) -> Any:
    """The portal configured as a relying party of the real test provider (local sign-in off,
    as in production). Returns the provider handle; the relying party's address is up to the
    test (``oidc.allow_relying_party(live_server.url)``)."""
    for name, value in oidc_provider.portal_settings().items():
        setattr(settings, name, value)
    settings.LOCAL_LOGIN = False
    oidc_provider.allow_relying_party("http://testserver")
    return oidc_provider
