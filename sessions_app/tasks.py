"""Celery tasks: thin wrappers that take ids and call one service. All are safe to run twice."""

from __future__ import annotations

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from sessions_app import reconcile, services
from sessions_app.transitions import StartRetry

# A database that does not answer (restarting, failing over, a connection cut): worth waiting
# for. Backoff 1, 2, 4 … 30 s (jittered, so that many tasks do not come back at once), 12
# tries: an outage of up to about four minutes. Past that, the expiry sweep sends a start never
# claimed again, and the start watcher adopts one whose server was asked for.
DATABASE_AWAY = (OperationalError, InterfaceError)


@shared_task(
    bind=True,
    ignore_result=True,
    autoretry_for=DATABASE_AWAY,
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=12,
)
def spawn_session(self: Task, session_id: str) -> None:
    # Retried from the start: session_spawn goes on where the run that failed stopped. A
    # transient back-end error: the service set the row to wait and chose the backoff, bounded
    # by the spawn timeout (transitions.start_retry_or_fail); a permanent one failed the start.
    try:
        services.session_spawn(session_id, attempt=self.request.retries)
    except StartRetry as retry:
        raise self.retry(countdown=retry.countdown, exc=retry.error) from retry.error


@shared_task(ignore_result=True)
def stop_session(session_id: str) -> None:
    services.session_finish_stop(session_id)


@shared_task(ignore_result=True)
def expire_session(session_id: str) -> None:
    services.session_expire(session_id)


@shared_task(ignore_result=True)
def admit_sessions() -> int:
    return services.sessions_admit()


@shared_task(ignore_result=True)
def sweep_expire_overdue() -> int:
    return services.sessions_expire_overdue()


@shared_task(ignore_result=True)
def sweep_reconcile() -> dict[str, int]:
    return reconcile.sessions_reconcile()
