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

The first program of the session is :mod:`.session_boot`, run as the session's account: it links
``scratch`` into the home and refreshes the person's Python environment (:mod:`.user_python`),
never root writing in a folder the person controls.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import zlib
from pathlib import Path

import psutil

from sessions_app.spawners import limits, log_copier, os_accounts, sandbox, session_net
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
from sessions_app.spawners.jupyter_args import resolve_command, server_args
from sessions_app.spawners.netfilter import netfilter_install
from sessions_app.spawners.os_accounts import SessionAccount
from sessions_app.spawners.processes import (
    children,
    gone_message,
    marked_processes,
    memory_label,
    own_child_running,
    process,
    process_alive,
    stop_tree,
)
from sessions_app.spawners.sandbox import BOOT_DIR, Sandbox, SandboxSpec
from sessions_app.spawners.socket_route import (
    default_socket_dir,
    make_private_dir,
    route_link,
    socket_folder_prepare,
    socket_pin,
    socket_unpin,
)
from sessions_app.spawners.software import (
    DEFAULT_ENV_DIR,
    SERVER_PROGRAM,
    SessionSoftware,
    session_software,
    session_variables,
)
from sessions_app.spawners.unix_http import accepts, answers

logger = logging.getLogger(__name__)

SESSION_ENV = "JUPYTER_PORTAL_SESSION_ID"
RUNTIME_ENV = "JUPYTER_PORTAL_RUNTIME_DIR"
# The user's scratch folder, as the session sees it from the home.
SCRATCH_LINK = "scratch"
LIBRARY_NAME = "notebooks-library"
SOCKET_NAME = "jupyter.sock"
READY_TIMEOUT_SECONDS = 0.5
# Kernels' ZMQ ipc files: in the sandbox's private /tmp (ipc paths must stay under ~107 bytes).
SANDBOX_RUNTIME_DIR = "/tmp/jupyter-runtime"
_KILL_WAIT_SECONDS = 5.0
# sun_path holds 108 bytes with the final NUL.
_MAX_SOCKET_PATH = 107
# Session ids name files and cgroups, so they must not carry path separators or dots alone.
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_BOOT_FILES = ("session_boot.py", "user_python.py")
# Jupyter settings of the router's (sessions_app/spawners/), copied into the sandbox too.
SERVER_CONFIG = "jupyter_server_config.py"
_HERE = Path(__file__).resolve().parent
# One file for both back-ends: the Kubernetes session image copies it to /etc/jupyter/.
_SERVER_CONFIG_SOURCE = _HERE.parents[1] / "images" / "session" / SERVER_CONFIG


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
            self._cleanup(session_id, None)
            raise
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
        }
        progress("Starting JupyterLab" + (" in its sandbox" if account else ""))
        boot_settings = {
            "home": str(home),
            "scratch": "" if scratch is None else str(scratch),
            "scratch_link": SCRATCH_LINK,
            "user_python": True,
        }
        boot_dir = _HERE if account is None else BOOT_DIR
        # The router's Jupyter settings (no token in the pages), where the router ships them.
        config = _SERVER_CONFIG_SOURCE if account is None else BOOT_DIR / SERVER_CONFIG
        server = [*command, *server_args(socket_path, request.base_url, home, account, config)]
        argv = [str(software.python), "-E", "-s", str(boot_dir / "session_boot.py")]
        argv += [json.dumps(boot_settings), "--", *server]
        box: Sandbox | None = None
        try:
            # Written before the start: a worker that dies right after it still leaves the
            # session findable (its cgroup holds the processes, this file the rest).
            self._save_state(state)
            if account is not None:
                spec = self._sandbox_spec(request, account, home, scratch, software)
                box = Sandbox(spec, argv)
                argv = box.argv
            # Into a pipe, never the log file itself: see log_copier (joins the session's cgroup).
            limiter = limits.limiter(memory, cpus, cgroup)
            log = self._log_path(session_id)
            with log_copier.pipe(log, self.log_max_bytes, limiter) as (copier, output):
                proc = subprocess.Popen(
                    argv,
                    cwd="/" if account is not None else home,
                    env=self._environment(request, software, home, scratch, token, account, cgroup),
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
            self._cleanup(session_id, cgroup)
            if isinstance(exc, SpawnerError):
                raise
            raise SpawnerError(f"Cannot start {command[0]}: {exc}") from exc
        finally:
            if box is not None:
                box.close()
        # Read while the child cannot have been reaped yet: it is ours and nobody waited on it.
        create_time = psutil.Process(proc.pid).create_time()
        children[proc.pid] = (create_time, proc)
        # pgid: the first program leads a process group of its own (start_new_session).
        state.update(pid=proc.pid, pgid=proc.pid, create_time=create_time, copier=copier.pid)
        self._save_state(state)
        if box is not None and box.info_fd is not None and account is not None:
            # The sandbox's own network (session_net.py): its way out, in its cgroup.
            try:
                pid = session_net.sandbox_pid(box.info_fd)
                markers = {SESSION_ENV: session_id, RUNTIME_ENV: str(self.runtime_dir)}
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
        if multi_user_problem(self.isolation):
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
            for path in (self.runtime_dir / "logs", self.runtime_dir / "sessions"):
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

    def _sandbox_spec(
        self,
        request: SpawnRequest,
        account: SessionAccount,
        home: Path,
        scratch: Path | None,
        software: SessionSoftware,
    ) -> SandboxSpec:
        library = None
        if request.library_dir is not None:
            library = Path(request.library_dir).absolute()
        return SandboxSpec(
            account=account,
            home=home,
            socket_dir=self.socket_dir / request.session_id,
            scratch=scratch,
            library=library,
            library_target=home / LIBRARY_NAME,
            software=software.prefixes,
            hidden=software.hidden,
            own_network=True,
            files={
                **{BOOT_DIR / name: (_HERE / name).read_bytes() for name in _BOOT_FILES},
                BOOT_DIR / SERVER_CONFIG: _SERVER_CONFIG_SOURCE.read_bytes(),
            },
        )

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
            message = gone_message(pid, create_time, state)
            return PollResult(ServerStatus.GONE, message=f"{oom} {message}" if oom else message)
        uid = state.get("uid")
        owner = uid if isinstance(uid, int) else None
        if (
            sandbox.is_socket_of(Path(socket_path), owner)
            and answers(socket_path, base_url, token, READY_TIMEOUT_SECONDS)
            and socket_pin(Path(socket_path), self._route_link(state), owner, self._router_gid())
        ):
            return PollResult(ServerStatus.RUNNING, url=self._url(base_url), message=oom)
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
        log_copier.remove(state.get("copier"), self._log_path(session_id))
        self._cleanup(session_id, None)

    def list_servers(self) -> list[RunningServer]:
        """The sessions of this runtime directory whose processes run, from their state files."""
        servers = []
        with contextlib.suppress(OSError):
            for entry in sorted(os.scandir(self.runtime_dir / "sessions"), key=lambda e: e.name):
                if not entry.name.endswith(".json"):
                    continue
                try:
                    with open(entry.path, encoding="utf-8") as file:
                        state = json.load(file)
                    session_id = str(state["session_id"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                if self._alive(state):
                    servers.append(RunningServer(session_id, state))
        return servers

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

    def _cleanup(self, session_id: str, cgroup: limits.SessionCgroup | None) -> None:
        """Remove the session's socket folder, state file and (empty) cgroup."""
        if cgroup is not None:
            cgroup.remove()
        socket_unpin(route_link(self.socket_dir, session_id))
        session_sockets = self.socket_dir / session_id
        # The folder is the session's account's: rmtree never follows a link found in it.
        shutil.rmtree(session_sockets, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._state_path(session_id))

    def _url(self, base_url: str) -> str:
        return f"{self.public_url}{base_url}lab"

    def _log_path(self, session_id: str) -> Path:
        return self.runtime_dir / "logs" / f"{session_id}.log"

    def _state_path(self, session_id: str) -> Path:
        return self.runtime_dir / "sessions" / f"{session_id}.json"

    def _save_state(self, state: State) -> None:
        """Write the state file (root's, 0600: it holds the token) by a rename, never half."""
        path = self._state_path(state["session_id"])
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(state, file)
        os.replace(tmp, path)

    def _environment(
        self,
        request: SpawnRequest,
        software: SessionSoftware,
        home: Path,
        scratch: Path | None,
        token: str,
        account: SessionAccount | None,
        cgroup: limits.SessionCgroup | None,
    ) -> dict[str, str]:
        env = session_variables(software, home, scratch, self.public_url, dict(os.environ))
        if cgroup is None:
            # glibc reserves 64 MB of address space per thread arena; under RLIMIT_AS those
            # reservations, not memory in use, would eat the session's limit.
            env["MALLOC_ARENA_MAX"] = "2"
        if account is not None:
            env.update(USER=account.name, LOGNAME=account.name, SHELL="/bin/bash")
            env["JUPYTER_RUNTIME_DIR"] = SANDBOX_RUNTIME_DIR
        # Jupyter reads its token from here; on the command line any local user could read it.
        env["JUPYTER_TOKEN"] = token
        env[SESSION_ENV] = request.session_id
        env[RUNTIME_ENV] = str(self.runtime_dir)
        return env
