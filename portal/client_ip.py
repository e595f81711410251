"""The address of the person making a request, as recorded with terms acceptances.

Behind ``TRUSTED_PROXY_HOPS`` reverse proxies (an ingress controller, a load balancer), the
socket's peer is the nearest proxy; each proxy appends the address it saw to
``X-Forwarded-For``. Only the last ``TRUSTED_PROXY_HOPS`` entries were written by proxies we
run, so the client is the entry that many places from the end: anything before it is what the
client itself claimed, and is ignored.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    peer = request.META.get("REMOTE_ADDR") or None
    hops: int = settings.TRUSTED_PROXY_HOPS
    if hops <= 0:
        return peer
    forwarded = [
        part.strip()
        for part in request.headers.get("x-forwarded-for", "").split(",")
        if part.strip()
    ]
    if len(forwarded) < hops:
        return peer  # not through our proxies (a probe, a request inside the cluster)
    candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer
