"""Tell waiting clients that a session changed: the publishing half of the session events.

Every write of a session row that a client may be waiting for (its state, progress message,
admission, deadline) calls :func:`session_changed` with the session's id; a change of the queue
order calls :func:`queue_changed`. The web's waiting views (``sessions_app.waiting``) listen and
wake the clients of that session, which then read the row: the row stays the truth, a message
only says "look again".

Two transports, one per database, so that no poll loop is needed anywhere:

- **PostgreSQL**: ``NOTIFY`` on the database itself, sent inside the writing transaction, so it
  is delivered on commit and dropped on rollback (PostgreSQL collapses repeats within one
  transaction). The web's listener holds one ``LISTEN`` connection per process.
- **SQLite** (the embedded default): Redis pub/sub on the portal's broker (the embedded
  redis-server, or ``CELERY_BROKER_URL`` when it is Redis), published once the transaction
  commits.

The channel's name includes the database's, so two portals (or test runs) on one server or
broker never hear each other.
"""

from __future__ import annotations

import logging
import re
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction

log = logging.getLogger(__name__)

#: The payload that wakes every client waiting in the queue (their places may have changed).
QUEUE = "queue"


def channel_name() -> str:
    """``jlp_sessions_<database name>``: letters, digits and underscores only, 63 at most (a
    PostgreSQL identifier)."""
    database = str(connection.settings_dict.get("NAME") or "default")
    return ("jlp_sessions_" + re.sub(r"[^A-Za-z0-9_]", "_", database.rsplit("/", 1)[-1]))[:63]


def transport() -> str:
    """``postgres`` (NOTIFY), ``redis`` (pub/sub on the broker) or ``none`` (waiting clients
    fall back to re-reading now and then): ``SESSION_EVENTS``, where ``auto`` takes the
    database's own when it is PostgreSQL, else the broker when it is Redis."""
    choice = settings.SESSION_EVENTS
    if choice == "off":
        return "none"
    if choice == "postgres" or (choice == "auto" and connection.vendor == "postgresql"):
        return "postgres" if connection.vendor == "postgresql" else "none"
    return "redis" if redis_url() else "none"


def redis_url() -> str | None:
    """The broker's address as redis-py takes it, or None if the broker is not Redis."""
    url = str(settings.CELERY_BROKER_URL or "")
    if url.startswith("redis+socket://"):
        return "unix://" + url.removeprefix("redis+socket://")
    if url.startswith(("redis://", "rediss://", "unix://")):
        return url
    return None


def session_changed(session_id: Any) -> None:
    """Wake the clients waiting on session ``session_id`` once this write commits."""
    _publish(str(session_id))


def queue_changed() -> None:
    """Wake every client waiting in the queue (a session was admitted, left or moved)."""
    _publish(QUEUE)


def _publish(payload: str) -> None:
    kind = transport()
    if kind == "postgres":
        # Transactional: delivered when (and only if) the surrounding transaction commits.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [channel_name(), payload])
    elif kind == "redis":
        channel = channel_name()
        transaction.on_commit(lambda: _redis_publish(channel, payload))


@cache
def _redis_client() -> Any:
    import redis

    url = redis_url()
    assert url is not None
    # Short timeouts: a broker that hangs must not hold up the write that published.
    return redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)


def _redis_publish(channel: str, payload: str) -> None:
    try:
        _redis_client().publish(channel, payload)
    except Exception as exc:  # noqa: BLE001 - a lost wake-up only delays a waiting client
        log.warning("session events: cannot publish to the broker: %s", exc)
