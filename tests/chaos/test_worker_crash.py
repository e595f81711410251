"""The spawn worker killed (-9) while sessions start (issue 13, row 3).

The servers came up, but nothing resumed the starts: the killed worker's spawn tasks stay
unacknowledged in Redis for the 12 h visibility timeout, and the sessions failed ("Start-up was
interrupted") minutes later, one server running on with no usable row. Expected: the restarted
worker adopts every start (the spawner state is on the row) and finishes it within seconds;
nothing fails, nothing is left behind.
"""

from __future__ import annotations

import pytest

from tests.chaos.checks import assert_settled
from tests.chaos.stack import Stack, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

STARTS = 4
# From the restarted worker's "ready": "within seconds" (issue 13, item 3), with room for four
# JupyterLab servers that start at once on a small machine (about 10 s on 2 CPUs).
RESUME_SECONDS = 30


def test_worker_killed_while_sessions_start_loses_no_start(stack: Stack) -> None:
    # Given four launches at once
    names = stack.names[:STARTS]
    for name in names:
        assert stack.launch(name).status_code == 201

    # When the spawn worker is killed outright the moment a start is under way
    def under_way() -> list[dict[str, object]]:
        return [row for row in stack.active() if row["state"] == "starting"]

    starting = wait_for(under_way, 60, "a start under way", interval=0.005)
    killed = stack.kill("worker-spawn")
    # (how far the first start had got: without a server state, only the lost task knew it)
    midway = [row["username"] for row in starting if not row["spawner_state"]]
    # ... and runportal brings it back
    wait_for(lambda: stack.pid("worker-spawn") not in (None, killed), 30, "a new spawn worker")
    stack.wait_up(60)

    # Then every start finishes soon after: all run, none failed
    try:
        stack.wait_states(names, ("running",), RESUME_SECONDS)
    except AssertionError as exc:
        raise AssertionError(f"{exc} (killed while {midway} had no server state yet)") from None
    assert_settled(stack)
