"""Celery tasks: thin wrappers that take ids and call one service. All are safe to run twice:
scratch cleanups hold a lease, so a second run waits for the next tick instead of overlapping."""

from __future__ import annotations

import logging

from celery import shared_task
from django.contrib.auth import get_user_model

from storage_app.lease import StorageBusy
from storage_app.scratch import scratch_enforce_user
from storage_app.sweep import storage_sweep
from storage_app.usage import storage_scan_user

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def sweep() -> None:
    """The beat's storage pass (``STORAGE_SWEEP_MINUTES``)."""
    try:
        report = storage_sweep()
    except StorageBusy as exc:
        log.info("storage sweep skipped: %s", exc)
        return
    log.info("storage sweep: %s", report.summary())
    for line in report.lines():
        log.debug("storage sweep: %s", line)


@shared_task(ignore_result=True)
def scan_user(user_id: int) -> None:
    """Measure one user's storage: sent when a session of theirs starts and ends
    (``receivers.py``)."""
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        log.info("storage scan: user %s is gone", user_id)
        return
    storage_scan_user(user)


@shared_task(ignore_result=True)
def enforce_user(user_id: int) -> None:
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        log.info("storage cleanup: user %s is gone", user_id)
        return
    try:
        scratch_enforce_user(user)
    except StorageBusy as exc:
        # The sweep holding the lease enforces every user's quota itself.
        log.info("storage cleanup of %s skipped: %s", user.get_username(), exc)
