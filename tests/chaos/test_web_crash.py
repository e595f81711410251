"""The web killed (-9): one of gunicorn's workers, then its master (issue 13, row 8).

A killed worker dropped the request it served, and a retry was fine; a killed master left
nothing serving until restarted by hand. Expected: requests are answered again within seconds
in both cases (gunicorn replaces its worker, runportal its master) and no old worker lingers.
"""

from __future__ import annotations

import os
import signal

import psutil
import pytest
import requests

from tests.chaos.checks import assert_settled
from tests.chaos.stack import Stack, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

# A worker: the master's other worker answers at once, a new one boots in a few seconds.
WORKER_RECOVERY_SECONDS = 5.0
# The master: runportal's first back-off (1 s), then gunicorn and Django boot (~5 s loaded).
MASTER_RECOVERY_SECONDS = 30.0


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _answered(stack: Stack, name: str) -> bool:
    try:
        return stack.call(name, "GET", "environments/", timeout=10).status_code == 200
    except requests.RequestException:
        return False


def test_killed_web_worker_is_replaced_and_requests_recover(stack: Stack) -> None:
    # Given the web with its two workers, answering
    name = stack.names[0]
    assert _answered(stack, name)
    workers = stack.web_workers()
    assert len(workers) == 2

    # When one worker is killed outright
    os.kill(workers[0], signal.SIGKILL)

    # Then requests are answered again within seconds, and gunicorn replaces the worker
    wait_for(lambda: _answered(stack, name), WORKER_RECOVERY_SECONDS, "an answer")
    wait_for(lambda: len(set(stack.web_workers()) - {workers[0]}) == 2, 30, "a new second worker")
    assert_settled(stack)


def test_killed_web_master_is_restarted_and_requests_recover(stack: Stack) -> None:
    # Given the web, answering
    name = stack.names[0]
    assert _answered(stack, name)
    old_workers = stack.web_workers()

    # When gunicorn's master is killed outright
    master = stack.kill("web")

    # Then requests are answered again within seconds by a new master
    wait_for(
        lambda: stack.pid("web") not in (None, master) and _answered(stack, name),
        MASTER_RECOVERY_SECONDS,
        "an answer from a new master",
        interval=0.2,
    )
    # ... and the old master's workers are gone (none holds the socket, or serves old code)
    wait_for(
        lambda: not [pid for pid in old_workers if _running(pid)],
        30,
        "the old workers' end",
    )
    assert_settled(stack)
