"""The client's address behind trusted proxies (recorded with terms acceptances)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory

from portal.client_ip import client_ip


@pytest.mark.parametrize(
    ("hops", "forwarded", "expected"),
    [
        (0, "198.51.100.7", "10.0.0.2"),  # no proxy trusted: the header is the client's claim
        (1, "198.51.100.7", "198.51.100.7"),
        (1, "203.0.113.66, 198.51.100.7", "198.51.100.7"),  # a forged entry first is ignored
        (2, "203.0.113.66, 198.51.100.7, 10.0.0.9", "198.51.100.7"),
        (1, "", "10.0.0.2"),  # not through the proxy (a probe inside the cluster)
        (2, "198.51.100.7", "10.0.0.2"),  # fewer entries than proxies
        (1, "not-an-address", "10.0.0.2"),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_the_client_is_the_entry_the_trusted_proxies_wrote(
    settings: Any, hops: int, forwarded: str, expected: str
) -> None:
    settings.TRUSTED_PROXY_HOPS = hops
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", headers=headers)

    assert client_ip(request) == expected
