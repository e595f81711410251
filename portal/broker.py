"""Sending a task without failing the caller when the broker is away.

The database row is the outbox: a request commits the new state (a session queued, stopping),
and the task that acts on it is sent once the transaction commits. A broker that does not take
the message must not turn that committed change into an error page: the send is logged, and the
sweeps send the work again from the rows once the broker is back (the admission pass for queued
sessions, ``sessions_app.services.sessions_expire_overdue`` for admitted and stopping ones and for
deadlines). Every task sent here is safe to run twice, so a send that did reach the broker but
timed out on its answer costs nothing either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

# What a broker that is down, restarting or hanging raises: kombu wraps the transport's
# connection errors in OperationalError; the rest can escape unwrapped from a pooled connection
# (socket errors and timeouts are OSErrors).
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
)

# One attempt: a request waits at most the broker's socket timeout (settings,
# CELERY_BROKER_TRANSPORT_OPTIONS) for a broker that hangs, and not at all for one that refuses.
# A pooled connection that a broker restart cut is replaced by redis-py within that attempt.
PUBLISH_RETRY_POLICY = {"max_retries": 0}


def send(task: Any, args: Sequence[Any] = (), **options: Any) -> bool:
    """``task.apply_async(args, **options)``; False, with a warning, if the broker did not take
    it (the caller's sweep sends it again)."""
    try:
        task.apply_async(args=list(args), retry=True, retry_policy=PUBLISH_RETRY_POLICY, **options)
    except BROKER_ERRORS as exc:
        log.warning(
            "broker: %s(%s) not sent (%s); the sweep sends it again",
            task.name, ", ".join(map(str, args)), exc,
        )  # fmt: skip
        return False
    return True
