"""Helpers for tests that drive sessions through a real worker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from sessions_app.models import Session
from sessions_app.spawners.unix_http import answers


def wait_for(
    session_id: uuid.UUID | str, predicate: Callable[[Session], bool], timeout: float = 90
) -> Session:
    """Poll the row until ``predicate`` holds; fail with the last state seen."""
    deadline = time.monotonic() + timeout
    session = Session.objects.get(pk=session_id)
    while time.monotonic() < deadline:
        session = Session.objects.get(pk=session_id)
        if predicate(session):
            return session
        if not session.is_active:
            break  # an ended session never changes again
        time.sleep(0.1)
    raise AssertionError(
        f"session {session_id} is {session.state} ({session.message!r}), not what was awaited"
    )


def in_state(*states: str) -> Callable[[Session], bool]:
    return lambda session: session.state in states


def server_answers(state: dict[str, Any]) -> bool:
    """Whether the session's JupyterLab answers, with its token, where its state says it listens
    (a local server's Unix socket; the router's tests go through nginx)."""
    if not state.get("socket"):
        return False
    return answers(state["socket"], state["base_url"], state["token"], timeout=5)
