"""The Python API comes back when the portal says so: 429 with ``Retry-After`` from the live
portal's real request rates (``API_THROTTLE_USER``), a bounded number of times, never longer
than the caller allows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import caches
from jlp_client import ApiError, Client

from portal.throttles import CACHE_ALIAS, RequestRateThrottle
from sessions_app.models import Environment

pytestmark = pytest.mark.django_db(transaction=True)

DAY = 86_400


class Naps:
    """The client's sleep, recorded; it really sleeps (the portal's window must pass)."""

    def __init__(self) -> None:
        self.taken: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.taken.append(seconds)
        time.sleep(seconds)


def test_a_throttled_request_is_retried_after_what_retry_after_says(
    settings: Any, portal_url: str, token: str, environment: Environment
) -> None:
    # given a portal that lets one person send 2 requests a second
    settings.API_THROTTLE_USER = "2/second"
    client = Client(portal_url, token, retries=3)
    client.sleep = naps = Naps()
    # when they send 6 in a row
    answers = [client.environments() for _ in range(6)]
    # then every one succeeded, some after waiting the second the portal asked for
    assert all(answer[0]["slug"] == "ecmwf-dss" for answer in answers)
    assert naps.taken and set(naps.taken) == {1.0}


@pytest.fixture
def day_counter(owner: User) -> Iterator[None]:
    """The owner's count of a day's requests, gone before and after the test: it outlives the
    run in Redis, and a later run's owner may have the same id."""
    key = RequestRateThrottle._limit("user", str(owner.pk), (1, DAY), time.time())[0]
    caches[CACHE_ALIAS].delete(key)
    yield
    caches[CACHE_ALIAS].delete(key)


def test_the_error_carries_code_status_and_retry_after_once_retries_are_spent(
    settings: Any, portal_url: str, token: str, environment: Environment, day_counter: None
) -> None:
    # given one request a day (its window's end is not a few seconds away)
    settings.API_THROTTLE_USER = "1/day"
    client = Client(portal_url, token, retries=3, max_retry_wait=5)
    client.sleep = naps = Naps()
    client.environments()
    # when the portal asks for more patience than the caller allows
    with pytest.raises(ApiError) as raised:
        client.environments()
    # then it gives up at once, saying when to come back
    assert naps.taken == []
    error = raised.value
    assert (error.status, error.code) == (429, "throttled")
    assert error.retry_after is not None and 5 < error.retry_after <= DAY
    assert str(error) == f"{error.detail} (throttled)"
