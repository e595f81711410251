"""The Celery application shared by the worker, beat and the web processes that enqueue."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

from portal.private_files import set_private_umask
from sessions_app.worker_steps import StartWatchStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The start watcher's loop, in the workers that consume spawn tasks (sessions_app/start_watch.py).
app.steps["worker"].add(StartWatchStep)


@signals.celeryd_init.connect
@signals.beat_init.connect
def _private_umask(**kwargs: Any) -> None:
    # The worker's and beat's files (the beat schedule, session folders it makes before
    # setting their own modes) are the portal's alone, also when started without runportal.
    # Set here, not at import: importing the app (tests, the web) must not change the umask.
    set_private_umask()
