"""Probes for the orchestrator: ``/healthz`` (the process answers) and ``/readyz`` (it can work:
the database and the broker answer, and every check an app registered with
:func:`register_readiness` passes). Public, never redirected, never cached; they say nothing
about users or sessions."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts_app.access import public_view

log = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 3
# The readiness answer is kept this long: probes come every few seconds from every kubelet, and
# the URL is reachable from outside; a burst must not open a broker connection per request.
READY_CACHE_SECONDS = 2.0
_last: tuple[float, dict[str, str]] | None = None
_lock = threading.Lock()
# Further checks, by name: each returns (ready, detail). Apps register theirs in ready(), so this
# module needs to import none of them.
_registered: dict[str, Callable[[], tuple[bool, str]]] = {}


def register_readiness(name: str, check: Callable[[], tuple[bool, str]]) -> None:
    """Add a check to ``/readyz``: ``check()`` says whether the portal can work, and how."""
    _registered[name] = check


@public_view
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@public_view
@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = _checks()
    ready = all(result == "ok" for name, result in checks.items() if not name.endswith("_detail"))
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", **checks}, status=200 if ready else 503
    )


def _checks() -> dict[str, str]:
    global _last
    with _lock:
        now = time.monotonic()
        if _last is None or now - _last[0] > READY_CACHE_SECONDS:
            checks = {"database": _database(), "broker": _broker()}
            for name, check in _registered.items():
                ready, detail = _run(name, check)
                checks[name] = "ok" if ready else "unavailable"
                if detail:
                    checks[f"{name}_detail"] = detail
            _last = (now, checks)
        return dict(_last[1])


def _run(name: str, check: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
    try:
        return check()
    except Exception as exc:  # a broken check means "not ready", never a 500 on the probe
        log.warning("readyz: %s: %s", name, exc)
        return False, ""


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
