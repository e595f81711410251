"""Faults for the tests of starts that survive them: a database that refuses the workers, and a
real Celery worker process to kill with SIGKILL.

The database is the test database on the machine's PostgreSQL: it is made to refuse new
connections (``ALLOW_CONNECTIONS false``) and every connection but the test's own is cut, which
is what workers see of a database that stopped (``OperationalError`` on their next query and on
every reconnection), without stopping a server other test runs share.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection


def _admin() -> psycopg.Connection[Any]:
    params = connection.settings_dict
    return psycopg.connect(
        dbname="postgres",
        host=params.get("HOST") or None,
        port=params.get("PORT") or None,
        user=params.get("USER") or None,
        password=params.get("PASSWORD") or None,
        autocommit=True,
    )


def _allow_connections(allow: bool, keep_pid: int | None = None) -> None:
    name = str(connection.settings_dict["NAME"])
    with _admin() as admin:
        admin.execute(
            psycopg.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.SQL("true" if allow else "false")
            )
        )
        if not allow:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> %s AND pid <> pg_backend_pid()",
                [name, keep_pid or 0],
            )


class DatabaseOutage:
    """The test database refusing every connection but the test's own, from :meth:`begin`
    until :meth:`end` (which a timer may call): what the workers see of a stopped database."""

    def __init__(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.keep_pid = int(cursor.fetchone()[0])
        self.began = threading.Event()
        self.ended = threading.Event()
        self._timer: threading.Timer | None = None

    def begin(self, seconds: float | None = None) -> None:
        _allow_connections(False, self.keep_pid)
        self.began.set()
        if seconds is not None:
            self._timer = threading.Timer(seconds, self.end)
            self._timer.start()

    def end(self) -> None:
        _allow_connections(True)
        self.ended.set()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.end()


@contextlib.contextmanager
def database_outage() -> Iterator[DatabaseOutage]:
    """A :class:`DatabaseOutage`, always ended when the block is left."""
    outage = DatabaseOutage()
    try:
        yield outage
    finally:
        outage.close()


# The worker process: the app with a start that never returns once its server was asked for
# (the window in which a real worker dies with starts in flight), or the plain app.
_WORKER = """
import os, sys, time
import django
django.setup()
from portal.celery import app
if sys.argv[1] == "hang-after-start":
    from sessions_app import start_watch
    from sessions_app.spawners.local import LocalProcessSpawner
    start_watch.ADOPT_AFTER_SECONDS = 3600  # it dies before its own watcher would adopt them
    start = LocalProcessSpawner.start
    def start_then_hang(self, request, progress):
        state = start(self, request, progress)
        with open(os.environ["ASKED_FILE"], "a") as asked:
            asked.write(request.session_id + "\\n")
        time.sleep(3600)
    LocalProcessSpawner.start = start_then_hang
elif sys.argv[1] in ("hang-in-prepare", "hang-before-start"):
    # Spawn tasks that never get past their storage (the clone), or past claiming the start
    # (start_requested_at) without calling the back-end: a worker killed there leaves no server.
    from sessions_app import services
    from sessions_app.spawners.local import LocalProcessSpawner
    def record_then_hang(*args, **kwargs):
        with open(os.environ["ASKED_FILE"], "a") as asked:
            asked.write(services.spawn_owner.here() + "\\n")
        time.sleep(3600)
    if sys.argv[1] == "hang-in-prepare":
        services.session_folders_prepare = record_then_hang
    else:
        LocalProcessSpawner.start = record_then_hang
app.worker_main(["worker", "-Q", "control,spawn,storage", "--pool", "threads",
                 "--concurrency", "8", "-n", f"faults-{os.getpid()}@%h", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"])
"""


class WorkerProcess:
    """A Celery worker of every queue in a process of its own, on the test's database, broker
    and folders (the settings the test fixtures chose, passed as environment variables)."""

    def __init__(self, folder: Path, mode: str = "plain") -> None:
        self.folder = folder
        self.asked_file = folder / "asked"
        self.log = folder / f"worker-{mode}.log"
        params = connection.settings_dict
        database = (
            f"postgres://{params.get('USER') or 'postgres'}@{params.get('HOST') or '127.0.0.1'}"
            f":{params.get('PORT') or 5432}/{params['NAME']}"
        )
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="portal.settings",
            DATABASE_URL=database,
            CELERY_BROKER_URL=str(settings.CELERY_BROKER_URL),
            STORAGE_HOME_ROOT=str(settings.STORAGE_HOME_ROOT),
            STORAGE_SCRATCH_ROOT=str(settings.STORAGE_SCRATCH_ROOT),
            NOTEBOOKS_LIBRARY_URL="none",
            LOCAL_SPAWNER_RUNTIME_DIR=str(settings.LOCAL_SPAWNER_RUNTIME_DIR),
            LOCAL_SPAWNER_SOCKET_DIR=str(settings.LOCAL_SPAWNER_SOCKET_DIR),
            SESSION_POOL_CPUS=str(settings.SESSION_POOL_CPUS),
            SESSION_POOL_MEMORY_MB=str(settings.SESSION_POOL_MEMORY_MB),
            SPAWN_TIMEOUT_SECONDS=str(settings.SPAWN_TIMEOUT_SECONDS),
            ASKED_FILE=str(self.asked_file),
        )
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _WORKER, mode],
                cwd=settings.BASE_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def asked(self) -> list[str]:
        """The sessions whose server this worker asked for (in hang-after-start mode), or the
        owner names of its spawn tasks that hang (hang-in-prepare, hang-before-start)."""
        try:
            return self.asked_file.read_text().split()
        except FileNotFoundError:
            return []

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as the kernel's OOM killer or a power cut."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
