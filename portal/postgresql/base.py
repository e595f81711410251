"""Django's PostgreSQL back-end, which answers at once while its pool cannot get a connection.

With ``DATABASE_POOL_SIZE`` (the web), a request that needs a connection while the database
does not answer waits for the pool's ``timeout`` before it fails (503, ``portal/outage.py``),
holding its thread meanwhile; and the waiting views' reads, which take turns on one thread
(``sessions_app/live.py``), would each wait that long in a row. So once the pool has timed out,
the process stops asking it for ``HOLD_SECONDS``: requests fail at once. Then one request at a
time — the trial — asks the pool again (which reconnects while it waits), the others still
failing at once; the first that gets a connection closes the breaker. So the portal is back at
most ``HOLD_SECONDS`` after the database. Without a pool, Django's back-end is used as it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg_pool import PoolTimeout

#: How long after a pool timeout connections are not asked for at all.
HOLD_SECONDS = 2.0


class PoolBreaker:
    """Open after a pool timeout; after ``HOLD_SECONDS``, one trial at a time until one gets a
    connection."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._open = False
        self._held_until = 0.0
        self._trial = False

    def enter(self) -> bool:
        """Whether this attempt is the trial; raises while the breaker holds or another trial
        is under way."""
        with self._lock:
            if not self._open:
                return False
            if self._trial or self._clock() < self._held_until:
                raise psycopg.OperationalError(
                    "the database did not answer a moment ago (the pool timed out)"
                )
            self._trial = True
            return True

    def leave(self, trial: bool, outcome: bool | None) -> None:
        """``outcome``: connected (True), timed out (False), or another error (None)."""
        with self._lock:
            if trial:
                self._trial = False
            if outcome is True:
                self._open = False
            elif outcome is False:
                self._open = True
                self._held_until = self._clock() + HOLD_SECONDS


_breakers: dict[str, PoolBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(alias: str) -> PoolBreaker:
    """This process's breaker of the pool of database ``alias``."""
    with _breakers_lock:
        return _breakers.setdefault(alias, PoolBreaker())


class DatabaseWrapper(base.DatabaseWrapper):
    """Django's, with the pool behind a :class:`PoolBreaker` (one per database alias)."""

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if not self.pool:
            return super().get_new_connection(conn_params)
        breaker = breaker_for(self.alias)
        trial = breaker.enter()
        outcome: bool | None = None
        try:
            connection = super().get_new_connection(conn_params)
            outcome = True
        except PoolTimeout:
            outcome = False
            raise
        finally:
            breaker.leave(trial, outcome)
        return connection
