"""Examples of the sessions API's answers, for the OpenAPI document (``OpenApiExample``).

Kept apart from the views so that they stay thin; each example is a body the API really
gives (the tests in ``tests/sessions_app/test_api_schema_examples.py`` check their fields
against the serializers').
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample

_ID = "0b6f3f4e-3c1d-4a43-9a55-3e1f0a7c2d11"

_SESSION: dict[str, Any] = {
    "id": _ID,
    "state": "queued",
    "phase": "queued",
    "state_label": "queued",
    "environment": "ecmwf-dss",
    "options": {},
    "created_at": "2026-03-02T09:00:00Z",
    "admitted_at": None,
    "started_at": None,
    "expires_at": None,
    "ended_at": None,
    "remaining_seconds": None,
    "queue_position": None,
    "queue_wait_seconds": None,
    "url": None,
    "message": "",
    "reason": "",
    "library_status": "",
}

QUEUED = {
    **_SESSION,
    "queue_position": 2,
    "queue_wait_seconds": 540,
    "message": "Waiting for resources.",
}
RUNNING = {
    **_SESSION,
    "state": "running",
    "phase": "running",
    "state_label": "running",
    "admitted_at": "2026-03-02T09:00:01Z",
    "started_at": "2026-03-02T09:00:40Z",
    "expires_at": "2026-03-02T14:00:40Z",
    "remaining_seconds": 17940,
    "url": "https://portal.example.org/user/ann/lab?token=…",
    "message": "Your server is running.",
    "library_status": "Notebooks library: cloned at commit 3f2a9c1b7d4e.",
}
STOPPING = {
    **RUNNING,
    "state": "stopping",
    "phase": "stopping",
    "state_label": "stopping",
    "url": None,
    "message": "Stopping the server.",
    "reason": "user_stopped",
}
FAILED = {
    **_SESSION,
    "state": "failed",
    "phase": "failed",
    "state_label": "failed",
    "ended_at": "2026-03-02T09:02:10Z",
    "message": "The server could not be started: the image could not be pulled.",
    "reason": "backend_error",
}
STOPPED = {
    **RUNNING,
    "state": "stopped",
    "phase": "stopped",
    "state_label": "stopped",
    "ended_at": "2026-03-02T10:12:00Z",
    "remaining_seconds": None,
    "url": None,
    "message": "You stopped the session.",
    "reason": "user_stopped",
}


def _error(name: str, status: str, detail: str, code: str) -> OpenApiExample:
    return OpenApiExample(
        name, value={"detail": detail, "code": code}, response_only=True, status_codes=[status]
    )


def _session(name: str, value: dict[str, Any], *statuses: str, summary: str = "") -> Any:
    return OpenApiExample(
        name, value=value, summary=summary, response_only=True, status_codes=list(statuses)
    )


NO_ACTIVE_SESSION = _error("No active session", "404", "You have no active session.",
                           "no_active_session")  # fmt: skip

SESSION_GET = [
    _session("Running", RUNNING, "200"),
    _session("Queued", QUEUED, "200"),
    _session(
        "Ended while waiting",
        FAILED,
        "200",
        summary="With ?wait=N: the session waited for failed meanwhile",
    ),
    NO_ACTIVE_SESSION,
    _error(
        "Too many waits",
        "429",
        "You already have 10 requests waiting for your session; wait for one of them to answer.",
        "too_many_waits",
    ),
]

SESSION_LAUNCH = [
    OpenApiExample("Launch", value={"environment": "ecmwf-dss", "options": {}}, request_only=True),
    _session("Queued", QUEUED, "201"),
    _session("Already active", RUNNING, "200"),
    _error(
        "Unknown environment",
        "400",
        "There is no environment 'gpu-xl' that you can launch.",
        "unknown_environment",
    ),
    _error(
        "Terms not accepted",
        "403",
        "Please read and accept the current terms of use (version 2) before launching a session.",
        "terms_not_accepted",
    ),
    _error(
        "Still stopping",
        "409",
        "Your last session is still stopping; launch again in a few seconds.",
        "still_stopping",
    ),
]

SESSION_STOP = [_session("Stopping", STOPPING, "202"), NO_ACTIVE_SESSION]

# The history's answers add how it ended, why and the log's last lines (SessionHistorySerializer).
HISTORY_FAILED = {
    **FAILED,
    "message": "The server could not be started: The server stopped unexpectedly: it exited "
    "with code 1.",
    "reason_label": "the server could not be started",
    "ended_how": "The server could not be started",
    "failure_detail": "The server could not be started: The server stopped unexpectedly: it "
    "exited with code 1.",
    "log_tail": [
        "[I 2026-03-02 09:02:08 ServerApp] Loading IPython parallel extension",
        "ModuleNotFoundError: No module named 'ipyparallel'",
    ],
    "duration_seconds": None,
}
HISTORY_STOPPED = {
    **STOPPED,
    "reason_label": "stopped by the user",
    "ended_how": "Stopped by the user",
    "failure_detail": None,
    "log_tail": ["[I 2026-03-02 10:11:58 ServerApp] Saving file at /work/analysis.ipynb"],
    "duration_seconds": 4280,
}

SESSION_DETAIL = [
    _session("Failed", HISTORY_FAILED, "200"),
    _session("Stopped", HISTORY_STOPPED, "200"),
    _error("Not found", "404", "You have no such session.", "session_not_found"),
]

# A list's example is one item: drf-spectacular puts it in a page of the list.
SESSION_LIST = [
    _session("History", HISTORY_STOPPED, "200"),
    _error("Unknown state", "400", 'state: "sleeping" is not a valid choice.', "invalid"),
]

ENVIRONMENTS = [
    _session(
        "An environment with an option",
        {
            "slug": "ecmwf-dss",
            "name": "ECMWF data science",
            "use_case": "Notebooks on ECMWF data with earthkit.",
            "memory_mb": 8192,
            "cpus": 2,
            "max_duration_minutes": 300,
            "priority": 0,
            "options": [
                {
                    "name": "flavour",
                    "label": "Flavour",
                    "type": "choice",
                    "choices": ["small", "large"],
                    "default": "small",
                    "min": None,
                    "max": None,
                    "help_text": "",
                }
            ],
        },
        "200",
    )
]
