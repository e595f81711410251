"""The shared cache (Redis on the broker) cut off: the API's request rates let requests through
(portal/throttles.py), the identity provider's tokens are checked with the provider rather than
the cache (accounts_app/api_auth.py), and no call answers 500. The cut is real: the cache is
reached through a forwarder (outage_world.py) that resets its connections."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from portal.tokens import token_issue
from sessions_app.models import Environment
from tests.conftest import PASSWORD, login_verified
from tests.portal.outage_world import TcpForwarder

pytestmark = [pytest.mark.django_db, pytest.mark.integration]

ENVIRONMENTS = "/api/v1/environments/"


@pytest.fixture
def cache_forwarder(settings: Any) -> Iterator[TcpForwarder]:
    """The shared cache, reached through a forwarder, under a key prefix of this test's."""
    broker = urlsplit(str(django_settings.CELERY_BROKER_URL))
    if broker.scheme != "redis":
        pytest.skip("the shared cache is Redis on a TCP broker (CELERY_BROKER_URL) only")
    forwarder = TcpForwarder((broker.hostname or "127.0.0.1", broker.port or 6379))
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://127.0.0.1:{forwarder.port}{broker.path}",
            "KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        }
    }
    try:
        yield forwarder
    finally:
        forwarder.close()


def test_with_the_cache_cut_rates_count_nothing_and_no_call_fails(
    settings: Any, cache_forwarder: TcpForwarder, accepted: User, environment: Environment
) -> None:
    # Given request rates counted in the cache, and a token and a browser that used them
    settings.API_THROTTLE_USER = "100/minute"
    settings.API_THROTTLE_ADDRESS = "100/minute"
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(user=accepted)}")
    browser = APIClient()
    login_verified(browser, accepted)
    assert api.get(ENVIRONMENTS).status_code == 200
    before = cache_forwarder.accepted

    # When the cache is cut off
    cache_forwarder.cut()

    # then the API answers as before, unthrottled, and so do the pages
    assert [api.get(ENVIRONMENTS).status_code for _ in range(3)] == [200] * 3
    assert browser.get("/api/v1/session/").status_code == 404  # no session: the usual answer
    assert browser.get("/session/").status_code == 200
    assert cache_forwarder.accepted > before  # the cache was asked, and did not answer


def test_with_the_cache_cut_a_provider_token_is_checked_with_the_provider(
    settings: Any, cache_forwarder: TcpForwarder, oidc: Any, environment: Environment
) -> None:
    # Given whom a provider's token is for, remembered in the cache
    settings.OIDC_BEARER_CACHE_SECONDS = 60
    username = f"u{uuid.uuid4().hex[:8]}"
    oidc.add_user(username, PASSWORD, email=f"{username}@example.org", groups=["staff"], mfa=True)
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {oidc.password_grant(username, PASSWORD)['access_token']}"
    )
    assert client.get(ENVIRONMENTS).status_code == 200

    # When the cache is cut off
    cache_forwarder.cut()

    # then the token still works (the provider is asked), and the provider's word still counts
    assert client.get(ENVIRONMENTS).status_code == 200
    oidc.add_user(username, PASSWORD, groups=[], mfa=True)
    refused = client.get(ENVIRONMENTS)
    assert (refused.status_code, refused.json()["code"]) == (403, "access_denied")
