"""The local back-end: real JupyterLab servers started from the venv, real OS limits."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from sessions_app.spawners.base import (
    ServerStatus,
    SpawnerError,
    SpawnRequest,
    State,
    TransientSpawnerError,
)
from sessions_app.spawners.limits import cgroup_parent
from sessions_app.spawners.local import SESSION_ENV, LocalProcessSpawner
from tests.sessions_app.jupyter_kernel import execute, start_kernel
from tests.sessions_app.spawner_contract import Launch, SpawnerContract, make_request, wait_for

PROJECT_DIR = Path(__file__).resolve().parents[2]
# A stand-in server for tests about the process rather than Jupyter: it ignores the Jupyter
# arguments appended to it (they end up in its sys.argv) and sleeps.
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


@pytest.mark.integration
class TestLocalProcessSpawnerContract(SpawnerContract):
    def make_spawner(self, tmp_path: Path) -> LocalProcessSpawner:
        return LocalProcessSpawner(tmp_path / "run", stop_grace_seconds=5.0)


@pytest.fixture
def spawner(tmp_path: Path) -> LocalProcessSpawner:
    return LocalProcessSpawner(tmp_path / "run")


@pytest.fixture
def launch(spawner: LocalProcessSpawner, tmp_path: Path) -> Iterator[Launch]:
    started: list[State] = []

    def launch(username: str = "alice", **overrides: object) -> tuple[SpawnRequest, State]:
        request = make_request(tmp_path, username, **overrides)
        state = spawner.start(request, progress=lambda message: None)
        started.append(state)
        return request, state

    yield launch
    for state in started:
        spawner.stop(state)


@pytest.fixture
def unused_port_pair() -> tuple[int, int]:
    """Two consecutive ports nobody listens on, outside the default range of other tests."""
    # Below Linux's ephemeral ports (32768 and up), which outgoing connections take at random.
    for low in range(30000, 32700, 2):
        if all(_bindable(port) for port in (low, low + 1)):
            return low, low + 1
    pytest.fail("no two free consecutive ports between 30000 and 32700 on this machine")


def _bindable(port: int) -> bool:
    try:
        with socket.create_server(("127.0.0.1", port)):
            return True
    except OSError:
        return False


class AlwaysOK(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


def server_url(state: State) -> str:
    return f"http://127.0.0.1:{state['port']}{state['base_url']}"


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is dead; pid 1 here may never reap it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill(proc: psutil.Process) -> None:
    """Kill a process a failing test may leave behind; psutil refuses a reused pid."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.kill()


def group_members(pgid: int) -> list[int]:
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and running(pid):
                members.append(pid)
        except ProcessLookupError:
            pass
    return members


@pytest.mark.integration
def test_server_listens_on_loopback_only(spawner: LocalProcessSpawner, launch: Launch) -> None:
    _, state = launch()
    wait_for(spawner, state, ServerStatus.RUNNING)

    listening = [
        c
        for c in psutil.Process(state["pid"]).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]

    assert [(c.laddr.ip, c.laddr.port) for c in listening] == [("127.0.0.1", state["port"])]


@pytest.mark.integration
def test_token_is_in_the_environment_not_on_a_command_line_or_in_the_log(
    spawner: LocalProcessSpawner, launch: Launch
) -> None:
    _, state = launch()
    wait_for(spawner, state, ServerStatus.RUNNING)
    kernel_id = start_kernel(server_url(state), state["token"])
    assert execute(server_url(state), state["token"], kernel_id, "1").status == "ok"
    server = psutil.Process(state["pid"])

    command_lines = [" ".join(p.cmdline()) for p in [server, *server.children(recursive=True)]]

    assert server.environ()["JUPYTER_TOKEN"] == state["token"]
    assert len(command_lines) >= 2  # the server and its kernel
    assert not [line for line in command_lines if state["token"] in line]
    assert state["token"] not in Path(state["log_path"]).read_text()


@pytest.mark.integration
def test_memory_and_cpu_limits_apply_to_kernels(
    spawner: LocalProcessSpawner, launch: Launch
) -> None:
    _, state = launch(memory_mb=1024, cpus=1)
    wait_for(spawner, state, ServerStatus.RUNNING)
    kernel_id = start_kernel(server_url(state), state["token"])

    small = execute(server_url(state), state["token"], kernel_id, "x = bytearray(200 * 2**20)")
    too_big = execute(server_url(state), state["token"], kernel_id, "y = bytearray(2 * 2**30)")

    assert small.status == "ok"
    assert (too_big.status, too_big.ename) == ("error", "MemoryError")
    [kernel] = psutil.Process(state["pid"]).children()
    assert kernel.rlimit(psutil.RLIMIT_AS) == (1024 * 2**20, 1024 * 2**20)
    assert len(kernel.cpu_affinity()) == 1


@pytest.mark.integration
def test_stop_ends_the_server_its_kernels_and_their_orphans(
    spawner: LocalProcessSpawner, launch: Launch, request: pytest.FixtureRequest
) -> None:
    _, state = launch()
    wait_for(spawner, state, ServerStatus.RUNNING)
    url, token = server_url(state), state["token"]
    kernel_id = start_kernel(url, token)
    # A daemon of the user's: its own session, and orphaned, so outside the server's tree.
    daemon = execute(
        url,
        token,
        kernel_id,
        "import subprocess\n"
        "print(subprocess.run(['sh', '-c', 'setsid sleep 600 >/dev/null 2>&1 & echo $!'],"
        " capture_output=True, text=True).stdout)",
    )
    orphan = int(daemon.stdout)
    request.addfinalizer(functools.partial(kill, psutil.Process(orphan)))
    tree = [state["pid"], *(p.pid for p in psutil.Process(state["pid"]).children(recursive=True))]
    assert orphan not in tree and running(orphan)
    assert len(tree) >= 2  # the server and its kernel

    spawner.stop(state)

    assert [pid for pid in [*tree, orphan] if running(pid)] == []
    assert group_members(state["pgid"]) == []


@pytest.mark.integration
def test_kernels_are_not_listed_as_servers(spawner: LocalProcessSpawner, launch: Launch) -> None:
    request, state = launch()
    wait_for(spawner, state, ServerStatus.RUNNING)
    start_kernel(server_url(state), state["token"])

    [listed] = spawner.list_servers()

    assert listed.session_id == request.session_id
    assert {k: listed.state[k] for k in state} == state


@pytest.mark.integration
def test_another_worker_process_polls_and_stops_from_the_stored_state(
    spawner: LocalProcessSpawner, launch: Launch
) -> None:
    _, state = launch()
    wait_for(spawner, state, ServerStatus.RUNNING)
    worker = (
        "import json, sys\n"
        "from sessions_app.spawners.local import LocalProcessSpawner\n"
        "spawner = LocalProcessSpawner(sys.argv[1])\n"
        "state = json.load(sys.stdin)\n"
        "before = spawner.poll(state).status\n"
        "spawner.stop(state)\n"
        "json.dump([before, spawner.poll(state).status], sys.stdout)\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", worker, str(spawner.runtime_dir)],
        input=json.dumps(state),
        capture_output=True,
        text=True,
        cwd=PROJECT_DIR,
        timeout=60,
        check=True,
    )

    assert json.loads(result.stdout) == ["running", "gone"]
    assert spawner.poll(state).status == ServerStatus.GONE
    assert not running(state["pid"])


@pytest.mark.integration
def test_a_reused_pid_is_not_taken_for_the_old_server(
    spawner: LocalProcessSpawner, launch: Launch
) -> None:
    _, state = launch()
    wait_for(spawner, state, ServerStatus.RUNNING)
    # An old session's state whose pid now belongs to this (younger) server.
    stale = dict(state, session_id="old-session", create_time=state["create_time"] - 3600)

    stale_poll = spawner.poll(stale)
    spawner.stop(stale)

    assert stale_poll.status == ServerStatus.GONE
    assert spawner.poll(state).status == ServerStatus.RUNNING


@pytest.mark.integration
def test_concurrent_workers_get_distinct_ports_and_only_their_own_server_is_ready(
    tmp_path: Path, unused_port_pair: tuple[int, int]
) -> None:
    # Two workers (two instances, as in two processes) share the runtime directory and a range
    # of exactly two ports, so both race for the same locks.
    workers = [LocalProcessSpawner(tmp_path / "run", port_range=unused_port_pair) for _ in "ab"]
    requests_ = [make_request(tmp_path, name) for name in ("alice", "bob")]
    states: list[State] = [{}, {}]
    barrier = threading.Barrier(2)

    def start(i: int) -> None:
        barrier.wait()
        states[i] = workers[i].start(requests_[i], progress=lambda message: None)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        alice, bob = states
        for worker, state in zip(workers, states, strict=True):
            wait_for(worker, state, ServerStatus.RUNNING)

        with pytest.raises(TransientSpawnerError):
            workers[0].start(make_request(tmp_path, "carol"), progress=lambda message: None)
        # Bob's server, asked with one of Alice's credentials; Alice's process, with Bob's port.
        mixed_states = [
            dict(bob, token=alice["token"]),
            dict(bob, base_url=alice["base_url"]),
            dict(alice, port=bob["port"]),
        ]

        assert {alice["port"], bob["port"]} == set(unused_port_pair)
        assert [workers[0].poll(s).status for s in mixed_states] == [ServerStatus.STARTING] * 3
        assert [workers[i].poll(states[i]).status for i in (0, 1)] == [ServerStatus.RUNNING] * 2
    finally:
        for worker, state in zip(workers, states, strict=True):
            worker.stop(state)


@pytest.mark.integration
def test_a_server_whose_port_is_taken_is_gone_with_its_log(
    tmp_path: Path, unused_port_pair: tuple[int, int]
) -> None:
    port = unused_port_pair[0]
    spawner = LocalProcessSpawner(tmp_path / "run", port_range=(port, port))
    state = spawner.start(make_request(tmp_path), progress=lambda message: None)
    try:
        # Someone outside the portal takes the port before Jupyter (which needs seconds) binds.
        with socket.create_server(("127.0.0.1", port)):
            result = wait_for(spawner, state, ServerStatus.GONE)
    finally:
        spawner.stop(state)

    assert "exited with code 1" in result.message
    assert "already in use" in result.message


def test_an_impostor_answering_on_the_port_is_not_taken_for_the_server(
    spawner: LocalProcessSpawner, launch: Launch
) -> None:
    _, state = launch(backend_settings={"command": SLEEPER})
    # Another program took the session's port before the server did, and says yes to anything.
    impostor = http.server.HTTPServer(("127.0.0.1", state["port"]), AlwaysOK)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    try:
        answer = requests.get(f"{server_url(state)}api/status", timeout=5)

        result = spawner.poll(state)
    finally:
        impostor.shutdown()
        impostor.server_close()

    assert answer.status_code == 200
    assert result.status == ServerStatus.STARTING


def test_exit_code_and_log_tail_explain_a_dead_server(
    spawner: LocalProcessSpawner, launch: Launch
) -> None:
    command = [sys.executable, "-c", "import sys; print('no such kernel'); sys.exit(3)"]
    _, state = launch(backend_settings={"command": command})

    result = wait_for(spawner, state, ServerStatus.GONE, timeout=10)

    assert "exited with code 3" in result.message
    assert "no such kernel" in result.message


def test_session_gets_a_private_home_and_none_of_the_workers_secrets(
    spawner: LocalProcessSpawner, launch: Launch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DJANGO_SECRET_KEY", "worker-secret")
    request, state = launch(backend_settings={"command": SLEEPER})

    env = psutil.Process(state["pid"]).environ()

    assert stat.S_IMODE(request.home_dir.stat().st_mode) == 0o700
    assert psutil.Process(state["pid"]).cwd() == str(request.home_dir)
    assert env["HOME"] == str(request.home_dir)
    assert env[SESSION_ENV] == request.session_id
    assert env["PATH"].split(os.pathsep)[:2] == [
        str(request.home_dir / ".local" / "bin"),  # the user's Python environment (pip)
        str(Path(sys.executable).parent),
    ]
    assert "worker-secret" not in env.values()


def test_relative_command_is_found_in_the_venv_first(launch: Launch) -> None:
    _, state = launch(backend_settings={"command": ["python", "-c", "import time; time.sleep(60)"]})

    assert psutil.Process(state["pid"]).cmdline()[0] == str(Path(sys.executable).parent / "python")


def test_unknown_command_is_a_spawner_error(spawner: LocalProcessSpawner, tmp_path: Path) -> None:
    request = make_request(tmp_path, backend_settings={"command": ["no-such-jupyter-lab"]})

    with pytest.raises(SpawnerError, match="no-such-jupyter-lab"):
        spawner.start(request, progress=lambda message: None)


def test_cgroup_parent_enables_memory_and_cpu_on_a_v2_hierarchy(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")

    parent = cgroup_parent.__wrapped__((tmp_path,))

    assert parent == tmp_path / "jupyter-portal"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +cpu"
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +cpu"


def test_cgroup_parent_is_none_without_the_memory_controller(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("hugetlb\n")

    assert cgroup_parent.__wrapped__((tmp_path, tmp_path / "missing")) is None


def test_state_url_uses_the_public_host(tmp_path: Path) -> None:
    spawner = LocalProcessSpawner(tmp_path / "run", public_host="portal.example")
    request = make_request(tmp_path, backend_settings={"command": SLEEPER})
    state = spawner.start(request, progress=lambda message: None)
    try:
        assert state["url"] == (
            f"http://portal.example:{state['port']}/user/alice/lab?token={state['token']}"
        )
    finally:
        spawner.stop(state)
