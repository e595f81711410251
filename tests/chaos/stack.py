"""A whole portal for fault injection: ``runportal`` as ``make run`` starts it, on a PostgreSQL
cluster and a Redis of its own, with each process killable on its own.

``runportal`` (the supervisor) runs the router (nginx), the web (gunicorn with uvicorn's
workers), a Celery worker per queue and beat, built exactly as ``make run`` builds them; the
broker and the database are private (``tests/pg_cluster.py``, ``tests/chaos/redis_server.py``)
so that a test can stop them without touching the machine's services. Sessions are real
JupyterLab servers of the local back-end (multi-user mode as root).

A test kills one process by its role (:meth:`Stack.kill`); runportal brings it back as it would
in production. To keep a process down (a worker past a deadline, beat for a while), the test
pauses the supervisor itself (:meth:`Stack.supervision_paused`, SIGSTOP/SIGCONT): what it
supervises runs on, nothing is restarted until it resumes.

The test reads the database directly (psycopg, not Django: this process's Django is configured
for the test database) and looks at the sessions' servers with the local back-end's read-only
calls, so that it judges the end state without going through the code under test.
Also used by ``bench/soak.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import psycopg
import requests
from psycopg.rows import dict_row

from tests.chaos.redis_server import RedisServer
from tests.pg_cluster import PgCluster, free_port

ROOT = Path(__file__).resolve().parents[2]
WORKER_QUEUES = ("control", "spawn", "storage")  # settings.CELERY_TASK_QUEUES
WORKERS = tuple(f"worker-{queue}" for queue in WORKER_QUEUES)
ROLES = ("router", "web", *WORKERS, "beat")
ACTIVE_STATES = ("queued", "starting", "running", "stopping")
DEFAULT_ENVIRONMENT = "ecmwf-dss"
# A copy of the default environment with a one-minute time limit (the shortest there is).
MINUTE_ENVIRONMENT = "chaos-minute"
# Portal account keys of the stack's users: their OS accounts (jlp-u<pk>) are apart from other
# tests' (tests/sessions_app/local_world.py takes 99100 and up).
FIRST_PK = 99_300
STARTUP_TIMEOUT = 180.0
# The sweeps re-send lost work and admit queued sessions every SESSION_SWEEP_SECONDS (30 s by
# default): that period bounds every recovery that waits for a sweep, so the stack runs them
# more often to keep the suite within its time budget.
SWEEP_SECONDS = 5
_CELERY_READY = re.compile(r"\b(\w+)@\S+ ready\.")

T = TypeVar("T")

_SETUP = """
import json, os
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from portal.tokens import token_issue
from sessions_app.models import Environment
from sessions_app.spawners.isolation import isolation_status
from terms_app.models import TermsVersion
from terms_app.services import terms_accept

names, first_pk = json.loads(os.environ["CHAOS_USERS"]), int(os.environ["CHAOS_FIRST_PK"])
default = Environment.objects.get(slug="ecmwf-dss")
Environment.objects.update_or_create(slug=os.environ["CHAOS_MINUTE"], defaults={
    "name": "One minute", "use_case": "Chaos tests: a session that reaches its time limit",
    "memory_mb": default.memory_mb, "cpus": default.cpus, "max_duration_minutes": 1,
    "priority": default.priority, "order": 99, "command": default.command,
})
group, _ = Group.objects.get_or_create(name=settings.ACCESS_GROUP)
version = TermsVersion.objects.order_by("-published_at").first().version
tokens = {}
for n, name in enumerate(names):
    user = get_user_model().objects.create_user(
        name, f"{name}@example.org", "x" * 20, id=first_pk + n
    )
    user.groups.add(group)
    terms_accept(user=user, version=version, ip_address="127.0.0.1", user_agent="chaos")
    tokens[name] = token_issue(user=user, name="chaos")
print(json.dumps({
    "tokens": tokens,
    "runtime_dir": str(settings.LOCAL_SPAWNER_RUNTIME_DIR),
    "socket_dir": str(settings.LOCAL_SPAWNER_SOCKET_DIR),
    "router_run_dir": str(settings.LOCAL_ROUTER_RUN_DIR),
    "isolation": isolation_status(check_filter=False)["summary"],
}))
"""

_SESSIONS = """
SELECT s.id::text AS id, u.username, s.state, s.reason, s.message, s.url, s.created_at,
       s.started_at, s.expires_at, s.ended_at, s.updated_at, s.spawner_state
FROM sessions_app_session s JOIN auth_user u ON u.id = s.user_id
ORDER BY s.created_at
"""


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """Call ``check`` until it returns something true (returned); AssertionError after
    ``timeout`` seconds, naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what} (last: {value!r})")
        time.sleep(interval)


@dataclass
class Stack:
    """The portal on ``port`` with ``users`` users (``<prefix>0``…, portal account keys from
    ``first_pk``), each with an API token.

    ``start()`` brings everything up (about 20 s); ``stop()`` takes it down and removes every
    file it made. ``extra_env``: settings of the portal's processes (environment variables).
    """

    users: int = 6
    extra_env: dict[str, str] = field(default_factory=dict)
    prefix: str = "chaos"
    first_pk: int = FIRST_PK
    port: int = field(default_factory=free_port)
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jlp-ch-", dir="/tmp")))
    pg: PgCluster | None = None
    redis: RedisServer | None = None
    process: subprocess.Popen[bytes] | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    _db: psycopg.Connection[dict[str, Any]] | None = None
    _clients: dict[str, requests.Session] = field(default_factory=dict)
    _paused: bool = False

    # --- where ------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [f"{self.prefix}{n}" for n in range(self.users)]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def var_dir(self) -> Path:
        return self.tmp / "var"

    @property
    def log_path(self) -> Path:
        return self.tmp / "runportal.log"

    @property
    def runtime_dir(self) -> Path:
        return Path(self.facts["runtime_dir"])

    @property
    def socket_dir(self) -> Path:
        return Path(self.facts["socket_dir"])

    @property
    def env(self) -> dict[str, str]:
        assert self.pg is not None and self.redis is not None
        dropped = ("DATABASE_URL", "CELERY_BROKER_URL", "PORTAL_VAR_DIR", "PORTAL_PUBLIC_URL",
                   "PORTAL_HOST", "PORTAL_PORT")  # fmt: skip
        env = {key: value for key, value in os.environ.items() if key not in dropped}
        env.update(
            DATABASE_URL=self.pg.url("portal"),
            CELERY_BROKER_URL=self.redis.url,
            PORTAL_VAR_DIR=str(self.var_dir),
            SESSION_SWEEP_SECONDS=str(SWEEP_SECONDS),
            # Room for every launch at once: admission is not under test.
            SESSION_POOL_CPUS="10000",
            SESSION_POOL_MEMORY_MB=str(10**8),
        )
        env.update(self.extra_env)
        return env

    def terminal(self) -> str:
        """What runportal wrote to the terminal: its banner and errors."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log(self, name: str) -> str:
        """One process's log in var/log/ (``runportal``, ``web``, ``worker-spawn``...)."""
        path = self.var_dir / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def output(self) -> str:
        """The terminal, then runportal's own log: what started, died and stopped."""
        return self.terminal() + "\n" + self.log("runportal")

    # --- start and stop ---------------------------------------------------------------------

    def start(self) -> Stack:
        self.pg = PgCluster.create()
        self.pg.start()
        self.pg.create_database("portal")
        self.redis = RedisServer(self.tmp / "redis")
        self.redis.start()
        # runportal migrates the new database before it starts its children.
        command = [sys.executable, "manage.py", "runportal", "--host", "127.0.0.1",
                   "--port", str(self.port)]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        env = {"CHAOS_USERS": json.dumps(self.names), "CHAOS_FIRST_PK": str(self.first_pk),
               "CHAOS_MINUTE": MINUTE_ENVIRONMENT}  # fmt: skip
        wait_for(self._banner, STARTUP_TIMEOUT, "runportal's banner")
        out = self.manage("shell", "-c", _SETUP, env=env)
        self.facts = json.loads(out.strip().splitlines()[-1])
        self.wait_up(STARTUP_TIMEOUT)
        return self

    def _banner(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, f"runportal ended:\n{self.output()[-4000:]}"
        return "The portal runs at" in self.terminal()

    def stop(self) -> None:
        """Stop runportal (its children in order), then every server left, the broker and the
        database; remove the stack's files. Safe after a failed or partial start."""
        if self.process is not None:
            self._resume()
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.facts:
            spawner = self.spawner()
            for server in spawner.list_servers():
                with contextlib.suppress(Exception):
                    spawner.stop(server.state)
            shutil.rmtree(self.facts["router_run_dir"], ignore_errors=True)
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
        if self.redis is not None:
            self.redis.stop()
        if self.pg is not None:
            self.pg.destroy()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env={**self.env, **(env or {})},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    # --- processes --------------------------------------------------------------------------

    def pid(self, role: str) -> int | None:
        """The pid of runportal's child ``role`` (ROLES), if it runs."""
        marks = {
            "router": ("nginx",),
            "web": ("gunicorn",),
            **{f"worker-{q}": ("celery", " worker ", f"-Q {q} ") for q in WORKER_QUEUES},
            "beat": ("celery", " beat "),
        }[role]
        assert self.process is not None
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.process.pid).children():
                with contextlib.suppress(psutil.Error):
                    line = " ".join(child.cmdline())
                    if all(m in line for m in marks) and child.status() != psutil.STATUS_ZOMBIE:
                        return child.pid
        return None

    def pids(self) -> dict[str, int | None]:
        return {role: self.pid(role) for role in ROLES}

    def web_workers(self) -> list[int]:
        """The pids of gunicorn's worker processes."""
        master = self.pid("web")
        if master is None:
            return []
        with contextlib.suppress(psutil.NoSuchProcess):
            return [p.pid for p in psutil.Process(master).children()]
        return []

    def kill(self, role: str, sig: int = signal.SIGKILL) -> int:
        pid = self.pid(role)
        assert pid is not None, f"{role} is not running"
        os.kill(pid, sig)
        return pid

    @contextlib.contextmanager
    def supervision_paused(self) -> Iterator[None]:
        """runportal restarts nothing inside (SIGSTOP); on leaving it catches up (SIGCONT)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self._paused = True
        try:
            yield
        finally:
            self._resume()

    def reset(self, timeout: float = 120.0) -> None:
        """Make the stack ready for the next test: supervision on, broker and database
        running, every process up, no session active and no server left."""
        self._resume()
        assert self.redis is not None and self.pg is not None
        if not self.redis.running():
            self.redis.start()
        if not self.pg.running():
            self.pg.start()
        self.wait_up(timeout)
        if self.active() or self.servers():
            self.force_clean()

    def _resume(self) -> None:
        if self._paused and self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
        self._paused = False

    def up(self) -> bool:
        """Whether every process runs, every worker said it is ready since its last start,
        and the web answers through the router."""
        if any(pid is None for pid in self.pids().values()):
            return False
        started = self.log("runportal")
        for queue in WORKER_QUEUES:
            ready = _CELERY_READY.findall(self.log(f"worker-{queue}"))
            if ready.count(queue) < started.count(f"worker-{queue} started (pid"):
                return False
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{self.base}/healthz", timeout=5).status_code == 200
        return False

    def wait_up(self, timeout: float = 60.0) -> None:
        """Wait until :meth:`up`; fail with the end of runportal's output."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not self.up():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the portal is not up:\n{self.output()[-4000:]}")
            time.sleep(0.2)

    # --- the REST API -----------------------------------------------------------------------

    def client(self, name: str) -> requests.Session:
        """An HTTP client with ``name``'s API token (one per user, kept)."""
        if name not in self._clients:
            client = requests.Session()
            client.headers["Authorization"] = f"Bearer {self.facts['tokens'][name]}"
            self._clients[name] = client
        return self._clients[name]

    def call(self, name: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        """``method`` on ``/api/v1/<path>`` as ``name`` (30 s timeout unless given)."""
        kwargs.setdefault("timeout", 30)
        return self.client(name).request(method, f"{self.base}/api/v1/{path}", **kwargs)

    def launch(self, name: str, environment: str = DEFAULT_ENVIRONMENT) -> requests.Response:
        return self.call(name, "POST", "session/", json={"environment": environment})

    # --- the database -----------------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of ``sql`` (none for a statement that returns none) on the portal's database,
        on a connection kept between calls (a new one after the database restarted)."""
        assert self.pg is not None
        for attempt in range(2):
            try:
                if self._db is None or self._db.closed:
                    self._db = psycopg.connect(
                        self.pg.url("portal"), autocommit=True, row_factory=dict_row,
                        connect_timeout=5,
                    )  # fmt: skip
                cursor = self._db.execute(sql.encode(), params)
                return cursor.fetchall() if cursor.description is not None else []
            except psycopg.OperationalError:
                with contextlib.suppress(Exception):
                    assert self._db is not None
                    self._db.close()
                self._db = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def sessions(self) -> list[dict[str, Any]]:
        """Every session row, oldest first, with its owner's ``username``."""
        return self.query(_SESSIONS)

    def latest(self, name: str) -> dict[str, Any] | None:
        """``name``'s newest session row."""
        rows = [row for row in self.sessions() if row["username"] == name]
        return rows[-1] if rows else None

    def active(self) -> list[dict[str, Any]]:
        return [row for row in self.sessions() if row["state"] in ACTIVE_STATES]

    def wait_states(
        self, names: list[str], states: tuple[str, ...], timeout: float
    ) -> dict[str, dict[str, Any]]:
        """Wait until the newest session of each of ``names`` is in one of ``states``; fail at
        once if one ended otherwise, or after ``timeout`` saying where each one is. The rows
        by name."""
        deadline = time.monotonic() + timeout
        while True:
            rows = {name: self.latest(name) for name in names}
            found = {name: row for name, row in rows.items() if row is not None}
            assert len(found) == len(names), f"no session for {set(names) - set(found)}"
            for name, row in found.items():
                if row["state"] not in states and row["state"] not in ACTIVE_STATES:
                    raise AssertionError(
                        f"{name}'s session ended {row['state']} ({row['reason']}: "
                        f"{row['message']!r}) instead of reaching {'/'.join(states)}"
                    )
            if all(row["state"] in states for row in found.values()):
                return found
            if time.monotonic() > deadline:
                where = {name: f"{row['state']}: {row['message']}" for name, row in found.items()}
                raise AssertionError(f"not {'/'.join(states)} within {timeout:.0f} s: {where}")
            time.sleep(0.2)

    # --- the sessions' servers --------------------------------------------------------------

    def spawner(self) -> Any:
        """The local back-end on the stack's folders. Only its read-only calls are used while
        the portal runs (``list_servers``); ``stop`` only for cleaning up after the portal."""
        from sessions_app.spawners.local import LocalProcessSpawner

        return LocalProcessSpawner(self.runtime_dir, socket_dir=self.socket_dir)

    def servers(self) -> dict[str, dict[str, Any]]:
        """The sessions whose processes run, by id, with their state (the back-end's view)."""
        return {server.session_id: server.state for server in self.spawner().list_servers()}

    def stop_all_sessions(self, timeout: float = 90.0) -> None:
        """Every user stops their active session through the API; wait until none is active."""
        for name in self.names:
            if self.call(name, "GET", "session/").status_code == 200:
                self.call(name, "DELETE", "session/")
        wait_for(lambda: not self.active(), timeout, "no active session left", 0.2)

    def force_clean(self) -> None:
        """After a test that left sessions behind: end their rows and stop their servers
        behind the portal's back, so that the next test starts clean."""
        with contextlib.suppress(Exception):
            self.stop_all_sessions(timeout=30)
        self.query(
            "UPDATE sessions_app_session SET state = 'failed', reason = 'backend_error', "
            "message = 'ended by the chaos suite', url = '', ended_at = now() "
            "WHERE state IN ('queued', 'starting', 'running', 'stopping')"
        )
        spawner = self.spawner()
        for server in spawner.list_servers():
            with contextlib.suppress(Exception):
                spawner.stop(server.state)
