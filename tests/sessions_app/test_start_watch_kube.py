"""The Kubernetes spawner's side of the start watcher: every starting session's pod in one LIST
per tick (never one GET each, never the running sessions' pods) and one watch between ticks,
against the fake API server, the test playing the kubelet.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sessions_app.spawners.base import ServerStatus, State
from sessions_app.spawners.kube import KubernetesSpawner
from tests.kube.apiserver import FakeApiServer
from tests.kube.kubelet import Kubelet
from tests.sessions_app.test_spawner_kube import kube_request, make_spawner, no_progress

PODS = r"/namespaces/jupyter-sessions/pods"
STARTING = 5


@pytest.fixture
def spawner(kube_server: FakeApiServer) -> KubernetesSpawner:
    return make_spawner(kube_server)


@pytest.fixture
def pods(spawner: KubernetesSpawner, kubelet: Kubelet, tmp_path: Path) -> dict[str, State]:
    """Six sessions' pods: five starting (scheduled, image pulling) and one running."""
    states = {}
    for index in range(STARTING + 1):
        request = kube_request(tmp_path, f"user{index}")
        state = spawner.start(request, no_progress)
        kubelet.schedule(state["pod"])
        kubelet.pulling(state["pod"])
        states[request.session_id] = state
    kubelet.run(state["pod"])
    return states


def test_one_list_tells_every_starting_pod_and_a_second_asks_for_no_events_again(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, pods: dict[str, State]
) -> None:
    starting = dict(list(pods.items())[:STARTING])
    before = len(kube_server.requests)

    first = spawner.poll_many(starting)
    second = spawner.poll_many(starting)

    assert {result.status for result in [*first.values(), *second.values()]} == {
        ServerStatus.STARTING
    }
    assert {result.message for result in second.values()} == {
        "Downloading the environment's image (this can take a few minutes)."
    }
    asked = kube_server.requests[before:]
    lists = [r for r in asked if r.path.endswith("/pods")]
    assert len(lists) == 2  # one LIST per poll_many, not one GET per pod
    assert not [r for r in asked if "/pods/" in r.path]
    # Only the starting sessions' pods, by their session label: never the running one's.
    assert "jupyter-portal/session in (" in lists[0].query["labelSelector"]
    [running] = [state for key, state in pods.items() if key not in starting]
    assert running["session_id"] not in lists[0].query["labelSelector"]
    # The events behind each progress line were read once, for the first list only.
    events = [r for r in asked if r.path.endswith("/events")]
    assert len(events) == STARTING


def test_a_pod_that_went_missing_is_gone_and_a_ready_one_running(
    spawner: KubernetesSpawner, kubelet: Kubelet, pods: dict[str, State]
) -> None:
    keys = list(pods)
    spawner.core.delete_namespaced_pod(pods[keys[0]]["pod"], "jupyter-sessions")
    kubelet.run(pods[keys[1]]["pod"])

    results = spawner.poll_many(pods)

    assert results[keys[0]].status == ServerStatus.GONE
    assert results[keys[0]].message == "Its pod is gone from the cluster."
    assert results[keys[1]].status == ServerStatus.RUNNING
    assert results[keys[1]].url == pods[keys[1]]["url"]
    assert results[keys[1]].started_at is not None
    assert results[keys[2]].status == ServerStatus.STARTING


def test_wait_many_returns_when_a_starting_pod_changes(
    spawner: KubernetesSpawner,
    kube_server: FakeApiServer,
    kubelet: Kubelet,
    pods: dict[str, State],
) -> None:
    starting = dict(list(pods.items())[:STARTING])
    spawner.poll_many(starting)  # where the watch starts from
    timer = threading.Timer(0.3, kubelet.run, args=[next(iter(starting.values()))["pod"]])
    timer.start()
    began = time.monotonic()

    spawner.wait_many(starting, timeout=30)

    waited = time.monotonic() - began
    timer.join()
    [watch] = kube_server.requests_to("GET", rf"{PODS}$")[-1:]
    assert watch.query.get("watch") == "true" and watch.query.get("resourceVersion")
    assert "jupyter-portal/session in (" in watch.query["labelSelector"]
    # A watch, not a sleep: back long before the 30 s it was allowed (generous for a busy CI).
    assert waited < 15
