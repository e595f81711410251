"""The portal's web under a real ASGI server, in a process of its own, on the test database.

The waiting views (sessions_app/live.py) only show what they are worth in a server that runs
an event loop per process: Django's test client runs every request on a loop of its own.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from tests.portal.router_world import free_port


def test_database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@contextlib.contextmanager
def asgi_web(
    folder: Path, workers: int = 2, server: str = "uvicorn", **env: str
) -> Iterator[tuple[str, int]]:
    """Start the web (uvicorn, ``workers`` processes; or ``server="gunicorn"``: gunicorn with
    uvicorn's workers, as runportal and deploy/ run it) on the test database; yields its host
    and port. It shares the test process's secret key, so sessions signed in here (cookies)
    and tokens made here are good there."""
    port = free_port()
    log = (folder / "web.log").open("wb")
    environment = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": str(settings.CELERY_BROKER_URL),
        "SECRET_KEY": str(settings.SECRET_KEY),
        "PORTAL_VAR_DIR": str(folder / "var"),
        "LOG_LEVEL": "WARNING",
        # As the web runs in production (runportal, deploy/): connections from a pool.
        "DATABASE_POOL_SIZE": "8",
        **env,
    }
    command = [
        sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--log-level", "warning",
        "--no-access-log",
    ]  # fmt: skip
    if server == "gunicorn":
        command = [
            sys.executable, "-m", "gunicorn", "portal.asgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--worker-class", "uvicorn_worker.UvicornWorker", "--log-level", "warning",
            "--no-control-socket",
        ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=settings.BASE_DIR, env=environment, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the web exited: {(folder / 'web.log').read_text()[-3000:]}")
            try:
                if get("127.0.0.1", port, "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the web did not answer within 60 s")
            time.sleep(0.1)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        _server_connections_gone()


def _server_connections_gone(timeout: float = 10) -> None:
    """The server's connections end with it, but PostgreSQL may take a moment to notice: the
    test database cannot be flushed or dropped before."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.1)


def get(
    host: str, port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def bearer(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}
