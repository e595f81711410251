"""What a Celery worker of the spawn queue runs beside its tasks: the start watcher's loop.

``portal/celery.py`` adds :class:`StartWatchStep` to every worker's blueprint; it starts a
thread only in a worker that consumes the queue ``spawn_session`` is routed to (runportal's
``worker-spawn``, the tests' worker of every queue), and stops it with the worker. The thread is
thin: each round is one call of ``start_watch.sessions_starting_check`` and a wait.

Imported by ``portal/celery.py`` before Django is set up: nothing of Django at module level.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps

log = logging.getLogger(__name__)

SPAWN_TASK = "sessions_app.tasks.spawn_session"
# After a pass that failed (the database or the back-end away): wait this long, then again.
ERROR_PAUSE_SECONDS = 2.0
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


class StartWatchStep(bootsteps.StartStopStep):
    """Runs a :class:`StartWatcher` while the worker runs, if it consumes spawn tasks."""

    label = "Start watch"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.watcher: StartWatcher | None = None

    def include_if(self, parent: Any) -> bool:
        app = parent.app
        # The worker's own selection of queues (its -Q), set before its blueprint is built.
        queue = app.amqp.router.route({}, SPAWN_TASK)["queue"].name
        return queue in app.amqp.queues.consume_from

    def start(self, parent: Any) -> None:
        self.watcher = StartWatcher()
        self.watcher.start()

    def stop(self, parent: Any) -> None:
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.stop()

    def terminate(self, parent: Any) -> None:
        self.stop(parent)
