"""Probes for the orchestrator: ``/healthz`` (the process answers) and ``/readyz`` (it can work:
the database and the broker answer). Public, never redirected, never cached; they say nothing
about users or sessions."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts_app.access import public_view

log = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 3


@public_view
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@public_view
@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database(), "broker": _broker()}
    ready = all(result == "ok" for result in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", **checks}, status=200 if ready else 503
    )


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not ready"; the log has the details
        log.warning("readyz: database: %s", exc)
        return "unavailable"
    return "ok"


def _broker() -> str:
    from portal.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_SECONDS
            )
    except Exception as exc:  # kombu raises the transport's own errors
        log.warning("readyz: broker: %s", exc)
        return "unavailable"
    return "ok"
