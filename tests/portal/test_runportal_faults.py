"""runportal through faults (issue 13): the embedded broker killed outright with a session
running, and the web's gunicorn master killed outright. Each time runportal brings back the one
process that died, the others run on (the workers reconnect to the broker), and the portal
serves as before. Real processes: runportal on a temporary var/, a real JupyterLab session."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests

from tests.portal.embedded import _USERS_SCRIPT, EmbeddedPortal, launch_stop_loop

pytestmark = pytest.mark.integration

# The default environment's server: JupyterLab (a session that runs holds a deadline task).
# make_users sets a server that never answers (its sessions stay starting): launch_stop_loop's.
JUPYTERLAB: list[str] = []
START_SECONDS = 120
RECOVERY_SECONDS = 60


@pytest.fixture(scope="module")
def portal() -> Iterator[EmbeddedPortal]:
    # A short folder: the broker's socket path must fit a Unix socket's 107 characters.
    with tempfile.TemporaryDirectory(prefix="jlp-") as tmp:
        extra = {
            # The faults are under test, not the sandbox: sessions run as the portal's user.
            "LOCAL_ISOLATION": "off",
            # Lost work is re-sent by the sweeps: slowed down here, so that what the test sees
            # was done by the processes that lived through the fault.
            "SESSION_SWEEP_SECONDS": "3600",
        }
        with EmbeddedPortal(Path(tmp) / "var", extra_env=extra) as running:
            yield running


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _serves(portal: EmbeddedPortal) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(f"{portal.base}/login/", timeout=5).status_code == 200
    return False


def _api(portal: EmbeddedPortal, prefix: str) -> requests.Session:
    env = {"LOOP_USERS": "1", "LOOP_PREFIX": prefix, "LOOP_COMMAND": json.dumps(JUPYTERLAB)}
    [token] = json.loads(portal.manage("shell", "-c", _USERS_SCRIPT, env=env).splitlines()[-1])
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    return api


def _state(portal: EmbeddedPortal, api: requests.Session) -> str | None:
    answer = api.get(f"{portal.base}/api/v1/session/", timeout=30)
    return str(answer.json()["state"]) if answer.status_code == 200 else None


def test_the_embedded_broker_killed_outright_is_back_and_every_worker_reconnects(
    portal: EmbeddedPortal,
) -> None:
    # Given a running session, whose deadline task the control worker holds unacknowledged
    _until(lambda: _serves(portal), START_SECONDS, "the web")
    api = _api(portal, "broker")
    launched = api.post(
        f"{portal.base}/api/v1/session/", json={"environment": "ecmwf-dss"}, timeout=30
    )
    assert launched.status_code == 201, launched.text[:300]
    _until(lambda: _state(portal, api) == "running", START_SECONDS, "the session to run")
    _until(
        lambda: "Task sessions_app.tasks.expire_session[" in portal.output(),
        30,
        "the deadline task to reach the worker",
    )
    names = ("web", "worker-control", "worker-spawn", "worker-storage", "beat")
    before = {name: portal.child_pid(name) for name in names}
    broker = portal.child_pid("broker")
    assert broker is not None and None not in before.values()
    seen = portal.mark()

    # When the broker is killed outright
    os.kill(broker, signal.SIGKILL)

    # then runportal starts it again, and every other process lives through it and works on:
    # the session is stopped, another user launches and stops
    _until(lambda: portal.child_pid("broker") not in (None, broker), 30, "a new broker")
    assert api.delete(f"{portal.base}/api/v1/session/", timeout=30).status_code == 202
    _until(lambda: _state(portal, api) is None, RECOVERY_SECONDS, "the stop")
    outcome = launch_stop_loop(portal.base, portal.make_users(1, prefix="after"), 2)
    assert outcome.errors == []
    after = portal.since(seen)
    assert {name: portal.child_pid(name) for name in names} == before, after[-3000:]
    assert "Unrecoverable error" not in after
    assert portal.since(seen, "runportal").count("restarting in") == 1  # the broker's


def test_the_web_master_killed_outright_is_replaced_and_its_workers_go_with_it(
    portal: EmbeddedPortal,
) -> None:
    # Given the web serving: gunicorn's master and its workers
    _until(lambda: _serves(portal), START_SECONDS, "the web")
    master = portal.child_pid("web")
    assert master is not None
    workers = psutil.Process(master).children()
    assert workers

    # When the master is killed outright
    os.kill(master, signal.SIGKILL)

    # then runportal starts a new one, which serves, and the old workers are gone
    _until(lambda: portal.child_pid("web") not in (None, master), 30, "a new web")
    _until(lambda: _serves(portal), RECOVERY_SECONDS, "the new web to serve")
    _, alive = psutil.wait_procs(workers, timeout=RECOVERY_SECONDS)
    assert alive == []
    assert launch_stop_loop(portal.base, portal.make_users(1, prefix="web"), 1).errors == []
