"""The spawner interface: one contract, several back-ends.

A spawner brings a single-user Jupyter server up for one session, tells whether it is still
alive, and takes it down again. Everything it needs to find the server later (a pid, a pod name,
a port) lives in a JSON-serialisable *state* dict that the caller stores on the session row, so
any worker process - also one started after a restart - can poll or stop the server.

Back-ends never touch the database: services pass a :class:`SpawnRequest` in and store the
state that comes back.
"""

from __future__ import annotations

import abc
import enum
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sessions_app.spawners.names import route_name

State = dict[str, Any]
ProgressCallback = Callable[[str], None]


class SpawnerError(Exception):
    """A permanent failure: the server cannot be started; the message is shown to the user."""


class TransientSpawnerError(SpawnerError):
    """A failure worth retrying (a timeout, a busy back-end)."""


@dataclass(frozen=True)
class SpawnRequest:
    """What a back-end needs to know to start one session's server."""

    session_id: str
    username: str
    memory_mb: int
    cpus: int
    duration_seconds: int
    # The session's folders (see ``storage_app.layout``): the private home is the working
    # directory; the user's scratch folder is reachable from it as ``scratch``; the read-only
    # notebooks library is already in the home (``notebooks-library``), cloned before the start.
    # None: the session has no scratch folder or no library.
    home_dir: Path
    scratch_dir: Path | None = None
    library_dir: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # The environment's slug (labels, logs).
    environment: str = ""
    # Back-end specific settings of the environment: ``command`` for the local back-end,
    # ``image`` and ``priority_class`` for Kubernetes.
    backend_settings: dict[str, Any] = field(default_factory=dict)
    # The portal account's primary key: the local back-end runs the session as that account's
    # own OS account (multi-user mode). None: no account (tests of other back-ends).
    user_id: int | None = None

    @property
    def base_url(self) -> str:
        """The server's URL prefix, as in JupyterHub: ``/user/<name>/`` (see :func:`route_name`)."""
        return f"/user/{route_name(self.username)}/"


class ServerStatus(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    GONE = "gone"


@dataclass(frozen=True)
class PollResult:
    """What :meth:`Spawner.poll` saw.

    ``url`` is where the owner reaches the server (with its login token where the back-end
    needs one) and is set once the server is running. ``message`` is a progress line while
    starting, or why the server is gone.
    """

    status: ServerStatus
    url: str = ""
    message: str = ""
    # Gone because the back-end itself ended it at its time limit (a pod's deadline).
    deadline_exceeded: bool = False
    # When the back-end's own clock for the session's time limit started (a pod's start
    # time), if it keeps one: the session's deadline counts from then, so the portal's
    # countdown and the back-end's kill agree.
    started_at: datetime | None = None


@dataclass(frozen=True)
class Route:
    """How the router in front of the portal reaches one running server.

    The router (nginx on one machine, the ingress on Kubernetes) asks the portal's
    forward-auth endpoint before every request to ``/user/<name>/…``; when the owner is
    allowed, the answer carries these, and the router forwards the request to ``upstream``
    with ``authorization`` as its ``Authorization`` header. The browser never sees either.
    """

    # Where the server listens, in nginx's ``proxy_pass`` form: ``unix:/path/to/jupyter.sock``
    # for a local server; empty where the router already knows its back-end (an Ingress).
    upstream: str
    # The header value that logs the router's request in to the server: ``token <token>``.
    authorization: str


@dataclass(frozen=True)
class RunningServer:
    """A server the back-end found running, for reconciliation with the database."""

    session_id: str
    state: State


class Spawner(abc.ABC):
    """Start, poll and stop single-user servers."""

    #: True when the back-end clones the notebooks library into the session itself; False
    #: when the portal clones it into the home folder before the start.
    clones_library = False

    @abc.abstractmethod
    def start(self, request: SpawnRequest, progress: ProgressCallback) -> State:
        """Launch the server and return its state without waiting for it to answer.

        Raises :class:`SpawnerError` when it cannot be launched at all. ``progress`` receives
        human-readable progress lines.
        """

    @abc.abstractmethod
    def poll(self, state: State) -> PollResult:
        """Look at the server once: starting (not answering yet), running, or gone.

        A server counts as running only when the answer comes from this session's own server.
        """

    @abc.abstractmethod
    def stop(self, state: State) -> None:
        """Stop the server and everything it started. Safe to call twice or on a gone server."""

    @abc.abstractmethod
    def route(self, state: State) -> Route | None:
        """Where the router sends the owner's requests and the credential it adds; None if the
        state names no server."""

    @abc.abstractmethod
    def list_servers(self) -> Iterable[RunningServer]:
        """Every server this back-end runs for the portal, whether the database knows it or not."""

    def find(self, session_id: str) -> State | None:
        """The state of the server this back-end runs for ``session_id``, or None if it runs
        none: how a start whose state never reached the database (its spawn task was lost
        after asking) is adopted. Back-ends that can look one session up override it."""
        for server in self.list_servers():
            if server.session_id == session_id:
                return server.state
        return None

    def wait_for_changes(self, states: Mapping[str, State], timeout: float) -> set[str]:
        """Wait up to ``timeout`` seconds for a sign that one of these servers ended; return
        the ids (``states``' keys) of the sessions that may have: the caller polls them.

        The server-watch loop's wait (``sessions_app.server_watch``), one thread per spawn
        worker, beside the start watcher's :meth:`wait_many` on the same instance. A back-end
        that cannot tell sleeps and names them all, which makes the caller poll every server
        once per ``timeout``.
        """
        time.sleep(timeout)
        return set(states)

    def wait(self, state: State, timeout: float) -> None:
        """Return after ``timeout``, or earlier when the back-end sees the server change."""
        time.sleep(timeout)

    def poll_many(self, states: Mapping[str, State]) -> dict[str, PollResult]:
        """:meth:`poll` for every state, by the caller's key: what the start watcher asks each
        tick. Back-ends where one look at all servers is cheaper than one each override it."""
        return {key: self.poll(state) for key, state in states.items()}

    def wait_many(self, states: Mapping[str, State], timeout: float) -> None:
        """:meth:`wait` for several servers: return after ``timeout``, or earlier when the
        back-end sees one of them change."""
        time.sleep(timeout)

    def log_tail(self, state: State, lines: int) -> str:
        """The last ``lines`` lines of the server's log, local paths cut to their last part and
        URLs to their path (no token); "" when the back-end keeps no log or it is gone. Asked
        before :meth:`stop`, which may remove the log, when a session ends
        (``sessions_app.history``)."""
        return ""

    def home_kept_elsewhere(self, folder: str) -> bool:
        """Whether the back-end keeps a private home for ``folder`` outside
        ``STORAGE_HOME_ROOT`` (a volume of its own), whatever that root holds. The local
        back-end keeps none."""
        return False

    def remove_home(self, folder: str) -> None:
        """Remove what the back-end keeps of a user's private home beyond the folder
        ``STORAGE_HOME_ROOT/<folder>`` (a volume of its own). The local back-end keeps nothing
        else."""
        return None
