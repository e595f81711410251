"""The Python API: ``Client(url, token)`` over the portal's REST API v1.

Every method is one operation of the contract (``/api/v1/schema/`` has it in full); answers are
plain JSON, except sessions, which come as :class:`Session` for their few derived facts. Every
error, the portal's or the network's, is one exception class, :class:`ApiError`.

Waiting is the portal's: :meth:`Client.wait` sits in the long poll (``GET /api/v1/session/
?wait=N``), which answers as soon as the session runs or ends. The client retries on its own
only where the portal says to come back (429 and 503 with ``Retry-After``, a launch refused
with 409 ``still_stopping``), a bounded number of times.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests

from jlp_client import __version__

#: The states in which a session waits to run (the long poll waits on them).
WAITING_STATES = ("queued", "starting")
#: The states a session never leaves.
ENDED_STATES = ("stopped", "expired", "failed")
#: The longest long poll the portal grants (``wait`` ≤ 30 in the contract).
MAX_POLL_SECONDS = 30.0
#: Extra time, on top of a long poll's own, before its HTTP request is given up.
POLL_GRACE_SECONDS = 15.0

Progress = Callable[["Session"], None]


class ApiError(Exception):
    """An operation that did not succeed: the portal's answer ``{detail, code}`` with its HTTP
    ``status`` and ``retry_after`` (seconds, from ``Retry-After``; None without one), or a
    network failure (``status`` 0, ``code`` ``connection_error``)."""

    def __init__(
        self,
        detail: str,
        code: str,
        status: int = 0,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.status = status
        self.retry_after = retry_after
        #: The whole error body (e.g. ``errors``, per field, for a malformed request).
        self.body = body

    def __str__(self) -> str:
        return f"{self.detail} ({self.code})"

    @classmethod
    def from_response(cls, response: requests.Response) -> ApiError:
        retry_after = retry_after_seconds(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "detail" in body:
            code = str(body.get("code") or f"http_{response.status_code}")
            return cls(str(body["detail"]), code, response.status_code, retry_after, body)
        # Not the API's JSON: a proxy's page, or a portal older than its JSON errors.
        reason = response.reason or "error"
        return cls(
            f"HTTP {response.status_code} {reason} from {response.url}",
            f"http_{response.status_code}",
            response.status_code,
            retry_after,
        )


def retry_after_seconds(response: requests.Response) -> float | None:
    """``Retry-After`` as seconds (it may be a number or an HTTP date); None without one."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


class Session:
    """One session as the API describes it; ``data`` is the whole answer.

    ``created`` tells, after :meth:`Client.launch`, whether the launch made this session
    (False: it was already active, and the portal answered with it)."""

    def __init__(self, data: dict[str, Any], created: bool = False) -> None:
        self.data = data
        self.created = created

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.environment} {self.state}>"

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def state(self) -> str:
        """``queued``, ``starting``, ``running``, ``stopping``, ``stopped``, ``expired`` or
        ``failed``."""
        return str(self.data["state"])

    @property
    def environment(self) -> str:
        return str(self.data.get("environment") or "")

    @property
    def options(self) -> dict[str, Any]:
        """The option values it was launched with, defaults filled in."""
        return dict(self.data.get("options") or {})

    @property
    def url(self) -> str | None:
        """The running server's address (it carries the server's access token); None unless
        it runs."""
        return self.data.get("url") or None

    @property
    def message(self) -> str:
        """Progress while it waits or starts; in words, why it ended."""
        return str(self.data.get("message") or "")

    @property
    def reason(self) -> str:
        """Why it ended (``user_stopped``, ``time_limit``, ``backend_error``…); "" before."""
        return str(self.data.get("reason") or "")

    @property
    def queue_position(self) -> int | None:
        """1: the next to be admitted; None unless queued."""
        return self.data.get("queue_position")

    @property
    def queue_wait_seconds(self) -> int | None:
        """The portal's estimate of the wait left; None when it cannot tell."""
        return self.data.get("queue_wait_seconds")

    @property
    def remaining_seconds(self) -> int | None:
        """Time left before the time limit stops it; None unless running."""
        return self.data.get("remaining_seconds")

    @property
    def waiting(self) -> bool:
        """Queued or starting: not running yet."""
        return self.state in WAITING_STATES

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES


class Client:
    """The portal's REST API v1 for one user.

    ``url`` is the portal's address (``https://portal.example.org``), ``token`` an API token
    from the account page. ``retries`` bounds the automatic retries of one request answered
    429 or 503; each waits what ``Retry-After`` says (else 1, 2, 4… s), at most
    ``max_retry_wait`` seconds, beyond which the error is raised at once.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        max_retry_wait: float = 60.0,
        http: requests.Session | None = None,
    ) -> None:
        if not url or not token:
            raise ValueError("Client needs the portal's URL and an API token.")
        self.url = portal_url(url)
        self.api = f"{self.url}/api/v1/"
        self.timeout = timeout
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self._http = http or requests.Session()
        self._http.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": f"jlp/{__version__} (+python-requests)",
            }
        )
        #: Tests (and impatient callers) replace it; every wait of the client goes through it.
        self.sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_config(cls, **kwargs: Any) -> Client:
        """A client with what ``jlp login`` stored (``JLP_URL`` and ``JLP_TOKEN`` first)."""
        from jlp_client.config import NotLoggedIn, load_credentials

        credentials = load_credentials()
        if credentials.url is None or credentials.token is None:
            raise NotLoggedIn()
        return cls(credentials.url, credentials.token, **kwargs)

    # --- the contract's operations -------------------------------------------------------------

    def environments(self) -> list[dict[str, Any]]:
        """The environments the caller may launch, the launcher's default first."""
        return list(self._json("GET", "environments/"))

    def terms(self) -> dict[str, Any]:
        """The current terms of use (``version``, ``title``, ``body``, ``accepted``…)."""
        return dict(self._json("GET", "terms/current/"))

    def accept_terms(self, version: str | None = None) -> dict[str, Any]:
        """Accept the terms of use (``version``, or the current one): what launching requires.
        Accepting a version twice is harmless."""
        if version is None:
            version = str(self.terms()["version"])
        return dict(self._json("POST", "terms/accept/", json={"version": version}))

    def status(self) -> Session | None:
        """The caller's active session (queued, starting, running or stopping); None if none."""
        try:
            return Session(self._json("GET", "session/"))
        except ApiError as exc:
            if exc.code == "no_active_session":
                return None
            raise

    def launch(
        self,
        environment: str | None = None,
        options: dict[str, Any] | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: Progress | None = None,
        stopping_timeout: float = 120.0,
    ) -> Session:
        """Launch a session of ``environment`` (a slug; None: the portal's first) with
        ``options`` (by name; the others take their defaults).

        Answers the new session, or the one already active (``created`` False). A session
        still stopping is waited for, up to ``stopping_timeout`` seconds, and the launch is
        made after it. With ``wait``, returns only once the session runs or ended (see
        :meth:`wait`); ``on_progress`` is called with each state seen meanwhile.
        """
        if environment is None:
            choices = self.environments()
            if not choices:
                raise ApiError("There is no environment you may launch.", "no_environment")
            environment = str(choices[0]["slug"])
        body: dict[str, Any] = {"environment": environment}
        if options:
            body["options"] = options
        deadline = time.monotonic() + stopping_timeout
        while True:
            try:
                response = self._request("POST", "session/", json=body)
            except ApiError as exc:
                if exc.code != "still_stopping" or time.monotonic() >= deadline:
                    raise
                self.sleep(_bounded(exc.retry_after, 1.0, 10.0))
                continue
            session = Session(response.json(), created=response.status_code == 201)
            # A portal without ``still_stopping`` answers a launch made while the last session
            # stops with that session (200): not what was asked for.
            if session.state != "stopping" or time.monotonic() >= deadline:
                break
            if on_progress is not None:
                on_progress(session)
            self.sleep(1.0)
        if wait and session.waiting:
            waited = self.wait(timeout, on_progress=on_progress, session_id=session.id)
            waited.created = session.created
            return waited
        return session

    def wait(
        self,
        timeout: float | None = None,
        *,
        on_progress: Progress | None = None,
        session_id: str | None = None,
        progress_every: float = 5.0,
    ) -> Session:
        """Wait for the active session (or ``session_id``) to run or end; ``timeout`` None:
        as long as it takes. Returns the session as it is then: ``running``, ended (its
        ``reason`` and ``message`` say why), or still ``waiting`` when time ran out.

        The waiting is the portal's long poll. With ``on_progress``, each poll lasts at most
        ``progress_every`` seconds, so that the queue position and start-up messages reach the
        callback as they change; without it, 30.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        step = progress_every if on_progress is not None else MAX_POLL_SECONDS
        step = min(max(step, 1.0), MAX_POLL_SECONDS)
        while True:
            left = step if deadline is None else min(step, deadline - time.monotonic())
            params = {"wait": f"{left:.1f}"} if left >= 0.1 else None
            try:
                data = self._json(
                    "GET", "session/", params=params, timeout=max(left, 0) + POLL_GRACE_SECONDS
                )
            except ApiError as exc:
                if exc.code != "no_active_session":
                    raise
                # It ended while we waited, and the portal says only "none active": the end
                # state and reason are in the session's own record.
                return self._ended(session_id, exc)
            session = Session(data)
            if session_id is not None and session.id != session_id:
                # Ours ended and another one began meanwhile (a launch from elsewhere).
                return self._ended(session_id, None)
            session_id = session.id
            if on_progress is not None:
                on_progress(session)
            if not session.waiting:
                return session
            if deadline is not None and time.monotonic() >= deadline:
                return session

    def stop(self, *, wait: bool = False, timeout: float = 60.0) -> Session:
        """Stop the active session; answers it as it is then (``stopped``, or ``stopping`` while
        its server goes down). With ``wait``, polls until it ended, up to ``timeout`` seconds.
        No active session: :class:`ApiError` ``no_active_session``."""
        session = Session(self._json("DELETE", "session/"))
        deadline = time.monotonic() + timeout
        while wait and not session.ended and time.monotonic() < deadline:
            self.sleep(0.5)
            session = self.session(session.id)
        return session

    def session(self, session_id: str) -> Session:
        """One of the caller's sessions, active or ended, by its id."""
        try:
            return Session(self._json("GET", f"sessions/{quote(session_id, safe='')}/"))
        except ApiError as exc:
            if exc.status != 404:
                raise
            # A portal without GET /api/v1/sessions/{id}/: its history has the session.
            for session in self._history(limit=100):
                if session.id == session_id:
                    return session
            raise

    def history(self, limit: int = 20, state: str | None = None) -> list[Session]:
        """The caller's sessions, newest first, at most ``limit``; ``state``: only those."""
        return list(self._history(limit, state))

    def storage(self) -> dict[str, Any]:
        """Private and scratch usage against their quotas, the delete-after date, warnings and
        the newest cleanup records."""
        return dict(self._json("GET", "storage/"))

    # --- plumbing --------------------------------------------------------------------------------

    def _history(self, limit: int, state: str | None = None) -> Iterator[Session]:
        params: dict[str, Any] | None = {"page_size": min(limit, 100)}
        if state and params is not None:
            params["state"] = state
        url: str | None = f"{self.api}sessions/"
        seen = 0
        while url and seen < limit:
            page = self._json("GET", url, params=params)
            params = None  # the next page's URL carries them
            for item in page.get("results", []):
                # Filtered here too: a portal that ignores ?state= sends every session.
                if state and item.get("state") != state:
                    continue
                yield Session(item)
                seen += 1
                if seen >= limit:
                    return
            url = page.get("next")

    def _ended(self, session_id: str | None, error: ApiError | None) -> Session:
        if session_id is not None:
            return self.session(session_id)
        latest = self.history(limit=1)
        if latest:
            return latest[0]
        assert error is not None
        raise error

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> requests.Response:
        url = path if path.startswith(("http://", "https://")) else self.api + path
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    timeout=timeout or self.timeout,
                    # A redirect turns a POST into a GET: only reads follow one.
                    allow_redirects=method == "GET",
                )
            except requests.RequestException as exc:
                raise ApiError(
                    f"cannot reach the portal at {self.url} ({_network_failure(exc)})",
                    "connection_error",
                ) from exc
            if response.status_code in (429, 503) and attempt < self.retries:
                delay = retry_after_seconds(response)
                delay = 2.0**attempt if delay is None else delay
                if delay <= self.max_retry_wait:
                    attempt += 1
                    self.sleep(delay)
                    continue
            if 300 <= response.status_code < 400:
                location = response.headers.get("Location", "")
                raise ApiError(
                    f"the portal redirected {method} {url} to {location}: use that address",
                    "redirected",
                    response.status_code,
                )
            if response.status_code >= 400:
                raise ApiError.from_response(response)
            return response


def portal_url(url: str) -> str:
    """The portal's root address from what a person types: the scheme added, the API's path
    and trailing slashes taken off."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    for suffix in ("/api/v1", "/api"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


def _network_failure(exc: requests.RequestException) -> str:
    """The gist of requests' nested wording ("[Errno 111] Connection refused")."""
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return found.group(1).strip() if found else type(exc).__name__


def _bounded(value: float | None, low: float, high: float) -> float:
    return min(max(value if value is not None else low, low), high)
