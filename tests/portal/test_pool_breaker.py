"""The web's pool behind a breaker (portal/postgresql/base.py): once the pool has timed out,
connections are not asked for a moment, then by one trial at a time, until one is had. The
whole, with a real outage, runs in test_db_outage.py; here the rule, on a clock of the test's."""

from __future__ import annotations

import psycopg
import pytest

from portal.postgresql.base import HOLD_SECONDS, PoolBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_closed_breaker_lets_every_attempt_through_as_no_trial() -> None:
    breaker = PoolBreaker(Clock())
    assert [breaker.enter() for _ in range(3)] == [False] * 3


def test_after_a_pool_timeout_attempts_fail_at_once_until_the_hold_is_over() -> None:
    # Given a pool that timed out
    clock = Clock()
    breaker = PoolBreaker(clock)
    breaker.leave(breaker.enter(), outcome=False)

    # then attempts within the hold fail at once
    clock.now += HOLD_SECONDS / 2
    with pytest.raises(psycopg.OperationalError):
        breaker.enter()

    # and after it one of them is the trial, while the others still fail
    clock.now += HOLD_SECONDS
    assert breaker.enter() is True
    with pytest.raises(psycopg.OperationalError):
        breaker.enter()


def test_a_trial_that_times_out_holds_again_and_one_that_connects_closes_the_breaker() -> None:
    clock = Clock()
    breaker = PoolBreaker(clock)
    breaker.leave(breaker.enter(), outcome=False)
    clock.now += HOLD_SECONDS

    # When the trial times out too, then the breaker holds again
    breaker.leave(breaker.enter(), outcome=False)
    with pytest.raises(psycopg.OperationalError):
        breaker.enter()

    # When the next trial is beaten by another error, the one after it may try
    clock.now += HOLD_SECONDS
    breaker.leave(breaker.enter(), outcome=None)
    trial = breaker.enter()
    assert trial is True

    # When it connects, then every attempt goes through again
    breaker.leave(trial, outcome=True)
    assert [breaker.enter() for _ in range(3)] == [False] * 3
