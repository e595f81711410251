"""Local back-end: each session's JupyterLab runs as its own process group on this machine.

Memory and CPU limits are set by the OS before the server starts (see :mod:`.limits`) and are
inherited by every kernel and terminal. Without a cgroup, the rlimit and the affinity are the
only limits (a session's processes could together use more memory, and a process can widen its
own affinity).

Servers run as the worker's user (when that is root, the user's code could lift the limits:
the local back-end is for one trusted machine). They are marked with :data:`SESSION_ENV` and
:data:`RUNTIME_ENV` in their environment, which kernels and their children inherit, so that any
worker - also one started after a restart - finds them and everything they started, also the
processes that left the server's process group (kernels run in sessions of their own).

The home is the server's root and working directory. The user's scratch folder is reachable from
it as the link ``scratch``; the notebooks library is already in it (cloned before the start).
``pip`` installs go to a Python environment in the home, layered over the server's (see
:mod:`.user_python`), and conda's environments and packages to ``~/.conda``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import requests

from sessions_app.spawners import limits, user_python
from sessions_app.spawners.base import (
    PollResult,
    ProgressCallback,
    RunningServer,
    ServerStatus,
    Spawner,
    SpawnerError,
    SpawnRequest,
    State,
    TransientSpawnerError,
)

logger = logging.getLogger(__name__)

SESSION_ENV = "JUPYTER_PORTAL_SESSION_ID"
RUNTIME_ENV = "JUPYTER_PORTAL_RUNTIME_DIR"
# The user's scratch folder, as the session sees it from the home.
SCRATCH_LINK = "scratch"
READY_TIMEOUT_SECONDS = 0.5
# Only these reach a session from the worker's environment: the rest (database URLs, secret
# keys, broker passwords) must not be readable by the user's code.
INHERITED_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "SHELL")
_KILL_WAIT_SECONDS = 5.0
# Session ids name files and cgroups, so they must not carry path separators or dots alone.
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

# The servers this OS process started, by pid, with their create time. Holding the Popen keeps
# the subprocess module from reaping them behind our back (it reaps collected running Popens)
# and lets any spawner instance read their exit code.
_children: dict[int, tuple[float, subprocess.Popen[bytes]]] = {}


class LocalProcessSpawner(Spawner):
    """Run each session's JupyterLab as a local process group listening on 127.0.0.1."""

    def __init__(
        self,
        runtime_dir: Path,
        port_range: tuple[int, int] = (20000, 29999),
        public_host: str = "127.0.0.1",
        stop_grace_seconds: float = 5.0,
    ) -> None:
        # Absolute, because it also marks the servers (RUNTIME_ENV) that list_servers looks for.
        self.runtime_dir = Path(runtime_dir).absolute()
        self.port_range = port_range
        self.public_host = public_host
        self.stop_grace_seconds = stop_grace_seconds

    def start(self, request: SpawnRequest, progress: ProgressCallback) -> State:
        """Launch ``jupyter-lab`` with the session's limits; does not wait for it to answer."""
        if not _SESSION_ID.fullmatch(request.session_id):
            raise SpawnerError(f"Invalid session id {request.session_id!r}.")
        command = _resolve_command(request.backend_settings.get("command", ["jupyter-lab"]))
        home = Path(request.home_dir).absolute()
        log_path = self._log_path(request.session_id)
        try:
            _make_private_dir(home)
            _make_private_dir(log_path.parent)
            _make_private_dir(self.runtime_dir / "ports")
        except OSError as exc:
            raise SpawnerError(f"Cannot create the session's directories: {exc}") from exc
        python_bin = _prepare_home(request, home)
        port, lock_fd = self._reserve_port()
        token = secrets.token_urlsafe(32)
        cpus = limits.cpu_set(request.cpus, port)
        memory = request.memory_mb * 1024 * 1024
        progress(f"Starting JupyterLab on port {port}")
        cgroup = None
        try:
            cgroup = limits.make_cgroup(request.session_id, memory, len(cpus))
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    [*command, *_server_args(port, request.base_url, home)],
                    cwd=home,
                    env=self._environment(request, home, token, python_bin),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    # The server inherits the locked fd: the port stays reserved as long as it runs.
                    pass_fds=(lock_fd,),
                    preexec_fn=limits.limiter(memory, cpus, cgroup),
                )
        except (OSError, subprocess.SubprocessError) as exc:
            if cgroup is not None:
                with contextlib.suppress(OSError):
                    cgroup.rmdir()
            raise SpawnerError(f"Cannot start {command[0]}: {exc}") from exc
        finally:
            os.close(lock_fd)
        # Read while the child cannot have been reaped yet: it is ours and nobody waited on it.
        create_time = psutil.Process(proc.pid).create_time()
        _children[proc.pid] = (create_time, proc)
        logger.info(
            "Started JupyterLab for session %s: pid %s, port %s", request.session_id, proc.pid, port
        )
        return self._state(request.session_id, proc.pid, create_time, port, token, request.base_url)

    def poll(self, state: State) -> PollResult:
        """Gone if the process is dead; running once its own server answers with its own token."""
        try:
            pid, create_time = int(state["pid"]), float(state["create_time"])
            port, token, base_url = int(state["port"]), str(state["token"]), str(state["base_url"])
        except (KeyError, TypeError, ValueError):
            return PollResult(ServerStatus.GONE, message="No server is recorded for this session.")
        # A starting server is polled many times a second, so the common answer ("still
        # starting") must be cheap: for a server this process started, waitpid and a connect
        # test cost microseconds, where the /proc reads and the HTTP request cost a lot more.
        if _own_child_running(pid, create_time) and not _accepts(port):
            return PollResult(ServerStatus.STARTING, message="Waiting for JupyterLab to answer")
        proc = _process(pid, create_time)
        if proc is None or not _alive(proc):
            return PollResult(ServerStatus.GONE, message=_gone_message(pid, create_time, state))
        # Another process answering on the port (one that grabbed it first) is not our server.
        if _accepts(port) and _listens_on(proc, port) and _answers(port, base_url, token):
            return PollResult(ServerStatus.RUNNING, url=self._url(port, base_url, token))
        return PollResult(ServerStatus.STARTING, message="Waiting for JupyterLab to answer")

    def stop(self, state: State) -> None:
        """SIGTERM the server's group and every process of the session, SIGKILL what is left."""
        try:
            pid, create_time = int(state["pid"]), float(state["create_time"])
            session_id = str(state["session_id"])
        except (KeyError, TypeError, ValueError):
            return
        leader = _process(pid, create_time)
        # Kernels run in sessions of their own (jupyter_client), so the group does not hold them:
        # take the server's tree now, before orphans lose their parent, and the marked processes.
        targets = {proc for proc, env in self._marked_processes() if env[SESSION_ENV] == session_id}
        if leader is not None and _alive(leader):
            with contextlib.suppress(psutil.Error):
                targets |= {leader, *leader.children(recursive=True)}
        else:
            leader = None
        for sig, wait in (
            (signal.SIGTERM, self.stop_grace_seconds),
            (signal.SIGKILL, _KILL_WAIT_SECONDS),
        ):
            if not targets:
                break
            # A leader that died meanwhile no longer vouches for its group id.
            _signal(leader if leader in targets else None, targets, sig)
            targets = _wait_gone(targets, wait)
        if targets:
            logger.warning(
                "Session %s: processes %s survived SIGKILL", session_id, [p.pid for p in targets]
            )
        if pid in _children and _children[pid][1].returncode is not None:
            _children.pop(pid, None)
        cgroup = limits.cgroup_path(session_id)
        if cgroup is not None and cgroup.is_dir():
            with contextlib.suppress(OSError):
                cgroup.rmdir()

    def list_servers(self) -> list[RunningServer]:
        """The servers of this runtime directory that run, found by their marker and arguments."""
        servers = []
        for proc, env in self._marked_processes():
            try:
                # Kernels lead process groups too and carry the marker: only servers have our args.
                if os.getpgid(proc.pid) != proc.pid or not _alive(proc):
                    continue
                args = dict(
                    arg.split("=", 1)
                    for arg in proc.cmdline()
                    if arg.startswith("--") and "=" in arg
                )
                port, base_url = int(args["--ServerApp.port"]), args["--ServerApp.base_url"]
                token, create_time = env["JUPYTER_TOKEN"], proc.create_time()
            except (OSError, psutil.Error, KeyError, ValueError):
                continue
            session_id = env[SESSION_ENV]
            state = self._state(session_id, proc.pid, create_time, port, token, base_url)
            servers.append(RunningServer(session_id, state))
        return servers

    def _state(
        self, session_id: str, pid: int, create_time: float, port: int, token: str, base_url: str
    ) -> State:
        return {
            "session_id": session_id,
            "pid": pid,
            "create_time": create_time,
            "pgid": pid,
            "port": port,
            "token": token,
            "base_url": base_url,
            "url": self._url(port, base_url, token),
            "log_path": str(self._log_path(session_id)),
        }

    def _url(self, port: int, base_url: str, token: str) -> str:
        return f"http://{self.public_host}:{port}{base_url}lab?token={token}"

    def _log_path(self, session_id: str) -> Path:
        return self.runtime_dir / "logs" / f"{session_id}.log"

    def _environment(
        self, request: SpawnRequest, home: Path, token: str, python_bin: Path | None
    ) -> dict[str, str]:
        session_id = request.session_id
        env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
        # The user's environment in the home first (``pip``, ``python``: installs go there),
        # then the venv's bin (``jupyter`` and the rest of the server's programs).
        first = [str(python_bin)] if python_bin is not None else []
        env["PATH"] = os.pathsep.join(
            [*first, str(Path(sys.executable).parent), env.get("PATH", os.defpath)]
        )
        env["HOME"] = str(home)
        if python_bin is not None:
            env["VIRTUAL_ENV"] = str(python_bin.parent)
            # Jupyter looks in the server's environment before the home when it runs from a
            # virtual environment: the kernel spec in the home, which runs the user's
            # environment, must win over the server's own ``python3``.
            env["JUPYTER_PREFER_ENV_PATH"] = "0"
        # Where Python and conda put what the user installs: the home, kept between sessions.
        # (PYTHONUSERBASE is for images whose Python is not a virtual environment: it names the
        # same folder, so a home works with either back-end.)
        env["PYTHONUSERBASE"] = str(home / ".local")
        env["CONDA_ENVS_PATH"] = str(home / ".conda" / "envs")
        env["CONDA_PKGS_DIRS"] = str(home / ".conda" / "pkgs")
        if request.scratch_dir is not None:
            # A cache, not the user's packages: it would fill the private quota.
            env["PIP_CACHE_DIR"] = str(Path(request.scratch_dir).absolute() / ".cache" / "pip")
        # glibc reserves 64 MB of address space per thread arena; under RLIMIT_AS those
        # reservations, not memory in use, would eat the session's limit.
        env["MALLOC_ARENA_MAX"] = "2"
        # Jupyter reads its token from here; on the command line any local user could read it.
        env["JUPYTER_TOKEN"] = token
        env[SESSION_ENV] = session_id
        env[RUNTIME_ENV] = str(self.runtime_dir)
        return env

    def _reserve_port(self) -> tuple[int, int]:
        """A free port and the fd of its locked lock file; whoever holds the fd owns the port."""
        low, high = self.port_range
        ports = list(range(low, high + 1))
        # Start at a random place so that concurrent workers rarely try the same locks.
        offset = random.randrange(len(ports))
        for port in ports[offset:] + ports[:offset]:
            fd = os.open(
                self.runtime_dir / "ports" / f"{port}.lock",
                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                0o600,
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            # The lock keeps out our other workers; the bind check, programs outside the portal.
            if _port_is_free(port):
                return port, fd
            os.close(fd)
        raise TransientSpawnerError(f"No free port between {low} and {high}; try again later.")

    def _marked_processes(self) -> Iterator[tuple[psutil.Process, dict[str, str]]]:
        """The processes of this runtime directory's sessions, with their environment."""
        runtime_dir = str(self.runtime_dir)
        for proc in psutil.process_iter(["environ"]):
            env = proc.info["environ"] or {}
            if env.get(RUNTIME_ENV) == runtime_dir and SESSION_ENV in env:
                yield proc, env


def _resolve_command(command: list[str]) -> list[str]:
    """Resolve a relative program against the venv's bin (where Jupyter is installed), then PATH."""
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise SpawnerError(f"Invalid server command {command!r}.")
    program = command[0]
    if not os.path.isabs(program):
        in_venv = Path(sys.executable).parent / program
        found = str(in_venv) if os.access(in_venv, os.X_OK) else shutil.which(program)
        if found is None:
            raise SpawnerError(f"Cannot find the server program {program!r}.")
        program = found
    return [program, *command[1:]]


def _server_args(port: int, base_url: str, home: Path) -> list[str]:
    args = [
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        # Never fall back to another port: the caller knows only this one, and the lock is for it.
        "--ServerApp.port_retries=0",
        f"--ServerApp.base_url={base_url}",
        f"--ServerApp.root_dir={home}",
    ]
    if os.geteuid() == 0:
        # Jupyter refuses to run as root unless told; sessions run as the worker's user.
        args.append("--ServerApp.allow_root=True")
    return args


def _prepare_home(request: SpawnRequest, home: Path) -> Path | None:
    """Link scratch into the home and refresh the user's Python environment (its ``bin``).

    Neither blocks the session: a home where they cannot be made still gets its server.
    """
    if request.scratch_dir is not None:
        _link(home / SCRATCH_LINK, Path(request.scratch_dir).absolute())
    try:
        return user_python.user_python_ensure(home / ".local")
    except (OSError, ValueError) as exc:
        logger.warning("Session %s: no Python environment in the home: %s", request.session_id, exc)
        return None


def _link(link: Path, target: Path) -> None:
    """Make ``link`` a symbolic link to ``target``, unless the user has something else there."""
    try:
        if os.readlink(link) == str(target):
            return
    except FileNotFoundError:
        pass
    except OSError:  # not a link: the user's own file or folder, which is left alone
        logger.warning("%s is not a link to %s: left as it is", link, target)
        return
    # A new link renamed over the old one: the path is never missing or half made.
    tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}")
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except OSError as exc:
        logger.warning("Cannot link %s to %s: %s", link, target, exc)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _make_private_dir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)  # mkdir's mode passes through the umask


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Tornado binds with SO_REUSEADDR, so a port in TIME_WAIT is free for Jupyter too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _process(pid: int, create_time: float) -> psutil.Process | None:
    """The process with this pid if it is the one started at ``create_time`` (pids get reused)."""
    if pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        # psutil derives create_time from the boot time, which shifts when the clock is stepped.
        return proc if abs(proc.create_time() - create_time) < 1.0 else None
    except psutil.Error:
        return None


def _own_child_running(pid: int, create_time: float) -> bool:
    """Whether ``pid`` is a server this OS process started and has not exited (no /proc read)."""
    entry = _children.get(pid)
    return entry is not None and entry[0] == create_time and entry[1].poll() is None


def _alive(proc: psutil.Process) -> bool:
    """Whether ``proc`` runs; a zombie does not, and if it is one of our servers it is reaped."""
    entry = _children.get(proc.pid)
    if entry is not None:
        entry[1].poll()  # waitpid(WNOHANG) for a child; only returns the code of a reaped one
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal(
    leader: psutil.Process | None, targets: set[psutil.Process], sig: signal.Signals
) -> None:
    # The group catches a process the server forks right now; only a live, verified leader's group
    # is signalled, since a dead leader's pid (and so its group id) may belong to someone else.
    if leader is not None:
        with contextlib.suppress(OSError):
            if os.getpgid(leader.pid) == leader.pid != os.getpgrp():
                os.killpg(leader.pid, sig)
    for proc in targets:
        with contextlib.suppress(psutil.Error):  # psutil refuses to signal a reused pid
            proc.send_signal(sig)


def _wait_gone(procs: set[psutil.Process], timeout: float) -> set[psutil.Process]:
    """Wait until the processes are gone or zombies; return those still running."""
    deadline = time.monotonic() + timeout
    while True:
        procs = {proc for proc in procs if _alive(proc)}
        if not procs or time.monotonic() >= deadline:
            return procs
        time.sleep(0.05)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=READY_TIMEOUT_SECONDS).close()
    except OSError:
        return False
    return True


def _listens_on(proc: psutil.Process, port: int) -> bool:
    try:
        connections = proc.net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


def _answers(port: int, base_url: str, token: str) -> bool:
    """Whether the server at ``port`` knows this base URL and accepts this token."""
    with requests.Session() as http:
        # A proxy from the worker's environment must neither see the token nor answer for us.
        http.trust_env = False
        try:
            response = http.get(
                f"http://127.0.0.1:{port}{base_url}api/status",
                headers={"Authorization": f"token {token}"},
                timeout=READY_TIMEOUT_SECONDS,
                allow_redirects=False,
            )
        except requests.RequestException:
            return False
    return response.status_code == 200


def _gone_message(pid: int, create_time: float, state: State) -> str:
    entry = _children.get(pid)
    ours = entry is not None and abs(entry[0] - create_time) < 1.0
    code = entry[1].returncode if entry is not None and ours else None
    if code is None:
        message = "The Jupyter server is no longer running."
    elif code < 0:
        message = f"The Jupyter server was killed by signal {-code}."
    else:
        message = f"The Jupyter server exited with code {code}."
    tail = _log_tail(str(state.get("log_path", "")))
    return f"{message} Last lines of its log:\n{tail}" if tail else message


def _log_tail(path: str, lines: int = 10, max_bytes: int = 4096) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(max(0, os.path.getsize(path) - max_bytes))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
