"""The storage's answer to a session's life.

A launch keeps the owner's private storage (service rule 7: ``storage_session_started``, in the
launch's transaction, so it waits on a retention sweep that holds the account's row).

The owner's storage is measured when a session starts running and when it ends, not only by
the sweep (``STORAGE_SWEEP_MINUTES``), so the storage page shows a figure from a person's first
session on, and one that follows what the session left.

The signals are sessions_app's (:mod:`sessions_app.signals`): that app does not know this one.
A receiver only sends the existing per-user scan (``tasks.scan_user``, on the ``storage``
queue, where the storage work runs and no session's start waits for it) once the transaction
that made the change commits; a broker that is away loses the measurement, which the next
sweep makes anyway.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import receiver

from portal import broker
from sessions_app.signals import session_ended, session_launched, session_started
from storage_app import tasks
from storage_app.accounts import storage_session_started


@receiver(session_started, dispatch_uid="storage_measure_on_session_started")
@receiver(session_ended, dispatch_uid="storage_measure_on_session_ended")
def storage_measure_after_session(sender: Any, user_id: Any, **kwargs: Any) -> None:
    """Measure the owner's storage once the session's change commits."""
    transaction.on_commit(lambda: broker.send(tasks.scan_user, [user_id]))


@receiver(session_launched, dispatch_uid="storage_keep_on_session_launched")
def storage_keep_on_launch(sender: Any, user: Any, launched_at: Any, **kwargs: Any) -> None:
    """Push the private storage's deadline back: a launch uses it (service rule 7)."""
    storage_session_started(user, launched_at)
