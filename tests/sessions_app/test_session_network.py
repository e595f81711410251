"""Each sandboxed session has a network of its own (sessions_app/spawners/session_net.py).

What a session serves on its loopback is its own: its tools that talk to themselves over
127.0.0.1 work (a web app behind jupyter-server-proxy, a dask cluster), nothing of the machine
or of another session reaches it, and it cannot take a port of the machine (the portal's own
address while the portal restarts) nor meet another session on an abstract Unix socket. The
way out (HTTPS, refused ranges) is in test_local_isolation.py.
"""

from __future__ import annotations

import secrets
import socket
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import redis
import requests

from sessions_app.spawners import limits, session_net
from sessions_app.spawners.local import RUNTIME_ENV, SESSION_ENV
from tests.sessions_app.local_world import World, needs_isolation

pytestmark = [pytest.mark.integration, needs_isolation]
A, B = 99_180, 99_181


def host_free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_session_serves_itself_on_its_loopback_and_the_proxy_reaches_it(world: World) -> None:
    a = world.start(A)
    port = host_free_port()  # free on the machine: nothing there answers from outside
    served = a.run(
        textwrap.dedent(f"""
        import subprocess, time, urllib.request
        server = subprocess.Popen(["python", "-m", "http.server", "{port}", "--bind",
                                   "127.0.0.1"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                print(urllib.request.urlopen("http://127.0.0.1:{port}/").status)
                break
            except OSError:
                time.sleep(0.1)
        """)
    )

    proxied = requests.get(
        f"{a.server_url}proxy/{port}/",
        headers={"Authorization": f"token {a.token}"},
        timeout=30,
    )
    with socket.socket() as outside, pytest.raises(ConnectionRefusedError):
        outside.connect(("127.0.0.1", port))

    assert served.status == "ok" and served.stdout.strip() == "200", served
    assert proxied.status_code == 200 and "Directory listing" in proxied.text


def test_a_dask_cluster_runs_inside_a_session(world: World) -> None:
    a = world.start(A, memory_mb=2048)

    result = a.run(
        textwrap.dedent("""
        from dask.distributed import Client, LocalCluster
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            print(client.submit(lambda x: x + 1, 41).result())
        """),
        timeout=180,
    )

    assert result.status == "ok" and result.stdout.strip().endswith("42"), result


def test_a_session_cannot_take_a_port_of_the_machine(world: World) -> None:
    a = world.start(A)
    machine = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=5)
    assert machine.ping()  # the machine's Redis listens on 6379

    bound = a.run(
        "import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', 6379)); s.listen(); print('bound')"
    )

    # The session's 6379 is its own loopback's: the machine's is still Redis.
    assert bound.status == "ok" and bound.stdout.strip() == "bound", bound
    assert machine.ping()


def test_two_sessions_do_not_meet_on_an_abstract_socket(world: World) -> None:
    a, b = world.start(A), world.start(B)
    name = f"jlp-probe-{secrets.token_hex(4)}"

    listening = a.run(
        "import socket\n"
        "s = socket.socket(socket.AF_UNIX); s.bind('\\0" + name + "'); s.listen(); print('ok')"
    )
    reached = b.run(
        "import socket\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        "    s.connect('\\0" + name + "'); print('connected')\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)"
    )

    assert listening.stdout.strip() == "ok", listening
    assert reached.stdout.strip() == "ConnectionRefusedError", reached


def test_slirp_runs_confined_with_only_the_session_markers(world: World) -> None:
    a = world.start(A)
    net = psutil.Process(int(a.state["net_pid"]))

    status = dict(
        line.split(":\t", 1) for line in Path(f"/proc/{net.pid}/status").read_text().splitlines()
    )

    assert net.uids().real == int(a.state["uid"])  # the packet filter judges its sockets
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"
    assert set(net.environ()) == {"PATH", SESSION_ENV, RUNTIME_ENV}  # none of the worker's


def test_a_stop_without_a_cgroup_by_another_worker_stops_the_network_too(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rlimits mode (no writable cgroup), and the stop comes from a worker that did not start
    # the session (a restart): the session's processes are found by their markers.
    monkeypatch.setattr(limits, "make_cgroup", lambda *args: None)
    monkeypatch.setattr(limits, "session_cgroup", lambda *args: None)
    a = world.start(A)
    net_pid = int(a.state["net_pid"])
    session_net._running.clear()

    world.spawner.stop(a.state)

    for _ in range(50):
        if not psutil.pid_exists(net_pid) or psutil.Process(net_pid).status() == "zombie":
            break
        time.sleep(0.1)
    assert not psutil.pid_exists(net_pid) or psutil.Process(net_pid).status() == "zombie"
