"""The portal as `make run` starts it, for tests and bench/broker.py: ``runportal`` on a
temporary var/ (SQLite, the embedded broker, a real worker and beat), and a launch/stop loop
of several users through the real API."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parents[2]
# A server that never answers: the session stays "starting" until stopped, so a loop measures
# the broker and the worker, not JupyterLab's start-up.
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
# Fixed ports stay out of the kernel's ephemeral range (32768-60999), where a client socket of
# this machine could hold them.
PORTS = range(15000, 20000)
STARTUP_TIMEOUT = 90.0
# runportal's worker-<queue> children: CELERY_TASK_QUEUES (this module runs without Django too).
WORKER_QUEUES = ("control", "spawn", "storage")


def free_fixed_port() -> int:
    """A free port of PORTS on 127.0.0.1 (random start: helpers running beside us)."""
    candidates = list(PORTS)
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 15000-19999")


_USERS_SCRIPT = """
import json, os
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from portal.tokens import token_issue
from sessions_app.models import Environment
from terms_app.models import TermsVersion
from terms_app.services import terms_accept

count, prefix = int(os.environ["LOOP_USERS"]), os.environ["LOOP_PREFIX"]
command = json.loads(os.environ["LOOP_COMMAND"])
Environment.objects.filter(slug="ecmwf-dss").update(command=command)
group, _ = Group.objects.get_or_create(name=settings.ACCESS_GROUP)
version = TermsVersion.objects.order_by("-published_at").first().version
tokens = []
for n in range(count):
    name = f"{prefix}{n}"
    user = get_user_model().objects.create_user(name, f"{name}@example.org", "x" * 20)
    user.groups.add(group)
    terms_accept(user=user, version=version, ip_address="127.0.0.1", user_agent="loop")
    tokens.append(token_issue(user=user, name="loop"))
print(json.dumps(tokens))
"""

_STATES_SCRIPT = """
import json
from collections import Counter
from sessions_app.models import Session
print(json.dumps(Counter(Session.objects.values_list("state", flat=True))))
"""


@dataclass
class EmbeddedPortal:
    """``runportal`` on ``var_dir`` with a fixed port; its terminal in ``<var_dir>/../portal.log``
    and its processes' logs in ``<var_dir>/log/`` (``runportal.log``, ``web.log``, ...).

    ``extra_env`` is added to the environment (without DATABASE_URL and CELERY_BROKER_URL:
    the embedded default). Use as a context manager; leaving it stops the portal with SIGTERM
    and waits for every process it started.
    """

    var_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_fixed_port)
    process: subprocess.Popen[bytes] | None = None
    descendants: list[psutil.Process] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.var_dir.parent / "portal.log"

    @property
    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "CELERY_BROKER_URL")
        }
        env.update(PORTAL_VAR_DIR=str(self.var_dir), **self.extra_env)
        return env

    def __enter__(self) -> EmbeddedPortal:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "runportal", "--port", str(self.port)],
                cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while "The portal runs at" not in self.terminal():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(
                    f"runportal did not start:\n{self.terminal()[-3000:]}\n"
                    + self.logs().get("runportal", "")[-3000:]
                )
            time.sleep(0.1)
        while True:
            with contextlib.suppress(requests.RequestException):
                requests.get(f"{self.base}/login/", timeout=5)
                return
            assert time.monotonic() < deadline, "the web server did not come up"
            time.sleep(0.1)

    def terminal(self) -> str:
        """What runportal wrote to the terminal (stdout and stderr)."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def logs(self) -> dict[str, str]:
        """Each process's log in var/log/ by name (``runportal``, ``web``, ``worker-spawn``...)."""
        folder = self.var_dir / "log"
        return {
            path.stem: path.read_text(errors="replace") for path in sorted(folder.glob("*.log"))
        }

    def output(self) -> str:
        """The terminal, then every log: what an operator could read of this portal."""
        return "\n".join([self.terminal(), *self.logs().values()])

    def mark(self) -> dict[str, int]:
        """Where each log ends now, for :meth:`since`."""
        return {name: len(text) for name, text in self.logs().items()}

    def since(self, mark: dict[str, int], name: str | None = None) -> str:
        """What the logs (or log ``name`` alone) gained since ``mark``."""
        return "\n".join(
            text[mark.get(log, 0) :]
            for log, text in self.logs().items()
            if name is None or log == name
        )

    def children(self) -> list[psutil.Process]:
        assert self.process is not None
        with contextlib.suppress(psutil.NoSuchProcess):
            return psutil.Process(self.process.pid).children()
        return []

    def child_pid(self, name: str) -> int | None:
        """The pid of runportal's child ``name`` (broker, web, worker-control, worker-spawn,
        worker-storage, beat), if it runs."""
        marks = {
            "broker": ("redis-server",),
            "web": ("gunicorn",),
            **{f"worker-{q}": ("celery", " worker ", f"-Q {q} ") for q in WORKER_QUEUES},
            "beat": ("celery", "beat"),
        }[name]
        for child in self.children():
            with contextlib.suppress(psutil.Error):
                line = " ".join(child.cmdline())
                if all(mark in line for mark in marks) and child.status() != psutil.STATUS_ZOMBIE:
                    return child.pid
        return None

    def worker_pids(self) -> dict[str, int | None]:
        """The pid of each queue's worker (None: not running)."""
        return {q: self.child_pid(f"worker-{q}") for q in WORKER_QUEUES}

    def restarts(self) -> int:
        return self.logs().get("runportal", "").count("restarting in")

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env={**self.env, **(env or {})},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def make_users(self, count: int, prefix: str = "loop") -> list[str]:
        """``count`` users admitted by the access policy, with the current terms accepted and
        the default environment's server set to SLEEPER; their API tokens."""
        env = {"LOOP_USERS": str(count), "LOOP_PREFIX": prefix, "LOOP_COMMAND": json.dumps(SLEEPER)}
        out = self.manage("shell", "-c", _USERS_SCRIPT, env=env)
        return list(json.loads(out.strip().splitlines()[-1]))

    def session_states(self) -> dict[str, int]:
        return dict(json.loads(self.manage("shell", "-c", _STATES_SCRIPT).strip().splitlines()[-1]))

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM runportal, wait for it and for every process it had started; its exit code."""
        if self.process is None:
            return None
        with contextlib.suppress(psutil.NoSuchProcess):
            self.descendants = psutil.Process(self.process.pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait()
        _, alive = psutil.wait_procs(self.descendants, timeout=timeout)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        return code


@dataclass
class LoopOutcome:
    cycles: int = 0
    cycle_seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _wait(api: requests.Session, url: str, done: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        answer = api.get(url, timeout=30)
        body = answer.json() if answer.content else None
        if done(answer.status_code, body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s at {url}: {answer.status_code} {body}")
        time.sleep(0.05)


def _left_queue(code: int, body: Any) -> bool:
    return code != 200 or body["state"] != "queued"


def _user_loop(base: str, token: str, cycles: int, outcome: LoopOutcome, lock: threading.Lock,
               timeout: float) -> None:  # fmt: skip
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    session_url = f"{base}/api/v1/session/"
    for n in range(cycles):
        began = time.monotonic()
        try:
            launched = api.post(session_url, json={"environment": "ecmwf-dss"}, timeout=30)
            assert launched.status_code == 201, (launched.status_code, launched.text[:300])
            session_id = launched.json()["id"]
            # The admission and spawn tasks ran: the server is starting.
            body = _wait(api, session_url, _left_queue, timeout)
            assert body and body["state"] == "starting", body
            stopped = api.delete(session_url, timeout=30)
            assert stopped.status_code == 202, (stopped.status_code, stopped.text[:300])
            # The stop task ran: no active session any more ...
            _wait(api, session_url, lambda code, body: code == 404, timeout)
            # ... and this one ended as the user asked.
            last = api.get(f"{base}/api/v1/sessions/", timeout=30).json()["results"][0]
            assert last["id"] == session_id and last["state"] == "stopped", last
        except (AssertionError, requests.RequestException, ValueError, KeyError) as exc:
            with lock:
                outcome.errors.append(f"cycle {n}: {exc}")
            return  # a stuck session would only make every later cycle fail the same way
        with lock:
            outcome.cycles += 1
            outcome.cycle_seconds.append(time.monotonic() - began)


def launch_stop_loop(base: str, tokens: list[str], cycles: int,
                     timeout: float = 30.0) -> LoopOutcome:  # fmt: skip
    """Each token's user, all at once, ``cycles`` times: launch, wait until the server is
    starting, stop, wait until the session ended as stopped. A step that takes longer than
    ``timeout`` (a lost task leaves a session stuck) ends that user's loop with an error."""
    outcome, lock = LoopOutcome(), threading.Lock()
    threads = [
        threading.Thread(target=_user_loop, args=(base, token, cycles, outcome, lock, timeout))
        for token in tokens
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome
