"""PostgreSQL stopped and started again while sessions start (issue 13, row 4).

The servers came up but the spawn tasks died on OperationalError: every start was lost, and
every API call meanwhile (long polls included) answered HTML 500. Expected: no start is lost
(a spawn that meets a database error retries, the start watcher follows the server again), and
the API answers JSON 503 ``{detail, code: "unavailable"}`` with Retry-After while the database
is away, never a 500.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.chaos.checks import assert_settled, outage_problem
from tests.chaos.stack import Stack, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

STARTS = 3
# Longer than the web's wait for a database connection (settings: the pool's 10 s timeout), so
# that requests made at its start are answered while the database is still away.
OUTAGE_SECONDS = 15
# After the database is back: connections come back, starts are followed again.
RESUME_SECONDS = 45


def test_database_restart_during_starts_loses_no_start_and_answers_json_503(stack: Stack) -> None:
    assert stack.pg is not None
    names = stack.names[:STARTS]
    other = stack.names[STARTS]
    # Given three launches at once, and one of the users waiting in a long poll
    for name in names:
        assert stack.launch(name).status_code == 201
    wait_for(
        lambda: any(row["state"] == "starting" for row in stack.active()),
        60,
        "a start under way",
        interval=0.005,
    )
    pool = ThreadPoolExecutor(8)
    long_poll = pool.submit(stack.call, names[0], "GET", "session/?wait=30", timeout=60)

    # When the database stops while the starts are under way, and users ask meanwhile
    stack.pg.stop("fast")
    began = time.monotonic()
    asked = [
        *(pool.submit(stack.call, name, "GET", "session/") for name in names),
        pool.submit(stack.launch, other),
        pool.submit(stack.call, other, "GET", "environments/"),
    ]
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - began)))
    stack.pg.start()
    answers: list[requests.Response] = [future.result() for future in [*asked, long_poll]]
    pool.shutdown()

    # Then every answer was JSON, and those the outage reached said 503 "unavailable"
    problems = [problem for answer in answers if (problem := outage_problem(answer))]
    assert problems == []
    assert 503 in [answer.status_code for answer in answers], "no request met the outage"
    # ... and no start was lost: every session runs
    stack.wait_states(names, ("running",), RESUME_SECONDS)
    assert_settled(stack)
