"""The embedded default's broker holds: runportal for real (its redis-server child, a real
worker and beat, SQLite), several users looping launch/stop through the API, and a worker
killed outright that runportal brings back. The full 300 cycles x 4 users run is
bench/broker.py's (docs/benchmarks.md, "Broker")."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.portal.embedded import EmbeddedPortal, launch_stop_loop

pytestmark = pytest.mark.integration

USERS, CYCLES = 4, 25


@pytest.fixture(scope="module")
def portal() -> Iterator[EmbeddedPortal]:
    # A short folder: the broker's socket path must fit a Unix socket's 107 characters.
    with tempfile.TemporaryDirectory(prefix="jlp-") as tmp:
        extra = {
            # Lost work is re-sent by the sweeps: slowed down here, a lost task shows as a
            # session stuck in the loop instead of being repaired behind the test's back.
            "SESSION_SWEEP_SECONDS": "3600",
            # The broker is under test, not the sandbox: sessions run as the portal's user.
            "LOCAL_ISOLATION": "off",
        }
        with EmbeddedPortal(Path(tmp) / "var", extra_env=extra) as running:
            yield running


def _wait_for(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_many_launch_stop_cycles_by_four_users_lose_no_task(portal: EmbeddedPortal) -> None:
    # Given the portal on its embedded broker, and four users
    tokens = portal.make_users(USERS)
    workers = portal.worker_pids()
    assert None not in workers.values() and portal.child_pid("broker") is not None

    # When each launches and stops a session CYCLES times, all at once
    outcome = launch_stop_loop(portal.base, tokens, CYCLES)

    # then every cycle went through (every admission, spawn and stop task ran), every session
    # ended as stopped, and the same worker processes are still serving
    assert outcome.errors == []
    assert outcome.cycles == USERS * CYCLES
    assert portal.session_states() == {"stopped": USERS * CYCLES}
    assert portal.worker_pids() == workers
    assert portal.restarts() == 0
    assert "JSONDecodeError" not in portal.output()


def test_a_worker_killed_outright_is_restarted_by_runportal(portal: EmbeddedPortal) -> None:
    # Given the running portal's spawn worker
    worker = portal.child_pid("worker-spawn")
    assert worker is not None

    # When it is killed with SIGKILL
    os.kill(worker, signal.SIGKILL)

    # then runportal logs how it ended and starts a new one, and the portal works on
    _wait_for(lambda: portal.child_pid("worker-spawn") not in (None, worker))
    assert f"worker-spawn (pid {worker}) ended with killed by SIGKILL (-9)" in portal.output()
    # and says it on the terminal too, which otherwise keeps the banner alone (every process
    # writes to its own log in var/log/: no gunicorn, redis or beat lines)
    terminal = portal.terminal()
    assert f"worker-spawn (pid {worker}) ended with killed by SIGKILL (-9)" in terminal
    assert "Booting worker" not in terminal and "Server initialized" not in terminal
    assert "beat: Starting" not in terminal
    assert portal.child_pid("web") is not None and portal.child_pid("broker") is not None
    outcome = launch_stop_loop(portal.base, portal.make_users(2, prefix="after"), 3)
    assert outcome.errors == []
