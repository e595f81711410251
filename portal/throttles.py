"""Request rates of the API: per signed-in person and per client address, shared by every web
process through the cache (settings, ``CACHES``: Redis on the Celery broker).

Each limit counts requests in a fixed window (``N/minute``: this minute's); one over it is
answered 429 with ``Retry-After`` (the seconds to the window's end) and the API's JSON error
shape, code ``throttled``. The counters are Redis ``INCR``s, all of a request's in one script
(one round trip): atomic, so parallel requests cannot slip past the limit together. A fixed
window lets a client send up to twice the rate across a window's edge; the limits are generous
enough that this does not matter. Only the REST API is throttled (``REST_FRAMEWORK``): the
probes, the metrics, the forward-auth and the pages are plain Django views.

When the cache cannot be reached the request is let through (and logged): a broker outage
must not turn every read into an error.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from portal.client_ip import client_ip
from portal.env import parse_rate

log = logging.getLogger(__name__)

CACHE_ALIAS = "default"


class RequestRateThrottle(BaseThrottle):
    """Both limits of ``API_THROTTLE_USER`` (per signed-in person) and
    ``API_THROTTLE_ADDRESS`` (per client address, everyone's requests)."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        now = time.time()
        limits: list[tuple[str, int, int, float]] = []  # key, allowed, period, window's end
        user = getattr(request, "user", None)
        per_user = parse_rate("API_THROTTLE_USER", settings.API_THROTTLE_USER)
        if per_user is not None and user is not None and user.is_authenticated:
            limits.append(self._limit("user", str(user.pk), per_user, now))
        per_address = parse_rate("API_THROTTLE_ADDRESS", settings.API_THROTTLE_ADDRESS)
        address = client_ip(request._request)
        if per_address is not None and address:
            limits.append(self._limit("address", address, per_address, now))
        if not limits:
            return True
        try:
            counts = _count([key for key, *_ in limits], [period for _, _, period, _ in limits])
        except Exception:  # noqa: BLE001 - any cache failure: let the request through
            log.warning("request rates not counted (the cache does not answer)", exc_info=True)
            return True
        over = [
            end - now
            for (_, allowed, _, end), count in zip(limits, counts, strict=True)
            if count > allowed
        ]
        if over:
            self._wait = max(over)
            return False
        return True

    @staticmethod
    def _limit(
        scope: str, ident: str, rate: tuple[int, int], now: float
    ) -> tuple[str, int, int, float]:
        allowed, period = rate
        window = int(now // period)
        return f"throttle:{scope}:{ident}:{period}:{window}", allowed, period, (window + 1) * period

    def wait(self) -> float | None:
        # Whole seconds, at least one: Retry-After is an integer.
        return None if self._wait is None else max(1, math.ceil(self._wait))


_scripts: weakref.WeakKeyDictionary[RedisCache, Any] = weakref.WeakKeyDictionary()
# Adds one to each counter (KEYS) and returns the new values; a new counter expires after its
# period (ARGV). One script: a counter is never left without its expiry.
_COUNT_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
    counts[i] = redis.call('INCR', key)
    if counts[i] == 1 then redis.call('EXPIRE', key, ARGV[i]) end
end
return counts
"""


def _count(keys: list[str], periods: list[int]) -> list[int]:
    """Add one to each counter and return their new values; each expires after its period."""
    cache = caches[CACHE_ALIAS]
    if isinstance(cache, RedisCache):
        script = _scripts.get(cache)
        if script is None:
            # Django's cache API has no atomic "increment or create": hence its Redis client,
            # one per cache object (per thread) on the cache's own pool (Django's cache would
            # make a new client for each call, half of the cost of a check).
            script = cache._cache.get_client(None, write=True).register_script(_COUNT_SCRIPT)
            _scripts[cache] = script
        made = [cache.make_and_validate_key(key) for key in keys]
        answers = script(keys=made, args=[period + 1 for period in periods])
        return [int(value) for value in answers]
    counts = []
    for key, period in zip(keys, periods, strict=True):
        cache.add(key, 0, period + 1)
        counts.append(int(cache.incr(key)))
    return counts
