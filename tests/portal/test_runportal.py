"""The embedded default, as `make run` starts it: SQLite, the embedded broker (runportal's own
redis-server), a real worker and beat, the local spawner - from launch through the API to a
stopped session."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from django.conf import settings

from tests.portal.embedded import free_fixed_port

pytestmark = pytest.mark.integration


def _embedded_env(var_dir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL")
    }
    env["PORTAL_VAR_DIR"] = str(var_dir)
    return env


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[dict[str, Any]]:
    port = free_fixed_port()  # outside the ephemeral range a client socket could hold
    env = _embedded_env(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runportal", "--port", str(port)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    banner = ""
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while "Stop with Ctrl+C." not in banner and time.monotonic() < deadline:
        banner += process.stdout.readline()
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                requests.get(f"{base}/login/", timeout=10)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline, "the web server did not come up"
                time.sleep(0.2)
        yield {"base": base, "banner": banner, "env": env, "process": process, "var": tmp_path}
    finally:
        children = psutil.Process(process.pid).children(recursive=True)
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        psutil.wait_procs(children, timeout=30)


def test_make_run_serves_a_working_portal_on_the_embedded_default(portal: dict[str, Any]) -> None:
    # Given the portal as `make run` starts it, which says where it runs, how to sign in, how
    # to admit a person and where the logs are, and nothing else: every process writes to a
    # file of its own in var/log/, private like the rest of var/
    banner = portal["banner"]
    assert f"The portal runs at {portal['base']}/" in banner
    assert "Sign in as 'admin'" in banner
    assert "Users → Add user" in banner and '"Grant portal access"' in banner
    logs = portal["var"] / "log"
    assert f"Logs: {logs}/" in banner
    assert "celery" not in banner.lower() and "gunicorn" not in banner.lower()
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    names = {path.stem for path in logs.glob("*.log")}
    assert names >= {"runportal", "broker", "router", "web", "beat", "worker-spawn"}, names
    for path in logs.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    token = subprocess.run(
        [sys.executable, "manage.py", "issue_token", "admin", "--force"],
        cwd=settings.BASE_DIR,
        env=portal["env"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    base = f"{portal['base']}/api/v1"

    # When the admin accepts the terms and launches the default environment
    version = api.get(f"{base}/terms/current/").json()["version"]
    assert api.post(f"{base}/terms/accept/", json={"version": version}).status_code == 201
    assert api.post(f"{base}/session/", json={"environment": "ecmwf-dss"}).status_code == 201

    # then the worker (through the embedded broker) brings a real JupyterLab up
    deadline = time.monotonic() + 90
    session = api.get(f"{base}/session/").json()
    while session["state"] != "running":
        assert session["state"] in ("queued", "starting"), session
        assert time.monotonic() < deadline, session
        time.sleep(0.2)
        session = api.get(f"{base}/session/").json()
    # on the portal's own address, through the router: the owner's portal token opens it,
    # nobody else gets in.
    assert session["url"] == f"{portal['base']}/user/admin/lab"
    assert api.get(session["url"].replace("/lab", "/api/status"), timeout=10).status_code == 200
    assert requests.get(session["url"], timeout=10).status_code == 401

    # and stopping it through the API ends it
    assert api.delete(f"{base}/session/").status_code == 202
    while api.get(f"{base}/session/").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert api.get(f"{base}/sessions/").json()["results"][0]["state"] == "stopped"
