"""What a Celery worker of the spawn queue runs beside its tasks: the start watcher's loop and
the server watch's.

``portal/celery.py`` adds :class:`StartWatchStep` and :class:`ServerWatchStep` to every worker's
blueprint; each starts a thread only in a worker that consumes the queue ``spawn_session`` is
routed to (runportal's ``worker-spawn``, the tests' worker of every queue), and stops it with the
worker. The threads are thin: each round of the start watcher is one call of
``start_watch.sessions_starting_check`` and a wait; each round of the server watch is one call of
``server_watch.watch_once`` (which waits for a death).

Imported by ``portal/celery.py`` before Django is set up: nothing of Django at module level.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import bootsteps

log = logging.getLogger(__name__)

SPAWN_TASK = "sessions_app.tasks.spawn_session"
# After a pass that failed (the database or the back-end away): wait this long, then again.
ERROR_PAUSE_SECONDS = 2.0
# The server watch's shortest round: after one that returned at once, the next waits the rest
# of this (a death is seen this much later at most).
MIN_ROUND_SECONDS = 0.05
# How long a stopping worker waits for the loop to finish its pass.
STOP_TIMEOUT_SECONDS = 30.0


class StartWatcher:
    """The loop, in a daemon thread of its own (one per worker that consumes spawn tasks)."""

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="start-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        from sessions_app import start_watch

        self._stopping.set()
        start_watch.wake()  # out of an idle pause at once
        self._thread.join(STOP_TIMEOUT_SECONDS)
        if self._thread.is_alive():
            log.warning("start watch: the loop did not stop within %ss", STOP_TIMEOUT_SECONDS)

    def _run(self) -> None:
        from django.conf import settings
        from django.db import connection

        from sessions_app import start_watch
        from sessions_app.spawners import get_spawner
        from sessions_app.spawners.processes import reap_exited_children

        log.info("start watch: following starting sessions")
        try:
            # One connection for the loop's life (not one per pass: SQLite's CONN_MAX_AGE is
            # 0, which would reopen the database 20 times a second), dropped after a failure.
            while not self._stopping.is_set():
                spawner = get_spawner()
                try:
                    watching = start_watch.sessions_starting_check(spawner)
                except Exception:
                    # One bad pass (the database restarting, a back-end bug) must not end the
                    # loop: the next one reads everything afresh, on a new connection.
                    log.exception("start watch: a pass failed")
                    connection.close()
                    self._stopping.wait(ERROR_PAUSE_SECONDS)
                    continue
                reap_exited_children()  # of sessions that another worker stopped
                if watching:
                    spawner.wait_many(watching, settings.SPAWN_POLL_SECONDS)
                else:
                    start_watch.idle()
        finally:
            connection.close()


class ServerWatcher:
    """The server watch's loop (``sessions_app.server_watch``), in a daemon thread of its own."""

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        # A round waits at most server_watch.REFRESH_SECONDS: no wake needed.
        self._stopping.set()
        self._thread.join(STOP_TIMEOUT_SECONDS)
        if self._thread.is_alive():
            log.warning("server watch: the loop did not stop within %ss", STOP_TIMEOUT_SECONDS)

    def _run(self) -> None:
        from django.db import connection

        from sessions_app import server_watch
        from sessions_app.spawners import get_spawner

        log.info("server watch: following running sessions")
        servers = server_watch.RunningServers()
        try:
            while not self._stopping.is_set():
                began = time.monotonic()
                try:
                    server_watch.watch_once(get_spawner(), servers, server_watch.REFRESH_SECONDS)
                except Exception:
                    # As the start watcher's: the database away or a back-end bug must not end
                    # the loop; the next round reads the set again on a new connection.
                    log.exception("server watch: a round failed")
                    connection.close()
                    self._stopping.wait(ERROR_PAUSE_SECONDS)
                    continue
                if not servers.states:
                    self._stopping.wait(server_watch.REFRESH_SECONDS)
                else:
                    # A back-end that keeps naming a server its poll finds alive must not turn
                    # the loop into a busy one.
                    self._stopping.wait(max(0.0, MIN_ROUND_SECONDS - (time.monotonic() - began)))
        finally:
            connection.close()


class _SpawnWorkerStep(bootsteps.StartStopStep):
    """Runs a loop while the worker runs, if the worker consumes spawn tasks."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.watcher: StartWatcher | ServerWatcher | None = None

    def include_if(self, parent: Any) -> bool:
        app = parent.app
        # The worker's own selection of queues (its -Q), set before its blueprint is built.
        queue = app.amqp.router.route({}, SPAWN_TASK)["queue"].name
        return queue in app.amqp.queues.consume_from

    # The loop this step runs (set by each step below).
    watcher_class: type[StartWatcher] | type[ServerWatcher]

    def start(self, parent: Any) -> None:
        self.watcher = self.watcher_class()
        self.watcher.start()

    def stop(self, parent: Any) -> None:
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.stop()

    def terminate(self, parent: Any) -> None:
        self.stop(parent)


class StartWatchStep(_SpawnWorkerStep):
    """Runs a :class:`StartWatcher` while the worker runs, if it consumes spawn tasks."""

    label = "Start watch"
    watcher_class = StartWatcher


class ServerWatchStep(_SpawnWorkerStep):
    """Runs a :class:`ServerWatcher` while the worker runs, if it consumes spawn tasks."""

    label = "Server watch"
    watcher_class = ServerWatcher
