"""Local back-end: each session's JupyterLab runs on this machine, on a Unix socket.

Multi-user mode (the portal runs as root; see :mod:`.isolation`): the session runs as the
person's own OS account (:mod:`.os_accounts`) in a bubblewrap sandbox (:mod:`.sandbox`), in a
cgroup of its own that holds every process it starts to the environment's memory, CPUs and a
number of processes (:mod:`.limits`), behind a packet filter that keeps it off the portal's
services (:mod:`.netfilter`). Single-user mode: the session runs as the portal's user, with the
cgroup where one can be made, else rlimits.

The server listens on ``<socket_dir>/<session_id>/jupyter.sock`` only (no TCP port, so no port
to reserve or to collide on): the folder belongs to the session's account with the router's
group, mode 0750, so only the person's processes and the router (nginx) can connect. The router
asks :meth:`LocalProcessSpawner.route` (through the portal's forward-auth endpoint) where to
send the owner's requests and which token to add; the session's URL has no token.

A worker started later finds the session again by its state file (``<runtime_dir>/sessions``,
root's) and its cgroup (named after the session). Kernels talk to the server over ZMQ ``ipc``
in the sandbox's private ``/tmp``: the packet filter refuses the sessions' loopback traffic.

The first program of the session is :mod:`.deadline`'s supervisor (root's, outside the sandbox):
it ends the session at its time limit even when no portal process runs, as a pod's
``activeDeadlineSeconds`` does, and :meth:`~LocalProcessSpawner.poll` reports the start it counts
from. Inside, :mod:`.session_boot` runs as the session's account: it links ``scratch`` into the
home and refreshes the person's Python environment (:mod:`.user_python`), never root writing in
a folder the person controls. What the portal keeps per session goes when the session ends
(:mod:`.session_files`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import time
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import psutil

from sessions_app.spawners import (
    deadline,
    limits,
    log_copier,
    os_accounts,
    pid_watch,
    sandbox,
    session_net,
)
from sessions_app.spawners.base import (
    PollResult,
    ProgressCallback,
    Route,
    RunningServer,
    ServerStatus,
    Spawner,
    SpawnerError,
    SpawnRequest,
    State,
)
from sessions_app.spawners.isolation import IsolationConfig, multi_user, multi_user_problem, refusal
from sessions_app.spawners.jupyter_args import resolve_command
from sessions_app.spawners.netfilter import netfilter_install
from sessions_app.spawners.os_accounts import SessionAccount
from sessions_app.spawners.processes import (
    children,
    gone_message,
    log_tail,
    marked_processes,
    memory_label,
    own_child_running,
    process,
    process_alive,
    stop_tree,
)
from sessions_app.spawners.sandbox import Sandbox
from sessions_app.spawners.session_command import (
    LIBRARY_NAME,
    RUNTIME_ENV,
    SESSION_ENV,
    boot_command,
    sandbox_spec,
    session_environment,
)
from sessions_app.spawners.session_files import (
    LEFTOVER_SECONDS,
    LOGS,
    STATES,
    idle_seconds,
    log_path,
    saved_states,
    session_files_remove,
    state_path,
    state_save,
)
from sessions_app.spawners.socket_route import (
    default_socket_dir,
    make_private_dir,
    route_link,
    socket_folder_prepare,
    socket_pin,
)
from sessions_app.spawners.software import DEFAULT_ENV_DIR, SERVER_PROGRAM, session_software
from sessions_app.spawners.unix_http import accepts, answers

logger = logging.getLogger(__name__)

SOCKET_NAME = "jupyter.sock"
READY_TIMEOUT_SECONDS = 0.5
_KILL_WAIT_SECONDS = 5.0
# sun_path holds 108 bytes with the final NUL.
_MAX_SOCKET_PATH = 107
# Session ids name files and cgroups, so they must not carry path separators or dots alone.
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class LocalProcessSpawner(Spawner):
    """Run each session's JupyterLab as a local process tree listening on a Unix socket."""

    def __init__(
        self,
        runtime_dir: Path,
        socket_dir: Path | None = None,
        public_url: str = "http://127.0.0.1:8000",
        stop_grace_seconds: float = 5.0,
        isolation: IsolationConfig | None = None,
        log_max_bytes: int = 8 * 1024 * 1024,
        software_dir: Path = DEFAULT_ENV_DIR,
    ) -> None:
        # Absolute, because it also marks the servers (RUNTIME_ENV) that list_servers looks for.
        self.runtime_dir = Path(runtime_dir).absolute()
        self.socket_dir = Path(socket_dir or default_socket_dir(self.runtime_dir)).absolute()
        self.public_url = public_url.rstrip("/")
        self.stop_grace_seconds = stop_grace_seconds
        self.isolation = isolation or IsolationConfig()
        self.log_max_bytes = log_max_bytes
        # The session software (software.py): JupyterLab, kernels and the service's packages.
        self.software_dir = Path(software_dir)

    @property
    def multi_user(self) -> bool:
        return multi_user(self.isolation)

    # --- start ------------------------------------------------------------------------------

    def start(self, request: SpawnRequest, progress: ProgressCallback) -> State:
        """Launch the session's server with its limits; does not wait for it to answer."""
        session_id = request.session_id
        if not _SESSION_ID.fullmatch(session_id):
            raise SpawnerError(f"Invalid session id {session_id!r}.")
        software = session_software(self.software_dir)
        command = resolve_command(
            request.backend_settings.get("command", [SERVER_PROGRAM]), software.bin
        )
        account = self._account(request)
        home = Path(request.home_dir).absolute()
        scratch = None if request.scratch_dir is None else Path(request.scratch_dir).absolute()
        socket_path = self.socket_dir / session_id / SOCKET_NAME
        if len(os.fsencode(socket_path)) > _MAX_SOCKET_PATH:
            raise SpawnerError(
                f"The socket path {socket_path} is too long (LOCAL_SPAWNER_SOCKET_DIR)."
            )
        self._prepare_folders(session_id, account, home, scratch)
        token = secrets.token_urlsafe(32)
        memory = request.memory_mb * 1024 * 1024
        try:
            cgroup = limits.make_cgroup(session_id, memory, request.cpus, self.isolation.pids_max)
        except SpawnerError:
            self._cleanup(session_id)
            raise
        # The session's clock starts with its processes; the deadline is kept by its first
        # process (deadline.py) and poll() reports the start, for the portal's expires_at.
        started = time.time()
        ends = started + request.duration_seconds if request.duration_seconds > 0 else 0.0
        # Only used without a cgroup (rlimits): spread sessions over the CPUs.
        cpus = limits.cpu_set(request.cpus, zlib.crc32(session_id.encode()))
        state = {
            "session_id": session_id,
            "pid": 0,
            "create_time": 0.0,
            "socket": str(socket_path),
            "uid": os.geteuid() if account is None else account.uid,
            "token": token,
            "base_url": request.base_url,
            "url": self._url(request.base_url),
            "log_path": str(self._log_path(session_id)),
            "memory_mb": request.memory_mb,
            "cgroup": "" if cgroup is None else cgroup.layout.label(),
            "started": started,
            "deadline": ends,
        }
        progress("Starting JupyterLab" + (" in its sandbox" if account else ""))
        argv = boot_command(software, command, socket_path, request, home, scratch, account)
        env = session_environment(
            request, software, home, scratch, token, account, cgroup,
            public_url=self.public_url, runtime_dir=self.runtime_dir, socket_dir=self.socket_dir,
        )  # fmt: skip
        markers = {SESSION_ENV: session_id, RUNTIME_ENV: str(self.runtime_dir)}
        procs = [] if cgroup is None else [str(path / "cgroup.procs") for path in cgroup.dirs]
        box: Sandbox | None = None
        copier_pid = None
        try:
            # Written before the start: a worker that dies right after it still leaves the
            # session findable (its cgroup holds the processes, this file the rest).
            self._save_state(state)
            if account is not None:
                folder = self.socket_dir / session_id
                spec = sandbox_spec(request, account, home, scratch, software, folder)
                box = Sandbox(spec, argv)
                argv = box.argv
            # Into a pipe, never the log file itself: see log_copier (joins the session's cgroup).
            limiter = limits.limiter(memory, cpus, cgroup)
            log = self._log_path(session_id)
            with log_copier.pipe(log, self.log_max_bytes, limiter) as (copier, output):
                copier_pid = copier.pid
                proc = subprocess.Popen(
                    # The deadline's supervisor first: it runs argv as its only child.
                    deadline.supervised(sys.executable, argv, ends, procs, [copier.pid], markers),
                    cwd="/" if account is not None else home,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=tuple(box.fds) if box is not None else (),
                    preexec_fn=limiter,
                )
        except (OSError, subprocess.SubprocessError, SpawnerError) as exc:
            if box is not None:
                box.discard()
            self._cleanup(session_id, cgroup, copier_pid)
            if isinstance(exc, SpawnerError):
                raise
            raise SpawnerError(f"Cannot start {command[0]}: {exc}") from exc
        finally:
            if box is not None:
                box.close()
        # Read while the child cannot have been reaped yet: it is ours and nobody waited on it.
        create_time = psutil.Process(proc.pid).create_time()
        children[proc.pid] = (create_time, proc)
        # pgid: the first program (the deadline's supervisor) leads a process group of its own.
        state.update(pid=proc.pid, pgid=proc.pid, create_time=create_time, copier=copier.pid)
        self._save_state(state)
        if box is not None and box.info_fd is not None and account is not None:
            # The sandbox's own network (session_net.py): its way out, in its cgroup.
            try:
                pid = session_net.sandbox_pid(box.info_fd)
                state["net_pid"] = session_net.connect(pid, account, limiter, markers)
            except (OSError, SpawnerError) as exc:
                self.stop(state)
                raise SpawnerError(f"The session's network could not be set up: {exc}") from exc
            self._save_state(state)
        logger.info("Started JupyterLab for session %s: pid %s", session_id, proc.pid)
        return state

    def _account(self, request: SpawnRequest) -> SessionAccount | None:
        """The session's OS account in multi-user mode (created if missing), else None."""
        if self.isolation.mode == "off":
            return None
        refused = refusal(self.isolation)
        if refused:
            raise SpawnerError(f"Sessions are refused: {refused}.")
        if multi_user_problem():
            return None  # single-user mode: not root
        if request.user_id is None:
            raise SpawnerError("The session names no portal account to run as.")
        cfg = self.isolation
        account = os_accounts.account_for(
            request.user_id, cfg.account_prefix, cfg.uid_min, cfg.uid_max
        )
        netfilter_install(cfg.uid_min, cfg.uid_max, cfg.egress_deny_cidrs)
        return os_accounts.account_ensure(account)

    def _prepare_folders(
        self, session_id: str, account: SessionAccount | None, home: Path, scratch: Path | None
    ) -> None:
        try:
            for path in (self.runtime_dir / LOGS, self.runtime_dir / STATES):
                make_private_dir(path)
            if account is None:
                make_private_dir(home)
                if scratch is not None:
                    make_private_dir(scratch)
            else:
                os_accounts.private_dir_hand_over(
                    home, account.uid, account.gid, skip=(LIBRARY_NAME,)
                )
                if scratch is not None:
                    os_accounts.private_dir_hand_over(scratch, account.uid, account.gid)
            owner = None if account is None else (account.uid, account.gid)
            socket_folder_prepare(self.socket_dir, session_id, owner, self._router_gid())
        except OSError as exc:
            raise SpawnerError(f"Cannot create the session's folders: {exc}") from exc

    def _router_gid(self) -> int | None:
        import grp

        name = self.isolation.router_group
        if not name:
            return None
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError as exc:
            raise SpawnerError(
                f"The router's group {name!r} (LOCAL_ROUTER_GROUP) does not exist."
            ) from exc

    # --- poll, route, stop, list ------------------------------------------------------------

    def poll(self, state: State) -> PollResult:
        """Gone if the session's processes are; running once its own server answers on its
        socket with its own token."""
        try:
            pid, create_time = int(state["pid"]), float(state["create_time"])
            socket_path, token = str(state["socket"]), str(state["token"])
            base_url = str(state["base_url"])
        except (KeyError, TypeError, ValueError):
            return PollResult(ServerStatus.GONE, message="No server is recorded for this session.")
        # A starting server is polled many times a second, so the common answer ("still
        # starting") must be cheap: waitpid and a connect test cost microseconds.
        if own_child_running(pid, create_time) and not accepts(socket_path, READY_TIMEOUT_SECONDS):
            return PollResult(ServerStatus.STARTING, message="Waiting for JupyterLab to answer")
        oom = self._oom_message(state)
        if not self._alive(state):
            if 0 < _clock(state, "deadline") <= time.time():
                # Its first process ended it at its time limit, maybe while no worker ran.
                message = "The session reached its time limit."
                return PollResult(ServerStatus.GONE, message=message, deadline_exceeded=True)
            message = gone_message(pid, create_time, state)
            return PollResult(ServerStatus.GONE, message=f"{oom} {message}" if oom else message)
        uid = state.get("uid")
        owner = uid if isinstance(uid, int) else None
        if (
            sandbox.is_socket_of(Path(socket_path), owner)
            and answers(socket_path, base_url, token, READY_TIMEOUT_SECONDS)
            and socket_pin(Path(socket_path), self._route_link(state), owner, self._router_gid())
        ):
            started = _clock(state, "started")
            return PollResult(
                ServerStatus.RUNNING,
                url=self._url(base_url),
                message=oom,
                started_at=datetime.fromtimestamp(started, UTC) if started else None,
            )
        return PollResult(ServerStatus.STARTING, message="Waiting for JupyterLab to answer")

    def route(self, state: State) -> Route | None:
        token, uid = state.get("token"), state.get("uid")
        if not isinstance(token, str) or not isinstance(state.get("session_id"), str):
            return None
        # The router goes to the socket pinned when the server answered, never to the path
        # in the person's own folder (socket_route.py).
        link = self._route_link(state)
        if not sandbox.is_socket_of(link, uid if isinstance(uid, int) else None):
            return None
        return Route(upstream=f"unix:{link}", authorization=f"token {token}")

    def _route_link(self, state: State) -> Path:
        return route_link(self.socket_dir, str(state["session_id"]))

    def stop(self, state: State) -> None:
        """Stop every process of the session (its whole cgroup), then remove what it left."""
        session_id = state.get("session_id") if isinstance(state, dict) else None
        if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
            return
        cgroup = limits.session_cgroup(session_id) if state.get("cgroup") else None
        if cgroup is not None and cgroup.exists():
            survivors = limits.cgroup_kill(cgroup, self.stop_grace_seconds, _KILL_WAIT_SECONDS)
            if survivors:
                logger.warning("Session %s: processes %s survived SIGKILL", session_id, survivors)
        else:
            # Kernels run in sessions of their own (jupyter_client), so the server's group does
            # not hold them: the processes marked with the session's id are stopped too.
            marked = {
                p
                for p, env in marked_processes(RUNTIME_ENV, str(self.runtime_dir), SESSION_ENV)
                if env[SESSION_ENV] == session_id
            }
            left = stop_tree(state, marked, self.stop_grace_seconds, _KILL_WAIT_SECONDS)
            if left:
                logger.warning("Session %s: processes %s survived SIGKILL", session_id, left)
        session_net.reap(state.get("net_pid"))
        with contextlib.suppress(KeyError, TypeError, ValueError):
            pid = int(state["pid"])
            if pid in children and children[pid][1].poll() is not None:
                children.pop(pid, None)
        # Gone with the session: its gone-message (poll, log tail) was read before the stop.
        self._cleanup(session_id, None, state.get("copier"))

    def list_servers(self) -> list[RunningServer]:
        """The sessions of this runtime directory whose processes run, from their state files.

        The files of a session that ended long ago and that no stop took away (its start's
        worker was lost before the row had its state) are removed on the way: the reconcile
        sweep lists the servers every pass. Long after, so that the log's last lines are read
        first (a death is recorded within a reconcile period of the portal's return).
        """
        servers = []
        for state in saved_states(self.runtime_dir):
            session_id = str(state["session_id"])
            if self._alive(state):
                servers.append(RunningServer(session_id, state))
            elif idle_seconds(self.runtime_dir, session_id) > LEFTOVER_SECONDS:
                logger.info("Removing what is left of session %s", session_id)
                self.stop(state)
        return servers

    def find(self, session_id: str) -> State | None:
        """The session's state file, if its processes run: one file read, not a listing."""
        if not _SESSION_ID.fullmatch(session_id):
            return None
        try:
            with open(self._state_path(session_id), encoding="utf-8") as file:
                state = json.load(file)
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) and self._alive(state) else None

    def wait_for_changes(self, states: Mapping[str, State], timeout: float) -> set[str]:
        """Each server's first process through a pidfd (:mod:`.pid_watch`): seen as it ends."""
        return pid_watch.for_this_thread().wait(states, timeout)

    def _alive(self, state: State) -> bool:
        """Whether any process of the session runs (its cgroup's, or its server and marked)."""
        session_id = str(state.get("session_id", ""))
        try:
            pid, create_time = int(state["pid"]), float(state["create_time"])
        except (KeyError, TypeError, ValueError):
            return False
        if state.get("cgroup"):
            cgroup = limits.session_cgroup(session_id)
            if cgroup is None or not cgroup.pids():
                return False
            # pid 0: the worker died between writing the state and the start; the cgroup rules.
            if pid == 0:
                return True
        leader = process(pid, create_time) if pid > 0 else None
        if leader is not None and process_alive(leader):
            return True
        if pid == 0:
            return any(
                env[SESSION_ENV] == session_id
                for _p, env in marked_processes(RUNTIME_ENV, str(self.runtime_dir), SESSION_ENV)
            )
        return False

    def log_tail(self, state: State, lines: int) -> str:
        """The tail of the log the session's copier writes (gone once :meth:`stop` ran)."""
        session_id = state.get("session_id") if isinstance(state, dict) else None
        if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
            return ""
        # A KiB of the log's end per line wanted: ample for ordinary lines (each is shown cut
        # to 200 characters); a log of very long lines gives fewer.
        return log_tail(str(self._log_path(session_id)), lines=lines, max_bytes=lines * 1024)

    def _oom_message(self, state: State) -> str:
        if not state.get("cgroup"):
            return ""
        cgroup = limits.session_cgroup(str(state.get("session_id", "")))
        if cgroup is None or cgroup.oom_kills() == 0:
            return ""
        return (
            "A process was stopped: the session reached its "
            f"{memory_label(state.get('memory_mb'))} memory limit."
        )

    # --- helpers ----------------------------------------------------------------------------

    def _cleanup(
        self, session_id: str, cgroup: limits.SessionCgroup | None = None, copier: object = None
    ) -> None:
        """Remove the session's files (session_files.py), then its (empty) cgroup: the log
        copier, in the cgroup, ends with the log's removal."""
        session_files_remove(self.runtime_dir, self.socket_dir, session_id, copier)
        if cgroup is not None:
            cgroup.remove()

    def _url(self, base_url: str) -> str:
        return f"{self.public_url}{base_url}lab"

    def _log_path(self, session_id: str) -> Path:
        return log_path(self.runtime_dir, session_id)

    def _state_path(self, session_id: str) -> Path:
        return state_path(self.runtime_dir, session_id)

    def _save_state(self, state: State) -> None:
        state_save(self.runtime_dir, state)


def _clock(state: State, key: str) -> float:
    """A time of the state (seconds since the epoch), 0 if it has none."""
    value = state.get(key)
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0
