"""A person's past sessions: how each ended and, for failures, why (issue 15, "a history page").

Three parts, kept together because they describe one thing:

- **what is kept when a session ends**: the server's log is removed with the session's other
  files (``spawners/session_files.py``), so its last lines are copied onto the row as the
  session ends (``Session.log_tail``): :func:`server_log_tail`, called by whoever ends it,
  before the back-end's ``stop()``. The back-end already cuts local paths to their last part
  and URLs to their path (``spawners/processes.log_tail``); :func:`safe_log_tail` then removes
  control characters (a terminal's colours), hides what looks like a secret and the server's
  own token, and caps the size. A log holds only the owner's own session's output, and only
  the owner reads it back.
- **the words**: how a session ended (:func:`ended_how`), the failure's detail, its duration;
  the page and the API (``serializers.SessionHistorySerializer``) say the same.
- **the pages**: ``/sessions/`` (the list, newest first, :data:`PAGE_SIZE` a page) and
  ``/sessions/<id>/`` (one session); another person's session is a 404, as an unknown one.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from sessions_app.models import Session
from sessions_app.selectors import session_of_user, sessions_for_user
from sessions_app.spawners.base import Spawner, SpawnerError
from sessions_app.spawners.base import State as ServerState

log = logging.getLogger(__name__)

# What of a server's log is kept on its row: its last lines, each at most 200 characters
# (the back-end's cut), and this many characters in all.
LOG_TAIL_LINES = 20
LOG_TAIL_MAX_CHARS = 4000
# Sessions on one page of the history.
PAGE_SIZE = 25

# Terminal escape sequences (colours, cursor moves, titles), then every other control
# character but the tab: a log line must read as text, and must not draw on a terminal.
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?")
# (Unicode's direction marks too: they can make a line read as another.)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# ``token=…``, ``password: …``, ``Authorization: token …``, ``Bearer …``: the value hidden.
_KEYED_SECRET = re.compile(
    r"(?i)\b(token|password|passwd|secret|api[_-]?key|access[_-]?key|authorization)\b"
    r"([\"']?\s*[=:]\s*[\"']?(?:(?:token|bearer|basic)\s+)?)[^\s&\"',;]+"
)
_BEARER = re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9._~+/=-]{16,}")
HIDDEN = "[hidden]"

# What the local back-end writes before a log's lines in a failure's message
# (``spawners/processes.gone_message``): the history shows the lines apart.
_LOG_IN_MESSAGE = " Last lines of its log:"


def safe_log_tail(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` (lines of a server's log, paths and URLs already cut by the back-end) as its
    owner may read them: no control characters, no value of anything that looks like a secret
    nor of ``secrets`` (the server's own token), blank lines dropped, the last
    :data:`LOG_TAIL_LINES` lines in at most :data:`LOG_TAIL_MAX_CHARS` characters."""
    lines = []
    for raw in text.splitlines():
        line = _CONTROL.sub("", _ESCAPE.sub("", raw))
        for secret in secrets:
            if secret:
                line = line.replace(secret, HIDDEN)
        line = _BEARER.sub(rf"\1 {HIDDEN}", _KEYED_SECRET.sub(rf"\1\2{HIDDEN}", line))
        if line.strip():
            lines.append(line.rstrip())
    kept: list[str] = []
    size = 0
    for line in reversed(lines[-LOG_TAIL_LINES:]):
        size += len(line) + 1
        if size > LOG_TAIL_MAX_CHARS:
            break
        kept.append(line)
    return "\n".join(reversed(kept))


def server_log_tail(spawner: Spawner, state: ServerState | None) -> str:
    """The last lines of a session's server log, safe to keep on its row; "" when it has none.
    Read before the back-end's ``stop()`` (which removes the log); never fails an ending."""
    if not state:
        return ""
    try:
        raw = spawner.log_tail(state, LOG_TAIL_LINES)
    except (SpawnerError, OSError) as exc:
        log.warning("session %s: its log could not be read: %s", state.get("session_id"), exc)
        return ""
    token = state.get("token")
    return safe_log_tail(raw, [token] if isinstance(token, str) else [])


# --- The words --------------------------------------------------------------------------------


def reason_label(session: Session) -> str:
    """The reason in words, as the API's ``reason_label`` ("" while there is none)."""
    return str(session.get_reason_display()) if session.reason else ""


def ended_how(session: Session) -> str:
    """How the session ended, in words for its owner ("Time limit reached"); for one still
    active, where it stands ("Still running")."""
    if session.is_active:
        return f"Still {session.get_state_display()}"
    label = reason_label(session) or str(session.get_state_display())
    return label[:1].upper() + label[1:]


def failure_detail(session: Session) -> str:
    """Why a failed session failed, in the words its row keeps (the start-up's last progress
    line, the back-end's message); "" for any other. The log's lines, kept apart on the row,
    are not repeated."""
    if session.state != Session.State.FAILED:
        return ""
    message = session.message
    if session.log_tail and _LOG_IN_MESSAGE in message:
        message = message.split(_LOG_IN_MESSAGE, 1)[0]
    return message.strip()


def log_lines(session: Session) -> list[str]:
    return session.log_tail.splitlines() if session.log_tail else []


def duration_seconds(session: Session, now: datetime | None = None) -> int | None:
    """How long its server ran (to now while it runs); None when it never started."""
    if session.started_at is None:
        return None
    end = session.ended_at or (now or timezone.now())
    return max(0, int((end - session.started_at).total_seconds()))


def duration_words(seconds: int | None) -> str:
    """``2 h 05 min``, ``4 min 10 s``, ``12 s``; "did not start" for None."""
    if seconds is None:
        return "did not start"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


@dataclass(frozen=True)
class HistoryEntry:
    """One session as the history shows it."""

    session: Session
    ended_how: str
    failure_detail: str
    log_lines: list[str]
    duration: str

    @property
    def failed(self) -> bool:
        return self.session.state == Session.State.FAILED

    @property
    def failure_summary(self) -> str:
        """The failure's detail without the words that say how it ended, already shown beside
        it ("The server could not be started: …")."""
        words = f"{self.ended_how}: "
        detail = self.failure_detail
        return detail[len(words) :] if detail.lower().startswith(words.lower()) else detail


def history_entry(session: Session, now: datetime | None = None) -> HistoryEntry:
    return HistoryEntry(
        session=session,
        ended_how=ended_how(session),
        failure_detail=failure_detail(session),
        log_lines=log_lines(session),
        duration=duration_words(duration_seconds(session, now)),
    )


def history_page(user: AbstractBaseUser, number: str | int | None) -> Page[HistoryEntry]:
    """One page of the user's sessions, newest first (a page number out of range: the last)."""
    page = Paginator(sessions_for_user(user), PAGE_SIZE).get_page(number)
    now = timezone.now()
    entries = [history_entry(session, now) for session in page.object_list]
    # The same page (number, counts, links), of entries rather than rows.
    return Page(entries, page.number, page.paginator)  # type: ignore[arg-type]


# --- The pages --------------------------------------------------------------------------------


def _user(request: HttpRequest) -> AbstractBaseUser:
    assert isinstance(request.user, AbstractBaseUser)  # behind login_required
    return request.user


@login_required
@require_GET
@never_cache
def history_list(request: HttpRequest) -> HttpResponse:
    """The signed-in person's sessions, newest first, each with how it ended."""
    page = history_page(_user(request), request.GET.get("page"))
    return render(request, "sessions/history.html", {"page": page, "entries": page.object_list})


@login_required
@require_GET
@never_cache
def history_detail(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """One of the person's sessions: when, how it ended, and for a failure why and the last
    lines of its server's log. Another person's session is not found, as an unknown one."""
    session = session_of_user(_user(request), session_id)
    if session is None:
        # Its own page, not the site's 404 (which repeats the address): not even the id is
        # echoed, as the API's answer.
        return render(request, "sessions/history_detail.html", {"entry": None}, status=404)
    return render(request, "sessions/history_detail.html", {"entry": history_entry(session)})
