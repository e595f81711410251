"""The Kubernetes spawner's side of the server-watch loop: ``wait_for_changes`` sees a running
session's pod end (failed, out of memory, its deadline, deleted) as it happens, from one watch
of every session pod kept across calls; a live pod's changes do not wake it; a failing API
server and a 410 Gone do not break it. Against the fake API server, the test playing the
kubelet through the real client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sessions_app.spawners.base import ServerStatus, State
from sessions_app.spawners.kube import KubernetesSpawner
from tests.kube.apiserver import FakeApiServer
from tests.kube.kubelet import Kubelet
from tests.sessions_app.test_spawner_kube import NS, kube_request, make_spawner, no_progress

PODS = rf"/namespaces/{NS}/pods$"
RUNNING = 3
#: The issue's bound for seeing a death (2 s), with room for a busy CI machine.
SEEN_WITHIN = 5.0


@pytest.fixture
def spawner(kube_server: FakeApiServer) -> KubernetesSpawner:
    return make_spawner(kube_server)


@pytest.fixture
def running(spawner: KubernetesSpawner, kubelet: Kubelet, tmp_path: Path) -> dict[str, State]:
    """Three running sessions' states, by session id."""
    states = {}
    for index in range(RUNNING):
        request = kube_request(tmp_path, f"user{index}")
        state = spawner.start(request, no_progress)
        for step in (kubelet.schedule, kubelet.pulling, kubelet.run):
            step(state["pod"])
        states[request.session_id] = state
    return states


def oom_kill(spawner: KubernetesSpawner, name: str) -> None:
    """What the kubelet writes when the kernel kills the server for its memory limit."""
    spawner.core.patch_namespaced_pod_status(
        name,
        NS,
        {
            "status": {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": "notebook",
                        "ready": False,
                        "restartCount": 0,
                        "image": "quay.io/jupyter/minimal-notebook:python-3.11",
                        "imageID": "",
                        "state": {
                            "terminated": {"exitCode": 137, "reason": "OOMKilled"},
                        },
                    }
                ],
            }
        },
    )


def delete(spawner: KubernetesSpawner, name: str) -> None:
    spawner.core.delete_namespaced_pod(name, NS)


Death = Callable[[KubernetesSpawner, Kubelet, str], None]
DEATHS: dict[str, Death] = {
    "failed": lambda spawner, kubelet, name: kubelet.fail(name, exit_code=1),
    "oom-killed": lambda spawner, kubelet, name: oom_kill(spawner, name),
    "deadline": lambda spawner, kubelet, name: kubelet.deadline_exceeded(name),
    "deleted": lambda spawner, kubelet, name: delete(spawner, name),
}


@pytest.fixture
def later() -> Iterator[Callable[[float, Callable[[], None]], None]]:
    """Run a function after a delay in a thread; joined (and re-raised) at the end."""
    timers: list[threading.Thread] = []
    errors: list[BaseException] = []

    def schedule(delay: float, function: Callable[[], None]) -> None:
        def run() -> None:
            time.sleep(delay)
            try:
                function()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        timers.append(thread)

    yield schedule
    for thread in timers:
        thread.join(10)
    if errors:
        raise errors[0]


def watches(server: FakeApiServer) -> int:
    return sum(1 for r in server.requests_to("GET", PODS) if r.query.get("watch") == "true")


def lists(server: FakeApiServer) -> int:
    return sum(1 for r in server.requests_to("GET", PODS) if r.query.get("watch") != "true")


@pytest.mark.parametrize("death", DEATHS.values(), ids=DEATHS.keys())
def test_a_running_pod_that_ends_is_reported_at_once(
    spawner: KubernetesSpawner,
    kubelet: Kubelet,
    running: dict[str, State],
    later: Callable[[float, Callable[[], None]], None],
    death: Death,
) -> None:
    victim, state = list(running.items())[1]
    later(0.5, lambda: death(spawner, kubelet, state["pod"]))
    began = time.monotonic()

    changed = spawner.wait_for_changes(running, timeout=30)

    waited = time.monotonic() - began
    assert changed == {victim}
    assert waited < SEEN_WITHIN  # the watch, not the 30 s timeout
    # What the caller does next: poll it, and the poll agrees it is gone.
    assert spawner.poll(state).status == ServerStatus.GONE


def test_a_death_between_two_calls_is_seen_by_the_next_one(
    spawner: KubernetesSpawner,
    kube_server: FakeApiServer,
    kubelet: Kubelet,
    running: dict[str, State],
) -> None:
    assert spawner.wait_for_changes(running, timeout=0.5) == set()
    victim, state = next(iter(running.items()))
    kubelet.fail(state["pod"], exit_code=137)
    began = time.monotonic()

    changed = spawner.wait_for_changes(running, timeout=30)

    assert changed == {victim}
    assert time.monotonic() - began < SEEN_WITHIN
    assert lists(kube_server) == 1  # resumed from the kept version, not listed again


def test_a_pod_that_died_before_the_first_call_is_reported_from_the_list(
    spawner: KubernetesSpawner, kubelet: Kubelet, running: dict[str, State]
) -> None:
    [failed, deleted, alive] = list(running)
    kubelet.fail(running[failed]["pod"])
    delete(spawner, running[deleted]["pod"])

    changed = spawner.wait_for_changes(running, timeout=30)

    assert changed == {failed, deleted}


def test_readiness_flips_and_other_sessions_pods_do_not_end_the_wait(
    spawner: KubernetesSpawner,
    kube_server: FakeApiServer,
    kubelet: Kubelet,
    running: dict[str, State],
    later: Callable[[float, Callable[[], None]], None],
) -> None:
    asked = dict(list(running.items())[:2])
    [mine, _] = [state["pod"] for state in asked.values()]
    [other] = [state["pod"] for key, state in running.items() if key not in asked]
    spawner.wait_for_changes(asked, timeout=0.1)  # the list: the watch starts after it
    version_before = spawner._pod_watch.version
    later(0.3, lambda: kubelet.run(mine, ready=False))  # its readiness probe fails …
    later(0.6, lambda: kubelet.run(mine, ready=True))  # … and passes again
    later(0.9, lambda: kubelet.fail(other))  # a session not asked about ends
    began = time.monotonic()

    changed = spawner.wait_for_changes(asked, timeout=2.5)

    waited = time.monotonic() - began
    assert changed == set()
    assert waited >= 2.0  # not woken by any of the three changes
    # The watch did see the three changes (its version moved past them), and ignored them.
    pod = kube_server.get("pods", NS, other)
    assert pod is not None
    assert int(spawner._pod_watch.version) >= int(pod["metadata"]["resourceVersion"])
    assert int(spawner._pod_watch.version) > int(version_before)


def test_a_quiet_wait_returns_at_its_timeout_even_from_a_silent_server(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, running: dict[str, State]
) -> None:
    spawner.wait_for_changes(running, timeout=0.1)
    # The next watch's answer is held back for 20 s, as from an API server that hangs.
    kube_server.delay_next("GET", PODS, 20, before=True, params={"watch": "true"})
    began = time.monotonic()

    changed = spawner.wait_for_changes(running, timeout=1.5)

    assert changed == set()
    assert time.monotonic() - began < 1.5 + 1.0  # the deadline, not the server's 20 s


@pytest.mark.parametrize("request_kind", ["list", "watch"])
def test_an_api_server_fault_answers_every_session_after_a_pause_and_the_watch_recovers(
    spawner: KubernetesSpawner,
    kube_server: FakeApiServer,
    kubelet: Kubelet,
    running: dict[str, State],
    later: Callable[[float, Callable[[], None]], None],
    request_kind: str,
) -> None:
    if request_kind == "watch":
        spawner.wait_for_changes(running, timeout=0.1)  # past the list
        kube_server.fail_next("GET", PODS, 500, params={"watch": "true"})
    else:
        kube_server.fail_next("GET", PODS, 503)
    began = time.monotonic()

    changed = spawner.wait_for_changes(running, timeout=30)

    # Every session, for the caller to poll; after a pause, never a tight loop of requests.
    assert changed == set(running)
    assert 0.9 <= time.monotonic() - began < SEEN_WITHIN
    victim, state = list(running.items())[2]
    later(0.5, lambda: kubelet.fail(state["pod"]))
    assert spawner.wait_for_changes(running, timeout=30) == {victim}


def test_an_api_server_that_is_gone_does_not_raise(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, running: dict[str, State]
) -> None:
    spawner.wait_for_changes(running, timeout=0.1)
    kube_server.stop()

    assert spawner.wait_for_changes(running, timeout=30) == set(running)


def test_a_410_lists_again_and_reports_what_ended_in_the_forgotten_gap(
    spawner: KubernetesSpawner,
    kube_server: FakeApiServer,
    kubelet: Kubelet,
    running: dict[str, State],
    later: Callable[[float, Callable[[], None]], None],
) -> None:
    assert spawner.wait_for_changes(running, timeout=0.1) == set()
    [gap, after, _] = list(running)
    kubelet.fail(running[gap]["pod"])
    kube_server.compact()  # the API server forgets the watch's version: 410 Expired

    assert spawner.wait_for_changes(running, timeout=30) == {gap}
    assert lists(kube_server) == 2

    # Watched from the new list's version on: the next death comes from the watch, no list.
    later(0.5, lambda: delete(spawner, running[after]["pod"]))
    watches_before = watches(kube_server)
    assert spawner.wait_for_changes({after: running[after]}, timeout=30) == {after}
    assert lists(kube_server) == 2
    assert watches(kube_server) == watches_before + 1


def test_a_state_without_a_pod_is_reported_without_waiting(
    spawner: KubernetesSpawner, running: dict[str, State]
) -> None:
    broken = {"ghost": {"backend": "kubernetes"}, **running}

    assert spawner.wait_for_changes(broken, timeout=30) == {"ghost"}
