"""Examples of the staff sessions API's answers, for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample

_ID = "5d0c1a9e-7b3f-4e2a-8c61-2f9d4b7e1a30"

ADMIN_SESSION: dict[str, Any] = {
    "id": _ID,
    "user": "ann",
    "environment": "ecmwf-dss",
    "state": "running",
    "reason": "",
    "message": "Your server is running.",
    "options": {},
    "created_at": "2026-03-02T09:00:00Z",
    "admitted_at": "2026-03-02T09:00:02Z",
    "started_at": "2026-03-02T09:00:40Z",
    "expires_at": "2026-03-02T14:00:40Z",
    "ended_at": None,
}
ADMIN_SESSION_STOPPING = {
    **ADMIN_SESSION,
    "state": "stopping",
    "reason": "staff_stopped",
    "message": "Stopping the server.",
}

QUEUE_PLACE: dict[str, Any] = {
    "id": _ID,
    "user": "ann",
    "environment": "ecmwf-dss",
    "position": 1,
    "queued_at": "2026-03-02T08:55:00Z",
    "waited_seconds": 300,
    "effective_priority": 10.5,
    "boost": 0,
    "estimated_wait_seconds": 600,
}

USAGE_REPORT: dict[str, Any] = {
    "first": "2026-03-01",
    "last": "2026-03-02",
    "environments": ["ecmwf-dss"],
    "rows": [
        {
            "day": "2026-03-01",
            "environment": "ecmwf-dss",
            "sessions_started": 4,
            "cpu_hours": 30.5,
            "memory_gb_hours": 244.0,
        },
        {
            "day": "2026-03-02",
            "environment": "ecmwf-dss",
            "sessions_started": 1,
            "cpu_hours": 2.0,
            "memory_gb_hours": 16.0,
        },
    ],
    "waits": [
        {"environment": "ecmwf-dss", "admitted": 5, "median_seconds": 2.0, "p95_seconds": 540.0}
    ],
    "failures": [
        {"reason": "backend_error", "reason_label": "the server could not be started", "count": 1}
    ],
    "top_users": [{"username": "ann", "cpu_hours": 24.0, "memory_gb_hours": 192.0}],
    "storage": {"accounts_measured": 12, "private_bytes": 52428800000, "scratch_bytes": 0},
}


def _answer(name: str, value: Any, status: str) -> OpenApiExample:
    return OpenApiExample(name, value=value, response_only=True, status_codes=[status])


def _error(name: str, status: str, detail: str, code: str) -> OpenApiExample:
    return _answer(name, {"detail": detail, "code": code}, status)


_DENIED_CHANGE = _error(
    "Without the change permission",
    "403",
    "You need the permission 'sessions_app.change_session' for this.",
    "permission_denied",
)

# A list's example is one item: drf-spectacular puts it in a page of the list.
SESSION_LIST = [
    _answer("Sessions", ADMIN_SESSION, "200"),
    _error("Unknown state", "400", 'state: "sleeping" is not a valid choice.', "invalid"),
]

SESSION_STOP = [
    _answer("Stopping", ADMIN_SESSION_STOPPING, "202"),
    _DENIED_CHANGE,
    _error("Ended", "409", f"Session {_ID} has already ended (stopped).", "session_ended"),
]

QUEUE_MOVE = [
    OpenApiExample("One step forward", value={"steps": 1}, request_only=True),
    _answer("The queue", QUEUE_PLACE, "200"),  # one item: drf-spectacular lists it
    _DENIED_CHANGE,
]

USAGE = [_answer("Two days", USAGE_REPORT, "200")]
