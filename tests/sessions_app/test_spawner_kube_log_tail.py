"""The Kubernetes back-end keeps the last lines of a session's server log for the history page
(``Spawner.log_tail``): the server container's log, read from the cluster as the kubelet keeps
it, cut as the local back-end cuts its own (``processes.cut_log_tail``); "" when the pod is gone
or the cluster fails, never an exception (the stop must go on). Against the fake API server, whose
kubelet holds what the container printed (``tests/kube/kubelet.py``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from sessions_app.models import Session
from sessions_app.spawners.base import State
from sessions_app.spawners.kube import KubernetesSpawner
from sessions_app.spawners.kube_objects import session_name
from sessions_app.spawners.processes import cut_log_tail
from tests.kube.apiserver import FakeApiServer
from tests.kube.kubelet import Kubelet
from tests.sessions_app.lifecycle import in_state, wait_for
from tests.sessions_app.test_kube_flow import _launch, flow, kube_settings
from tests.sessions_app.test_spawner_kube import NS, kube_request, no_progress, spawner

__all__ = ["flow", "kube_settings", "spawner"]  # fixtures

TOKEN = "s3cr3tT0kenOfTheServer"
# What a Jupyter server prints as it fails: its config's path, its URL with a token, its end.
FAILING_LOG = (
    "[I 2026-12-07 10:00:00.001 ServerApp] starting",
    "",
    "[I 2026-12-07 10:00:00.002 ServerApp] Writing /home/jovyan/.local/share/jupyter/runtime/"
    "jpserver-7.json",
    f"[I 2026-12-07 10:00:00.003 ServerApp] http://10.0.0.2:8888/user/alice/lab?token={TOKEN}",
    "[C 2026-12-07 10:00:00.004 ServerApp] Running as root is not recommended.",
)
CUT = [
    "[I 2026-12-07 10:00:00.002 ServerApp] Writing jpserver-7.json",
    "[I 2026-12-07 10:00:00.003 ServerApp] /user/alice/lab",
    "[C 2026-12-07 10:00:00.004 ServerApp] Running as root is not recommended.",
]


def started(spawner: KubernetesSpawner, kubelet: Kubelet, tmp_path: Path) -> State:
    state = spawner.start(kube_request(tmp_path), no_progress)
    kubelet.schedule(state["pod"])
    kubelet.pulling(state["pod"])
    kubelet.run(state["pod"], ready=False)
    return state


def test_a_failed_pods_log_tail_comes_back_cut(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, kubelet: Kubelet, tmp_path: Path
) -> None:
    state = started(spawner, kubelet, tmp_path)
    kubelet.write_log(state["pod"], *FAILING_LOG)
    kubelet.fail(state["pod"], exit_code=1)

    tail = spawner.log_tail(state, 3)

    assert tail.splitlines() == CUT
    assert TOKEN not in tail and "/home/" not in tail and "10.0.0.2" not in tail
    # The local back-end's cut, line for line.
    assert tail == cut_log_tail("\n".join(FAILING_LOG), 3)
    # Only the tail was asked for, of the server's own container (not the library's clone).
    [asked] = kube_server.requests_to("GET", rf"/pods/{state['pod']}/log$")
    assert asked.query == {"container": "notebook", "tailLines": "3", "limitBytes": "3072"}


def test_a_gone_pod_has_no_log_tail(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, kubelet: Kubelet, tmp_path: Path
) -> None:
    state = started(spawner, kubelet, tmp_path)
    kubelet.write_log(state["pod"], "a line no one will read")
    spawner.stop(state)

    assert spawner.log_tail(state, 20) == ""
    assert kube_server.requests_to("GET", r"/log$")  # it asked, and heard 404
    # A state that names no pod asks nothing.
    assert spawner.log_tail({"backend": "kubernetes"}, 20) == ""


def test_a_container_that_never_started_has_an_empty_log_tail(
    spawner: KubernetesSpawner, kubelet: Kubelet, tmp_path: Path
) -> None:
    state = spawner.start(kube_request(tmp_path), no_progress)
    kubelet.schedule(state["pod"])
    kubelet.pulling(state["pod"])
    kubelet.image_pull_failed(state["pod"])

    assert spawner.log_tail(state, 20) == ""  # the API's 400 "waiting to start"


def test_an_api_failure_gives_an_empty_log_tail_and_no_exception(
    spawner: KubernetesSpawner,
    kube_server: FakeApiServer,
    kubelet: Kubelet,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = started(spawner, kubelet, tmp_path)
    kubelet.write_log(state["pod"], "the server's last words")
    kube_server.fail_next("GET", r"/pods/[^/]+/log$", 500, times=spawner.retries + 1)

    with caplog.at_level(logging.WARNING, logger="sessions_app.spawners.kube"):
        assert spawner.log_tail(state, 20) == ""

    # Retried as every call is, then given up with a warning.
    assert len(kube_server.requests_to("GET", r"/log$")) == spawner.retries + 1
    assert any("log of pod" in record.getMessage() for record in caplog.records)
    # The cluster answers again: so does the log.
    assert spawner.log_tail(state, 20) == "the server's last words"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_failed_start_on_the_cluster_keeps_its_log_tail_on_the_session(
    flow: User, api: APIClient, kube_server: FakeApiServer, kubelet: Kubelet, celery_worker: Any
) -> None:
    session_id = _launch(api)
    name = session_name(flow.username, session_id)
    wait_for(session_id, lambda s: kube_server.get("pods", NS, name) is not None, timeout=60)
    kubelet.schedule(name)
    kubelet.pulling(name)
    kubelet.run(name, ready=False)
    kubelet.write_log(name, *FAILING_LOG)

    kubelet.fail(name, exit_code=1)

    session = wait_for(session_id, in_state(Session.State.FAILED), timeout=60)
    assert session.reason == Session.Reason.BACKEND_ERROR
    assert "exited with code 1" in session.message
    # The whole tail the history keeps (fewer lines than it asks for), cut and without a secret.
    assert session.log_tail.splitlines() == [
        "[I 2026-12-07 10:00:00.001 ServerApp] starting",
        *CUT,
    ]
    assert kube_server.objects("pods", NS) == []
