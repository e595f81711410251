"""The local back-end: real JupyterLab servers on Unix sockets, real OS accounts and limits.

The contract suite runs in the mode the machine gives (multi-user as root); the single-user
mode (``LOCAL_ISOLATION=off``) and the rlimits fallback have tests of their own.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sessions_app.spawners import limits
from sessions_app.spawners.base import (
    Route,
    ServerStatus,
    Spawner,
    SpawnerError,
    SpawnRequest,
    State,
)
from sessions_app.spawners.isolation import IsolationConfig
from sessions_app.spawners.jupyter_args import resolve_command
from sessions_app.spawners.local import SESSION_ENV, LocalProcessSpawner
from sessions_app.spawners.os_accounts import (
    SessionAccount,
    account_ensure,
    account_for,
    private_dir_hand_over,
)
from sessions_app.spawners.processes import memory_label
from sessions_app.spawners.socket_route import route_link
from sessions_app.spawners.software import session_software
from sessions_app.spawners.unix_http import UnixHTTPConnection
from tests.sessions_app.jupyter_kernel import execute, start_kernel
from tests.sessions_app.local_world import FIRST_TEST_PK, needs_isolation, session_python
from tests.sessions_app.spawner_contract import (
    Launch,
    SpawnerContract,
    make_request,
    wait_for,
)
from tests.sessions_app.unix_forward import forward

SLEEPER = [session_python(), "-c", "import time; time.sleep(600)"]
PK = FIRST_TEST_PK + 5
OFF = IsolationConfig(mode="off")


def get_over_socket(route: Route, path: str) -> int:
    socket_path = route.upstream.removeprefix("unix:")
    connection = UnixHTTPConnection(socket_path, 10)
    try:
        connection.request("GET", path, headers={"Authorization": route.authorization})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.integration
class TestLocalProcessSpawnerContract(SpawnerContract):
    @pytest.fixture
    def spawner(self, tmp_path: Path, socket_root: Path) -> Spawner:
        self._spawner = LocalProcessSpawner(
            tmp_path / "run",
            socket_dir=socket_root,
            stop_grace_seconds=5.0,
            isolation=IsolationConfig(router_group="www-data" if os.geteuid() == 0 else None),
        )
        return self._spawner

    def make_request(self, tmp_path: Path, username: str) -> SpawnRequest:
        return make_request(tmp_path, username, user_id=PK + len(username))

    def assert_url_answers(self, url: str) -> None:
        # The session URL is the router's (no token in it); the router's tests go through
        # nginx. Here: the URL's shape, and the route the router would take answers.
        [server] = self._spawner.list_servers()
        route = self._spawner.route(server.state)
        assert route is not None
        assert url == f"http://127.0.0.1:8000{server.state['base_url']}lab"
        assert get_over_socket(route, f"{server.state['base_url']}lab") == 200


@pytest.fixture
def spawner(tmp_path: Path, socket_root: Path) -> LocalProcessSpawner:
    return LocalProcessSpawner(
        tmp_path / "run", socket_dir=socket_root, isolation=IsolationConfig(router_group="www-data")
    )


@pytest.fixture
def single_user(tmp_path: Path, socket_root: Path) -> LocalProcessSpawner:
    return LocalProcessSpawner(tmp_path / "run", socket_dir=socket_root, isolation=OFF)


@pytest.fixture
def no_cgroups(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without a writable cgroup: the rlimits fallback."""
    monkeypatch.setattr(limits, "cgroup_layout", lambda *args, **kwargs: None)


def _launcher(spawner: LocalProcessSpawner, tmp_path: Path) -> Iterator[Launch]:
    started: list[State] = []

    def launch(username: str = "alice", **overrides: object) -> tuple[SpawnRequest, State]:
        overrides.setdefault("user_id", PK)
        request = make_request(tmp_path, username, **overrides)
        state = spawner.start(request, progress=lambda message: None)
        started.append(state)
        return request, state

    yield launch
    for state in started:
        spawner.stop(state)


@pytest.fixture
def launch(spawner: LocalProcessSpawner, tmp_path: Path) -> Iterator[Launch]:
    yield from _launcher(spawner, tmp_path)


@pytest.fixture
def launch_single(single_user: LocalProcessSpawner, tmp_path: Path) -> Iterator[Launch]:
    yield from _launcher(single_user, tmp_path)


@pytest.mark.integration
@needs_isolation
def test_the_server_listens_on_its_socket_only(
    spawner: LocalProcessSpawner, launch: Launch
) -> None:
    _, state = launch()
    wait_for(spawner, state, ServerStatus.RUNNING)
    socket_path = Path(state["socket"])
    cgroup = limits.session_cgroup(state["session_id"])
    assert cgroup is not None

    folder, sock = os.lstat(socket_path.parent), os.lstat(socket_path)
    listening = [c for pid in cgroup.pids() for c in _inet(pid) if c.status == psutil.CONN_LISTEN]

    assert (folder.st_uid, folder.st_gid) == (state["uid"], _gid("www-data"))
    assert stat.S_IMODE(folder.st_mode) == 0o2750  # setgid: the socket gets the router's group
    assert stat.S_ISSOCK(sock.st_mode) and stat.S_IMODE(sock.st_mode) == 0o660
    assert (sock.st_uid, sock.st_gid) == (state["uid"], _gid("www-data"))
    assert stat.S_IMODE(os.stat(spawner.socket_dir).st_mode) == 0o711
    assert listening == []  # no TCP port at all


def _inet(pid: int) -> list[Any]:
    """The process's internet sockets; none if it ended meanwhile (the session's short-lived
    helpers come and go while the cgroup is listed)."""
    try:
        return list(psutil.Process(pid).net_connections(kind="inet"))
    except psutil.NoSuchProcess:
        return []


def _gid(name: str) -> int:
    import grp

    return grp.getgrnam(name).gr_gid


@pytest.mark.integration
@needs_isolation
def test_the_token_is_on_no_command_line_log_url_or_readable_file(
    spawner: LocalProcessSpawner, launch: Launch
) -> None:
    _, state = launch()
    result = wait_for(spawner, state, ServerStatus.RUNNING)
    token = state["token"]
    with forward(state["socket"]) as base:
        url = f"{base}{state['base_url']}"
        assert execute(url, token, start_kernel(url, token), "1").status == "ok"
    cgroup = limits.session_cgroup(state["session_id"])
    assert cgroup is not None

    command_lines = [" ".join(psutil.Process(pid).cmdline()) for pid in cgroup.pids()]
    state_file = spawner.runtime_dir / "sessions" / f"{state['session_id']}.json"

    assert len(command_lines) >= 4  # bwrap twice, the server, its kernel
    assert not [line for line in command_lines if token in line]
    assert token not in Path(state["log_path"]).read_text()
    assert token not in result.url and token not in state["url"]
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600 and state_file.stat().st_uid == 0
    # The router is sent to the socket pinned when the server answered, never to the path in
    # the person's own folder.
    pinned = route_link(spawner.socket_dir, state["session_id"])
    assert spawner.route(state) == Route(f"unix:{pinned}", f"token {token}")
    assert os.path.samefile(pinned, state["socket"]) and not pinned.is_symlink()


@pytest.mark.integration
@needs_isolation
def test_a_crashed_worker_leaves_the_session_findable(
    spawner: LocalProcessSpawner, launch: Launch
) -> None:
    request, state = launch()
    wait_for(spawner, state, ServerStatus.RUNNING)
    # The worker died after the start but before it wrote the pid: only the first state file.
    state_file = spawner.runtime_dir / "sessions" / f"{request.session_id}.json"
    state_file.write_text(json.dumps(dict(state, pid=0, create_time=0.0)))

    [listed] = spawner.list_servers()
    spawner.stop(listed.state)

    assert listed.session_id == request.session_id
    assert spawner.poll(state).status == ServerStatus.GONE
    assert not psutil.pid_exists(state["pid"]) or psutil.Process(state["pid"]).status() == "zombie"


@pytest.mark.integration
def test_exit_code_and_log_tail_explain_a_dead_server(
    spawner: LocalProcessSpawner, launch: Launch
) -> None:
    command = [session_python(), "-c", "import sys; print('no such kernel'); sys.exit(3)"]
    _, state = launch(backend_settings={"command": command})

    result = wait_for(spawner, state, ServerStatus.GONE, timeout=30)

    assert "exited with code 3" in result.message
    assert "no such kernel" in result.message


@pytest.mark.integration
def test_single_user_mode_runs_as_the_portal_user_with_rlimits_without_cgroups(
    single_user: LocalProcessSpawner, launch_single: Launch, no_cgroups: None
) -> None:
    _, state = launch_single(memory_mb=1024, cpus=1)
    wait_for(single_user, state, ServerStatus.RUNNING)
    with forward(state["socket"]) as base:
        url, token = f"{base}{state['base_url']}", state["token"]
        kernel_id = start_kernel(url, token)
        small = execute(url, token, kernel_id, "x = bytearray(200 * 2**20)")
        too_big = execute(url, token, kernel_id, "y = bytearray(2 * 2**30)")
    server = psutil.Process(state["pid"])
    # The first process is the deadline's supervisor (deadline.py); the kernel is below it.
    [kernel] = [p for p in server.children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]

    assert small.status == "ok"
    assert (too_big.status, too_big.ename) == ("error", "MemoryError")
    assert kernel.rlimit(psutil.RLIMIT_AS) == (1024 * 2**20, 1024 * 2**20)
    assert len(kernel.cpu_affinity()) == 1
    assert server.uids().real == os.geteuid() and state["cgroup"] == ""


@pytest.mark.integration
def test_single_user_stop_without_cgroups_ends_orphans(
    single_user: LocalProcessSpawner, launch_single: Launch, no_cgroups: None
) -> None:
    _, state = launch_single()
    wait_for(single_user, state, ServerStatus.RUNNING)
    with forward(state["socket"]) as base:
        url, token = f"{base}{state['base_url']}", state["token"]
        daemon = execute(
            url,
            token,
            start_kernel(url, token),
            "import subprocess\n"
            "print(subprocess.run(['sh', '-c', 'setsid sleep 600 >/dev/null 2>&1 & echo $!'],"
            " capture_output=True, text=True).stdout)",
        )
    orphan = psutil.Process(int(daemon.stdout))
    assert orphan.environ()[SESSION_ENV] == state["session_id"]

    single_user.stop(state)

    assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE
    assert single_user.list_servers() == []


def test_session_env_has_a_private_home_and_none_of_the_workers_secrets(
    single_user: LocalProcessSpawner, launch_single: Launch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DJANGO_SECRET_KEY", "worker-secret")
    request, state = launch_single(backend_settings={"command": SLEEPER})

    env = psutil.Process(state["pid"]).environ()

    assert stat.S_IMODE(request.home_dir.stat().st_mode) == 0o700
    assert env["HOME"] == str(request.home_dir)
    assert env[SESSION_ENV] == request.session_id
    assert env["PATH"].split(os.pathsep)[:2] == [
        str(request.home_dir / ".local" / "bin"),  # the user's Python environment (pip)
        str(session_software(single_user.software_dir).bin),  # then the session software
    ]
    assert env["JUPYTER_PORTAL_URL"] == single_user.public_url
    assert "worker-secret" not in env.values()


def test_relative_command_is_found_in_the_session_software_first(tmp_path: Path) -> None:
    software_bin = tmp_path / "bin"
    software_bin.mkdir()
    (software_bin / "python").symlink_to(sys.executable)

    assert resolve_command(["python", "-V"], software_bin) == [str(software_bin / "python"), "-V"]
    assert resolve_command(["sh", "-c", "true"], software_bin)[0] == shutil.which("sh")


def test_a_session_without_its_software_is_refused_with_the_way_to_build_it(
    tmp_path: Path,
) -> None:
    spawner = LocalProcessSpawner(
        tmp_path / "run", isolation=IsolationConfig(mode="off"), software_dir=tmp_path / "none"
    )

    with pytest.raises(SpawnerError, match=r"not built yet .*`make run` builds it"):
        spawner.start(make_request(tmp_path), progress=lambda message: None)


def test_unknown_command_is_a_spawner_error(spawner: LocalProcessSpawner, tmp_path: Path) -> None:
    request = make_request(tmp_path, backend_settings={"command": ["no-such-jupyter-lab"]})

    with pytest.raises(SpawnerError, match="no-such-jupyter-lab"):
        spawner.start(request, progress=lambda message: None)


@needs_isolation
def test_multi_user_mode_needs_the_portal_account(
    spawner: LocalProcessSpawner, tmp_path: Path
) -> None:
    with pytest.raises(SpawnerError, match="no portal account"):
        spawner.start(make_request(tmp_path), progress=lambda message: None)


@pytest.fixture
def bwrap_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    # bubblewrap is installed here; a machine without it is the case under test.
    for module in ("isolation", "local"):
        monkeypatch.setattr(
            f"sessions_app.spawners.{module}.multi_user_problem", lambda: "bwrap is missing"
        )


@pytest.mark.usefixtures("bwrap_missing")
def test_required_isolation_refuses_sessions_without_it(tmp_path: Path) -> None:
    spawner = LocalProcessSpawner(tmp_path / "run", isolation=IsolationConfig(mode="required"))

    with pytest.raises(SpawnerError, match="LOCAL_ISOLATION=required, but bwrap is missing"):
        spawner.start(make_request(tmp_path, user_id=PK), progress=lambda message: None)


@pytest.mark.usefixtures("bwrap_missing")
def test_a_root_portal_that_cannot_isolate_refuses_sessions_unless_told_off(
    tmp_path: Path,
) -> None:
    # Given a portal running as root (these tests do) on a machine without bubblewrap
    auto = LocalProcessSpawner(tmp_path / "run", isolation=IsolationConfig(mode="auto"))

    # then sessions are refused rather than run as root, unsandboxed
    with pytest.raises(SpawnerError, match="runs as root but cannot isolate sessions"):
        auto.start(make_request(tmp_path, user_id=PK), progress=lambda message: None)
    # unless the operator accepted that risk
    off = LocalProcessSpawner(tmp_path / "run", isolation=IsolationConfig(mode="off"))
    request = make_request(tmp_path, user_id=PK, backend_settings={"command": SLEEPER})
    state = off.start(request, progress=lambda message: None)
    off.stop(state)
    assert state["uid"] == os.geteuid()


def test_accounts_follow_the_key_within_the_range() -> None:
    assert account_for(7, "jlp-u", 200_000, 299_999) == SessionAccount("jlp-u7", 200_007, 200_007)
    with pytest.raises(SpawnerError, match="LOCAL_SESSION_UID_MIN/MAX"):
        account_for(100_000, "jlp-u", 200_000, 299_999)


@needs_isolation
def test_an_account_name_taken_by_another_uid_is_a_readable_error() -> None:
    with pytest.raises(SpawnerError, match="already belongs to the account 'daemon'"):
        account_ensure(SessionAccount("daemon", 299_998, 299_998))


@needs_isolation
def test_a_root_owned_home_is_handed_over_without_following_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("root's")
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    (home / "notebooks" / "a.ipynb").write_text("{}")
    (home / "link").symlink_to(outside)
    os.link(outside, home / "hardlink")
    (home / "notebooks-library").mkdir()
    uid = 200_000 + PK

    private_dir_hand_over(home, uid, uid, skip=("notebooks-library",))

    assert os.stat(outside).st_uid == 0  # neither the link nor the hard link gave it away
    assert os.lstat(home / "link").st_uid == uid
    assert os.stat(home / "notebooks" / "a.ipynb").st_uid == uid
    assert os.stat(home / "notebooks-library").st_uid == 0
    assert (os.stat(home).st_uid, stat.S_IMODE(os.stat(home).st_mode)) == (uid, 0o700)
    with pytest.raises(SpawnerError, match="belongs to uid"):
        private_dir_hand_over(home, uid + 1, uid + 1)


def test_cgroup_v2_layout_enables_memory_cpu_and_pids(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")

    layout = limits.cgroup_layout.__wrapped__((tmp_path,), v1=False)

    assert layout == limits.CgroupLayout(2, {"unified": tmp_path / "jupyter-portal"})
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (tmp_path / "jupyter-portal" / "cgroup.subtree_control").read_text() == (
        "+memory +cpu +pids"
    )


def test_no_cgroup_without_the_memory_controller(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("hugetlb\n")

    assert limits.cgroup_layout.__wrapped__((tmp_path, tmp_path / "missing"), v1=False) is None


def test_memory_is_said_as_on_the_service_page() -> None:
    assert [memory_label(m) for m in (4096, 1536, 512, None)] == [
        "4 GB",
        "1.5 GB",
        "512 MB",
        "memory",
    ]


def test_garbage_state_has_no_route(spawner: LocalProcessSpawner) -> None:
    assert spawner.route({}) is None
    assert spawner.route({"socket": 3, "token": "x"}) is None
