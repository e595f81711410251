"""Nothing of a local session is left once it ends: no state file, log, socket folder, route
link, cgroup or Jupyter runtime file, whether it was stopped, died, or failed to start; and no
TCP port is taken per session (so none can be "already in use").

Real servers; the per-session paths are found by the session's id, which names every one of
them (session_files.py).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from sessions_app.spawners import deadline, limits, session_files
from sessions_app.spawners.base import ServerStatus, SpawnerError, State
from sessions_app.spawners.isolation import IsolationConfig
from sessions_app.spawners.local import LocalProcessSpawner
from tests.sessions_app.jupyter_kernel import start_kernel
from tests.sessions_app.local_world import FIRST_TEST_PK, World, needs_isolation, session_python
from tests.sessions_app.spawner_contract import make_request, wait_for
from tests.sessions_app.unix_forward import forward

pytestmark = pytest.mark.integration

A = FIRST_TEST_PK + 12


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


def _tree(*roots: Path) -> set[Path]:
    return {path for root in roots for path in root.rglob("*")}


@pytest.fixture
def single_user(tmp_path: Path, socket_root: Path) -> LocalProcessSpawner:
    return LocalProcessSpawner(
        tmp_path / "run", socket_dir=socket_root, isolation=IsolationConfig(mode="off")
    )


@needs_isolation
def test_a_launch_then_stop_leaves_nothing_of_the_session(world: World) -> None:
    # Given a sandboxed session that ran a kernel
    session = world.start(A)
    assert session.value("1 + 1") == "2"
    state = session.state
    during = _leftovers(world.spawner, state)

    # When it is stopped
    world.spawner.stop(state)

    # then its state file, log, socket folder, route link and cgroup are gone, and the
    # portal's folders hold only what they held for no session at all
    assert len(during) >= 4  # what the check looks for was there
    assert _leftovers(world.spawner, state) == []
    assert _tree(world.spawner.runtime_dir, world.spawner.socket_dir) == {
        world.spawner.runtime_dir / "logs",
        world.spawner.runtime_dir / "sessions",
        world.spawner.socket_dir / ".routes",
    }


def test_a_dead_single_user_server_leaves_no_jupyter_files_in_the_home(
    single_user: LocalProcessSpawner, tmp_path: Path
) -> None:
    # Given a single-user session with a kernel, whose server is killed (it cannot remove
    # its own files, nor its kernel's connection file)
    request = make_request(tmp_path, "alice")
    state = single_user.start(request, progress=lambda message: None)
    try:
        wait_for(single_user, state, ServerStatus.RUNNING)
        with forward(state["socket"]) as base:
            start_kernel(f"{base}{state['base_url']}", state["token"])
        os.killpg(state["pgid"], signal.SIGKILL)
        wait_for(single_user, state, ServerStatus.GONE, timeout=10)
    finally:
        # When the portal stops what is left
        single_user.stop(state)

    # then Jupyter's runtime files went with the session, not into the person's home
    home_files = [p.name for p in (request.home_dir / ".local/share/jupyter").rglob("*")]
    assert not [name for name in home_files if name.startswith(("kernel-", "jpserver-"))]
    assert _leftovers(single_user, state) == []


def test_a_start_that_fails_after_its_log_began_leaves_nothing(
    single_user: LocalProcessSpawner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a start whose first program cannot be run, after its log copier started
    monkeypatch.setattr(deadline, "supervised", lambda *args: [str(tmp_path / "no-such")])
    request = make_request(tmp_path, "alice")

    # When it is started
    with pytest.raises(SpawnerError, match="Cannot start"):
        single_user.start(request, progress=lambda message: None)

    # then nothing of it is left: the log (and its copier), the state file, the folders
    state = {"session_id": request.session_id}
    assert _leftovers(single_user, state) == []
    copiers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if request.session_id in " ".join(p.info["cmdline"] or [])
    ]
    assert copiers == []


def test_a_server_that_exits_at_once_is_explained_then_removed(
    single_user: LocalProcessSpawner, tmp_path: Path
) -> None:
    # Given a server that fails as it starts
    command = [session_python(), "-c", "import sys; print('no such kernel'); sys.exit(3)"]
    request = make_request(tmp_path, "alice", backend_settings={"command": command})
    state = single_user.start(request, progress=lambda message: None)

    # When the portal polls it (the message the session's row records), then stops it
    result = wait_for(single_user, state, ServerStatus.GONE, timeout=30)
    single_user.stop(state)

    # then the log was kept until its last lines were read, and is gone now with the rest
    assert "no such kernel" in result.message and not result.deadline_exceeded
    assert _leftovers(single_user, state) == []


@needs_isolation
def test_no_tcp_port_is_taken_per_session_even_with_kernels(world: World) -> None:
    # Given a sandboxed session that runs a kernel
    session = world.start(A)
    assert session.value("'kernel'") == "kernel"
    cgroup = limits.session_cgroup(session.state["session_id"])
    assert cgroup is not None

    # When its processes' TCP sockets are listed
    listening = []
    for pid in cgroup.pids():
        try:
            proc = psutil.Process(pid)
            if proc.name() == "slirp4netns":
                continue  # the session's outgoing connections, on the machine's side
            listening += [c for c in proc.net_connections("inet") if c.status == "LISTEN"]
        except psutil.NoSuchProcess:
            continue

    # then none listens: the server has its Unix socket, the kernels ZMQ over ipc files
    assert listening == []


def test_files_that_no_stop_reached_go_a_day_after_the_session_ended(
    single_user: LocalProcessSpawner, tmp_path: Path
) -> None:
    # Given two sessions that ended and that no stop reached (their start's worker was lost),
    # one a moment ago, one more than a day ago
    command = [session_python(), "-c", "print('bye')"]
    states = []
    for name in ("recent", "old"):
        request = make_request(tmp_path, name, backend_settings={"command": command})
        state = single_user.start(request, progress=lambda message: None)
        wait_for(single_user, state, ServerStatus.GONE, timeout=30)
        states.append(state)
    recent, old = states
    long_ago = time.time() - session_files.LEFTOVER_SECONDS - 60
    for path in (
        old["log_path"],
        session_files.state_path(single_user.runtime_dir, old["session_id"]),
    ):
        os.utime(path, (long_ago, long_ago))

    # When the reconcile sweep lists the servers
    servers = single_user.list_servers()

    # then neither runs; the old one's files are gone, the recent one's log is still there to
    # explain its end
    assert servers == []
    assert _leftovers(single_user, old) == []
    assert "bye" in Path(recent["log_path"]).read_text()
    single_user.stop(recent)
