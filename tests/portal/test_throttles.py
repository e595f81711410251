"""Request rates of the API (portal/throttles.py): per person and per address, counted in the
shared cache (Redis on the broker), answered 429 with Retry-After and the API's error shape;
nothing outside the REST API is ever throttled, and a cache that does not answer throttles
nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from rest_framework.test import APIClient

from portal.env import parse_rate
from portal.settings import _shared_cache
from portal.tokens import token_issue

pytestmark = pytest.mark.django_db

ENVIRONMENTS = "/api/v1/environments/"


@pytest.fixture
def counters(settings: Any) -> None:
    """The shared cache, under a prefix of this test's own: counters of other tests (and of an
    earlier run, in the same minute) are not this test's."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    }
    assert "RedisCache" in settings.CACHES["default"]["BACKEND"]  # shared, as in production


def _client(user: AbstractBaseUser, address: str = "192.0.2.10") -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(user=user)}")
    return client


def _assert_throttled(response: Any) -> None:
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    body = response.json()
    assert body["code"] == "throttled"
    assert body["detail"]


def test_a_person_over_their_rate_is_answered_429_and_others_are_not(
    settings: Any, counters: None, owner: AbstractBaseUser, other_user: AbstractBaseUser
) -> None:
    # Given three requests a minute per person
    settings.API_THROTTLE_USER = "3/minute"
    mine, theirs = _client(owner), _client(other_user, address="192.0.2.11")

    # When the owner sends a fourth
    answers = [mine.get(ENVIRONMENTS).status_code for _ in range(3)]
    fourth = mine.get(ENVIRONMENTS)

    # then the first three are served and the fourth is refused, with when to come back
    assert answers == [200, 200, 200]
    _assert_throttled(fourth)
    # also on the other endpoints, since the limit is the person's
    _assert_throttled(mine.get("/api/v1/sessions/"))
    # while another person is served as before
    assert theirs.get(ENVIRONMENTS).status_code == 200


def test_an_address_over_its_rate_is_answered_429_whoever_sends(
    settings: Any, counters: None, owner: AbstractBaseUser, other_user: AbstractBaseUser
) -> None:
    # Given three requests a minute per address, and two people behind one address
    settings.API_THROTTLE_ADDRESS = "3/minute"
    first, second = _client(owner), _client(other_user)
    elsewhere = _client(other_user, address="198.51.100.7")

    # When they send four requests between them
    answers = [first.get(ENVIRONMENTS).status_code, second.get(ENVIRONMENTS).status_code]
    answers.append(first.get(ENVIRONMENTS).status_code)
    fourth = second.get(ENVIRONMENTS)

    # then the fourth is refused, and the same person from another address is served
    assert answers == [200, 200, 200]
    _assert_throttled(fourth)
    assert elsewhere.get(ENVIRONMENTS).status_code == 200


def test_probes_metrics_pages_and_forward_auth_are_never_throttled(
    settings: Any, counters: None, owner: AbstractBaseUser
) -> None:
    # Given the lowest limits there are, and the owner already over them on the API
    settings.API_THROTTLE_USER = "1/minute"
    settings.API_THROTTLE_ADDRESS = "1/minute"
    token = token_issue(user=owner)
    api = APIClient(REMOTE_ADDR="192.0.2.10", HTTP_AUTHORIZATION=f"Bearer {token}")
    api.get(ENVIRONMENTS)
    _assert_throttled(api.get(ENVIRONMENTS))

    # When the same address asks everything outside the REST API, many times
    browser = Client(REMOTE_ADDR="192.0.2.10", HTTP_AUTHORIZATION=f"Bearer {token}")
    paths = ["/healthz", "/readyz", "/metrics", "/auth/route/", "/login/", "/session/status/"]
    statuses = {path: {browser.get(path).status_code for _ in range(5)} for path in paths}

    # then none is refused for its rate, and none fails
    for path, seen in statuses.items():
        assert 429 not in seen, path
        assert max(seen) < 500, (path, seen)


def test_a_cache_that_does_not_answer_throttles_nothing(
    settings: Any, owner: AbstractBaseUser
) -> None:
    # Given limits, and a shared cache on a port where nothing listens
    settings.API_THROTTLE_USER = "1/minute"
    settings.API_THROTTLE_ADDRESS = "1/minute"
    settings.CACHES = {"default": _shared_cache("redis://127.0.0.1:9/0")}
    client = _client(owner)

    # When the owner sends requests, then they are all served: no 429, no 5xx
    assert [client.get(ENVIRONMENTS).status_code for _ in range(3)] == [200, 200, 200]


def test_the_embedded_broker_socket_is_the_cache_s_unix_url() -> None:
    cache = _shared_cache("redis+socket:///srv/portal/var/broker/redis.sock")
    assert cache["LOCATION"] == "unix:///srv/portal/var/broker/redis.sock"
    assert _shared_cache("redis://broker:6379/3")["LOCATION"] == "redis://broker:6379/3"
    assert "LocMemCache" in str(_shared_cache("memory://")["BACKEND"])


@pytest.mark.parametrize("value", ["10", "ten/minute", "0/minute", "5/fortnight"])
def test_a_rate_that_is_not_one_is_refused_at_start(value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="API_THROTTLE_USER"):
        parse_rate("API_THROTTLE_USER", value)


def test_rates_read_as_requests_per_period() -> None:
    assert parse_rate("X", "1200/minute") == (1200, 60)
    assert parse_rate("X", " 5 / second ") == (5, 1)
    assert parse_rate("X", "off") is None
