"""Waiting without a thread: the listening half of the session events (``sessions_app.events``).

One :class:`SessionEvents` per event loop (a web process under the ASGI server has one) holds
a single listening connection — PostgreSQL ``LISTEN`` or a Redis subscription — and wakes the
coroutines waiting on a session when its id arrives. A waiting client costs a coroutine and an
``asyncio.Event``, no thread and no database connection.

A waiter subscribes *before* it reads the row, so a change that commits between its read and
its wait still wakes it. When the listener is not listening (starting, the database or broker
away, or no transport at all), waiters re-read every ``FALLBACK_SECONDS`` instead: slower, never
stuck. Every (re)connection wakes everyone, since messages may have been missed meanwhile.

Fair share: each process admits at most ``WAIT_MAX_PER_USER`` waits per person and
``WAIT_MAX_PER_ADDRESS`` per client address at once (:func:`wait_slot`); the limits
are per process because what they protect — the process's connections and memory — is too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.conf import settings
from django.db import connections

from sessions_app import events

log = logging.getLogger(__name__)

#: How often waiters re-read the row while the listener is not listening.
FALLBACK_SECONDS = 2.0
#: How long a new waiter waits for the listener to start before it reads anyway.
START_WAIT_SECONDS = 2.0
RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)


class TooManyWaits(Exception):
    """This person or address already has as many waits open as it may."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class SessionEvents:
    """The waiters of one event loop, and the connection that wakes them."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- waiting --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscription(self, *keys: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever one of ``keys`` (session ids, or ``events.QUEUE``) changes;
        clear it before each read of the row."""
        self._ensure_listener()
        event = asyncio.Event()
        for key in keys:
            self._waiters.setdefault(key, set()).add(event)
        try:
            if not self._listening.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._listening.wait(), START_WAIT_SECONDS)
            yield event
        finally:
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiters[key]

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait until ``event`` is set (True) or ``timeout`` passes (False). While nothing
        listens, returns after ``FALLBACK_SECONDS`` at most, so that the caller re-reads."""
        if not self._listening.is_set():
            timeout = min(timeout, FALLBACK_SECONDS)
        if timeout <= 0:
            return event.is_set()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def wake(self, key: str) -> None:
        for event in self._waiters.get(key, ()):
            event.set()

    def wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    # --- the listener ---------------------------------------------------------------------

    def _ensure_listener(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._listen_forever(), name="session-events"
            )

    async def _listen_forever(self) -> None:
        kind = events.transport()
        if kind == "none":
            log.info("session events: no transport (SQLite without a Redis broker)")
            return
        failures = 0
        while True:
            try:
                await self._listen(kind)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect after a pause
                log.warning("session events: listener lost (%s): %s", kind, exc)
            self._listening.clear()
            self.wake_all()  # messages may be lost while it reconnects: everyone re-reads
            await asyncio.sleep(RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)])
            failures += 1

    async def _listen(self, kind: str) -> None:
        channel = events.channel_name()
        if kind == "postgres":
            await self._listen_postgres(channel)
        else:
            await self._listen_redis(channel)

    def _connected(self) -> None:
        self._listening.set()
        self.wake_all()

    async def _listen_postgres(self, channel: str) -> None:
        import psycopg
        from psycopg import sql

        params = _postgres_params()
        async with await psycopg.AsyncConnection.connect(autocommit=True, **params) as conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self._connected()
            async for note in conn.notifies():
                self._dispatch(note.payload)

    async def _listen_redis(self, channel: str) -> None:
        import redis.asyncio

        url = events.redis_url()
        assert url is not None
        client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=2.0)
        try:
            pubsub = client.pubsub()
            await pubsub.subscribe(channel)
            self._connected()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    data = message.get("data")
                    self._dispatch(data.decode() if isinstance(data, bytes) else str(data))
        finally:
            await client.aclose()

    def _dispatch(self, payload: str) -> None:
        self.wake(payload)


def _postgres_params() -> dict[str, Any]:
    """How the listener connects: as Django does (the same database, user and options)."""
    settings_dict = connections["default"].settings_dict
    params: dict[str, Any] = {
        "dbname": settings_dict.get("NAME") or "postgres",
        "user": settings_dict.get("USER") or None,
        "password": settings_dict.get("PASSWORD") or None,
        "host": settings_dict.get("HOST") or None,
        "port": settings_dict.get("PORT") or None,
        "application_name": "portal-session-events",
    }
    for key, value in (settings_dict.get("OPTIONS") or {}).items():
        if isinstance(value, str | int) and key not in ("pool", "server_side_binding"):
            params[key] = value
    return {key: value for key, value in params.items() if value is not None}


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SessionEvents] = (
    weakref.WeakKeyDictionary()
)


def session_events() -> SessionEvents:
    """This event loop's waiters and listener (created on first use)."""
    loop = asyncio.get_running_loop()
    hub = _per_loop.get(loop)
    if hub is None:
        hub = _per_loop[loop] = SessionEvents()
    return hub


# --- fair share: per process, whatever event loop the wait runs in ------------------------------

_slots_lock = threading.Lock()
_per_user: Counter[str] = Counter()
_per_address: Counter[str] = Counter()


@contextlib.contextmanager
def wait_slot(user_key: str, address: str | None) -> Iterator[None]:
    """Hold one of the user's (and the address's) waits for the ``with`` block; raises
    :class:`TooManyWaits` when either has all its waits open in this process."""
    with _slots_lock:
        if _per_user[user_key] >= settings.WAIT_MAX_PER_USER:
            raise TooManyWaits(
                f"You already have {settings.WAIT_MAX_PER_USER} requests waiting for your "
                "session; wait for one of them to answer."
            )
        if address and _per_address[address] >= settings.WAIT_MAX_PER_ADDRESS:
            raise TooManyWaits(
                f"Your address already has {settings.WAIT_MAX_PER_ADDRESS} requests waiting; "
                "try again shortly."
            )
        _per_user[user_key] += 1
        if address:
            _per_address[address] += 1
    try:
        yield
    finally:
        with _slots_lock:
            _release(_per_user, user_key)
            if address:
                _release(_per_address, address)


def _release(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


def waits_open() -> int:
    """How many waits this process holds now."""
    with _slots_lock:
        return sum(_per_user.values())
