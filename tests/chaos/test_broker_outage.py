"""Redis, the broker, away for a while with sessions running (issue 13, rows 1 and 2).

With acks_late every running session's deadline task sits unacknowledged in the worker, and
kombu's Redis transport crashed the worker when it lost the broker with those in hand; launches
and stops meanwhile answered HTML 500 although their rows were committed. Expected: every
process rides the outage out, a launch and a stop asked meanwhile are answered 201 and 202 (the
row is the outbox) and happen once the broker is back.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.checks import assert_settled
from tests.chaos.stack import Stack

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

OUTAGE_SECONDS = 12
# After the broker is back: the workers reconnect, a sweep (every 5 s in the stack) sends what
# could not be sent, and a server starts (a few seconds on a small machine).
RECOVERY_SECONDS = 60


def test_broker_outage_with_sessions_running_loses_no_launch_or_stop(stack: Stack) -> None:
    # Given two users whose sessions run (each with its deadline task held by the worker)
    keep, leave, late = stack.names[:3]
    for name in (keep, leave):
        assert stack.launch(name).status_code == 201
    stack.wait_states([keep, leave], ("running",), 120)
    processes = stack.pids()

    # When the broker stops, and meanwhile one user launches, one stops and one looks
    assert stack.redis is not None
    stack.redis.stop()
    began = time.monotonic()
    launched = stack.launch(late)
    stopped = stack.call(leave, "DELETE", "session/")
    looked = stack.call(keep, "GET", "session/")
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - began)))
    alive_in_outage = stack.pids()
    stack.redis.start()

    # Then the requests were answered as if the broker were there
    answers = [(r.status_code, r.headers.get("Content-Type")) for r in (launched, stopped, looked)]
    json = "application/json"
    bodies = [r.text[:300] for r in (launched, stopped, looked)]
    assert answers == [(201, json), (202, json), (200, json)], bodies
    # ... no process of the portal died, during the outage or after it
    assert alive_in_outage == processes
    # ... the launch and the stop happened once the broker was back, the other session runs on
    rows = stack.wait_states([late], ("running",), RECOVERY_SECONDS)
    ended = stack.wait_states([leave], ("stopped",), RECOVERY_SECONDS)
    assert ended[leave]["reason"] == "user_stopped"
    assert (stack.latest(keep) or {}).get("state") == "running"
    assert rows[late]["url"]
    time.sleep(2)  # a worker that dies on the reconnection does so at once
    assert stack.pids() == processes
    assert_settled(stack)
