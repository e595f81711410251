"""Celery tasks: thin wrappers that take ids and call one service. All are safe to run twice."""

from __future__ import annotations

from celery import shared_task

from sessions_app import reconcile, services


@shared_task(ignore_result=True)
def spawn_session(session_id: str) -> None:
    services.session_spawn(session_id)


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
