"""Deadlines the local back-end keeps itself: each session's first process (deadline.py) ends it
at its time limit, as a pod's activeDeadlineSeconds does, with no portal process running.

Real servers, a real worker process killed with SIGKILL; the time limits are short (seconds) so
that the tests wait for real deadlines. "Within 2 s of the deadline" is asserted with a margin.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.conf import settings
from django.utils import timezone

from sessions_app.models import Environment, Session
from sessions_app.reconcile import sessions_reconcile
from sessions_app.services import (
    session_finish_stop,
    session_launch,
    session_request_stop,
    session_spawn,
    sessions_admit,
)
from sessions_app.spawners import deadline, get_spawner, limits
from sessions_app.spawners.base import ServerStatus, SpawnRequest, State
from sessions_app.spawners.isolation import IsolationConfig
from sessions_app.spawners.local import SESSION_ENV, LocalProcessSpawner
from sessions_app.start_watch import sessions_starting_check
from storage_app.layout import home_ensure
from tests.sessions_app.jupyter_kernel import start_kernel
from tests.sessions_app.local_world import FIRST_TEST_PK, LiveSession, World, needs_isolation
from tests.sessions_app.spawner_contract import make_request, wait_for
from tests.sessions_app.unix_forward import forward

pytestmark = pytest.mark.integration

A = FIRST_TEST_PK + 11
# Long enough for a sandboxed server to start (and make the person's Python environment) on a
# busy machine before the deadline.
DURATION = 45
# The target is 2 s past the deadline; asserted with a margin for a loaded test machine.
SLACK = 5.0
# A worker that starts one session and then waits to be killed.
WORKER = """
import json, sys, time
from pathlib import Path
from sessions_app.spawners.base import SpawnRequest
from sessions_app.spawners.isolation import IsolationConfig
from sessions_app.spawners.local import LocalProcessSpawner

args = json.loads(sys.argv[1])
spawner = LocalProcessSpawner(
    Path(args["runtime_dir"]),
    socket_dir=Path(args["socket_dir"]),
    isolation=IsolationConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in args["isolation"].items()}
    ),
)
request = SpawnRequest(**args["request"])
print(json.dumps(spawner.start(request, progress=lambda message: None)), flush=True)
time.sleep(3600)
"""


def _session_processes(state: State) -> set[int]:
    """Every process of the session that runs: its cgroup's, else those carrying its id."""
    cgroup = limits.session_cgroup(state["session_id"]) if state.get("cgroup") else None
    if cgroup is not None:
        return cgroup.pids()
    found = set()
    for proc in psutil.process_iter(["environ", "status"]):
        env = proc.info["environ"] or {}
        if env.get(SESSION_ENV) == state["session_id"] and proc.info["status"] != "zombie":
            found.add(proc.pid)
    return found


def _ended_at(state: State) -> float:
    """When the last process of the session ended (seen every 50 ms)."""
    give_up = float(state["deadline"]) + 60
    while _session_processes(state):
        assert time.time() < give_up, "the session was not ended at its deadline"
        time.sleep(0.05)
    return time.time()


@pytest.fixture
def killed_worker(world: World) -> Iterator[tuple[subprocess.Popen[bytes], SpawnRequest]]:
    """A worker process of its own that starts one session (the test's process plays the
    portal that comes back), and the session's request."""
    request = world.request(A, duration_seconds=DURATION)
    fields = {
        k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(request).items()
    }
    spawner = world.spawner
    args = {
        "runtime_dir": str(spawner.runtime_dir),
        "socket_dir": str(spawner.socket_dir),
        "isolation": dataclasses.asdict(spawner.isolation),
        "request": fields,
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(args)],
        stdout=subprocess.PIPE,
        cwd=settings.BASE_DIR,
    )
    try:
        yield worker, request
    finally:
        worker.kill()
        worker.wait()


@needs_isolation
def test_a_session_ends_at_its_deadline_with_its_worker_killed(
    world: World, killed_worker: tuple[subprocess.Popen[bytes], SpawnRequest]
) -> None:
    # Given a sandboxed session started by a worker that is then killed with SIGKILL
    worker, request = killed_worker
    assert worker.stdout is not None
    state = json.loads(worker.stdout.readline())
    world.sessions.append(LiveSession(world.spawner, request, state))
    running = wait_for(world.spawner, state, ServerStatus.RUNNING, timeout=DURATION - 5)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()

    # When its deadline comes with no portal process doing anything
    ended = _ended_at(state)

    # then every process of it ended within 2 s of the deadline, not before it
    deadline = float(state["deadline"])
    assert deadline - 0.5 < ended < deadline + SLACK, ended - deadline
    assert deadline == pytest.approx(float(state["started"]) + DURATION)
    # the start the portal counts from is the back-end's own
    assert running.started_at == datetime.fromtimestamp(state["started"], UTC)
    # and the portal, back, learns that it was the time limit, not a failure
    gone = world.spawner.poll(state)
    assert (gone.status, gone.deadline_exceeded) == (ServerStatus.GONE, True)
    assert "time limit" in Path(state["log_path"]).read_text()

    # When the portal stops what is left, nothing of the session remains
    world.spawner.stop(state)
    assert _leftovers(world.spawner, state) == []


def _leftovers(spawner: LocalProcessSpawner, state: State) -> list[str]:
    """What the portal's var/ and socket folder, and the cgroups, still hold of the session."""
    session_id = state["session_id"]
    found = [
        str(path)
        for root in (spawner.runtime_dir, spawner.socket_dir)
        for path in root.rglob("*")
        if session_id in path.name
    ]
    cgroup = limits.session_cgroup(session_id)
    if cgroup is not None:
        found += [str(path) for path in cgroup.dirs if path.exists()]
    return found


def test_without_cgroups_the_kernels_end_at_the_deadline_too(
    tmp_path: Path, socket_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a single-user session without a cgroup (rlimits only), with a kernel, which runs
    # in a process session of its own
    monkeypatch.setattr(limits, "cgroup_layout", lambda *args, **kwargs: None)
    spawner = LocalProcessSpawner(
        tmp_path / "run", socket_dir=socket_root, isolation=IsolationConfig(mode="off")
    )
    request = make_request(tmp_path, "alice", duration_seconds=DURATION)
    state = spawner.start(request, progress=lambda message: None)
    try:
        wait_for(spawner, state, ServerStatus.RUNNING, timeout=DURATION - 5)
        with forward(state["socket"]) as base:
            start_kernel(f"{base}{state['base_url']}", state["token"])
        [kernel] = [
            p
            for p in map(psutil.Process, _session_processes(state))
            if "ipykernel_launcher" in " ".join(p.cmdline())
        ]
        assert os.getsid(kernel.pid) != os.getsid(state["pid"])

        # When its deadline comes
        ended = _ended_at(state)

        # then the server and its kernel ended within 2 s of it
        deadline = float(state["deadline"])
        assert deadline - 0.5 < ended < deadline + SLACK, ended - deadline
        assert not kernel.is_running() or kernel.status() == psutil.STATUS_ZOMBIE
        assert spawner.poll(state).deadline_exceeded
    finally:
        spawner.stop(state)
    assert _leftovers(spawner, state) == []


@needs_isolation
def test_a_server_that_dies_before_its_deadline_takes_its_session_along(world: World) -> None:
    # Given a sandboxed session whose server dies long before its deadline
    session = world.start(A, duration_seconds=3600)
    processes = map(psutil.Process, _session_processes(session.state))
    servers = [p for p in processes if p.name() == "jupyter-lab"]  # and what it forks now
    assert servers
    for server in servers:
        server.kill()

    # When the portal looks at it
    result = world.spawner.poll(session.state)
    while result.status != ServerStatus.GONE:
        time.sleep(0.05)
        result = world.spawner.poll(session.state)

    # then it is a death, not the time limit, and nothing of the session runs any more (its
    # network helper, outside the sandbox, included); only the log copier drains the last lines
    assert not result.deadline_exceeded and "time limit" not in result.message
    assert _session_processes(session.state) - {session.state["copier"]} == set()


@pytest.mark.django_db(transaction=True)
def test_the_portal_counts_down_to_the_back_ends_deadline(
    accepted: Any, environment: Environment
) -> None:
    # Given a launch that the start watcher promotes to running
    session = session_launch(user=accepted, environment_slug="ecmwf-dss", options={}).session
    assert sessions_admit() == 1
    session_spawn(str(session.pk))
    give_up = time.monotonic() + 90
    while Session.objects.get(pk=session.pk).state == Session.State.STARTING:
        assert time.monotonic() < give_up, "the session did not start"
        sessions_starting_check(get_spawner())
        time.sleep(0.2)
    session.refresh_from_db()
    try:
        # then its expires_at is the deadline its first process keeps
        assert session.state == Session.State.RUNNING and session.expires_at is not None
        state = session.spawner_state
        deadline = datetime.fromtimestamp(state["deadline"], UTC)
        assert abs(session.expires_at - deadline) < timedelta(milliseconds=1)
        limit = state["deadline"] - state["started"]
        assert limit == pytest.approx(environment.max_duration_minutes * 60)
    finally:
        session_request_stop(str(session.pk), Session.Reason.USER_STOPPED)
        session_finish_stop(str(session.pk))


@pytest.mark.django_db(transaction=True)
def test_reconcile_records_a_session_ended_at_its_deadline_as_expired(
    accepted: Any, environment: Environment
) -> None:
    # Given a running session whose deadline passes while no portal process runs
    session_id = uuid.uuid4()
    spawner = get_spawner()
    assert isinstance(spawner, LocalProcessSpawner)
    request = SpawnRequest(
        session_id=str(session_id),
        username=accepted.username,
        user_id=accepted.pk,
        memory_mb=1024,
        cpus=1,
        duration_seconds=15,
        home_dir=home_ensure(accepted),
    )
    state = spawner.start(request, progress=lambda message: None)
    try:
        now = timezone.now()
        session = Session.objects.create(
            id=session_id,
            user=accepted,
            environment=environment,
            state=Session.State.RUNNING,
            created_at=now,
            started_at=now,
            expires_at=datetime.fromtimestamp(state["deadline"], UTC),
            spawner_state=state,
        )
        _ended_at(state)

        # When the portal comes back and reconciles
        sessions_reconcile()

        # then the session expired at its time limit, and nothing of it is left
        session.refresh_from_db()
        assert (session.state, session.reason) == (
            Session.State.EXPIRED,
            Session.Reason.TIME_LIMIT,
        )
        assert _leftovers(spawner, state) == []
    finally:
        spawner.stop(state)


def _supervise(command: list[str], ends: float, **env: str) -> subprocess.Popen[bytes]:
    # Markers of its own: the supervisor ends whatever carries them.
    markers = {SESSION_ENV: uuid.uuid4().hex, "JUPYTER_PORTAL_RUNTIME_DIR": "/x"}
    return subprocess.Popen(
        deadline.supervised(sys.executable, command, ends, [], [], markers),
        env={**os.environ, **markers, **env},
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def test_the_supervisor_leaves_as_its_child_did() -> None:
    exits = _supervise([sys.executable, "-c", "raise SystemExit(3)"], 0)
    killed = _supervise([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"], 0)
    missing = _supervise(["/no/such/program"], 0)

    assert exits.wait(30) == 3
    assert killed.wait(30) == -signal.SIGKILL
    assert missing.wait(30) == 127
    assert missing.stderr is not None and b"Cannot run /no/such/program" in missing.stderr.read()


def test_at_the_deadline_the_supervisor_ends_its_group_and_the_marked_processes() -> None:
    # Given a server and a process it started in a session of its own (as kernels are), both
    # carrying the session's markers, and a deadline 3 s away
    script = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    ends = time.time() + 3
    supervisor = _supervise([sys.executable, "-c", script], ends)
    kernel_pid = None
    give_up = time.monotonic() + 30
    while kernel_pid is None:
        assert time.monotonic() < give_up
        server = psutil.Process(supervisor.pid).children(recursive=True)
        kernel_pid = next((p.pid for p in server if p.name() == "sleep"), None)
        time.sleep(0.05)
    kernel = psutil.Process(kernel_pid)

    # When the deadline comes
    code = supervisor.wait(30)
    ended = time.time()

    # then both ended within 2 s of it, the server by SIGTERM, and the supervisor said why
    assert ends < ended < ends + SLACK
    assert code == -signal.SIGTERM
    assert not kernel.is_running() or kernel.status() == psutil.STATUS_ZOMBIE
    assert supervisor.stderr is not None and b"time limit" in supervisor.stderr.read()


def test_the_sessions_programs_get_sigpipe_as_usual() -> None:
    # Python ignores SIGPIPE for itself; a child it forks keeps that unless told otherwise.
    supervisor = subprocess.Popen(
        deadline.supervised(sys.executable, ["grep", "SigIgn", "/proc/self/status"], 0, [], [], {}),
        stdout=subprocess.PIPE,
    )
    output, _ = supervisor.communicate(timeout=30)

    ignored = int(output.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
