"""The fake API server serves the containers' logs the kubelet keeps, as the real API does,
seen through the real client's ``read_namespaced_pod_log``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.kube.apiserver import FakeApiServer
from tests.kube.kubelet import Kubelet

NS = "jupyter-sessions"
IMAGE = "quay.io/jupyter/base:2025"

CoreApi = Any  # the client's models are all Optional; the tests reach through them unchecked


@pytest.fixture
def core(kube_server: FakeApiServer) -> CoreApi:
    return client.CoreV1Api(kube_server.api_client())


def make_pod(core: CoreApi, name: str, *containers: str) -> None:
    core.create_namespaced_pod(
        NS,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PodSpec(
                containers=[client.V1Container(name=c, image=IMAGE) for c in containers]
            ),
        ),
    )


def failure(call: Any) -> tuple[int, str]:
    with pytest.raises(ApiException) as caught:
        call()
    return caught.value.status, json.loads(caught.value.body or "{}")["message"]


def test_the_log_is_what_the_container_printed_cut_by_tail_lines_then_limit_bytes(
    core: CoreApi, kubelet: Kubelet
) -> None:
    make_pod(core, "p", "notebook")
    kubelet.schedule("p")
    kubelet.run("p")
    kubelet.write_log("p", "one", "two", "three")
    kubelet.write_log("p", "four")

    assert core.read_namespaced_pod_log("p", NS) == "one\ntwo\nthree\nfour\n"
    assert core.read_namespaced_pod_log("p", NS, container="notebook", tail_lines=2) == (
        "three\nfour\n"
    )
    # The tail first, then its first bytes, as the kubelet cuts them.
    assert core.read_namespaced_pod_log("p", NS, tail_lines=2, limit_bytes=8) == "three\nfo"
    assert core.read_namespaced_pod_log("p", NS, tail_lines=0) == ""
    # A failed container's log stays readable until its pod is deleted.
    kubelet.fail("p", exit_code=3)
    assert core.read_namespaced_pod_log("p", NS, tail_lines=1) == "four\n"


def test_an_unknown_pod_is_404_and_wrong_questions_are_refused(
    core: CoreApi, kubelet: Kubelet
) -> None:
    assert failure(lambda: core.read_namespaced_pod_log("nope", NS)) == (
        404,
        'pods "nope" not found',
    )
    make_pod(core, "two", "notebook", "sidecar")
    assert failure(lambda: core.read_namespaced_pod_log("two", NS)) == (
        400,
        "a container name must be specified for pod two, choose one of: [notebook sidecar]",
    )
    assert failure(lambda: core.read_namespaced_pod_log("two", NS, container="x")) == (
        400,
        "container x is not valid for pod two",
    )
    assert failure(lambda: core.read_namespaced_pod_log("two", NS, tail_lines=-1))[0] == 422
    assert failure(lambda: core.read_namespaced_pod_log("two", NS, limit_bytes=0))[0] == 422


def test_a_container_that_never_started_has_no_log_yet(core: CoreApi, kubelet: Kubelet) -> None:
    make_pod(core, "p", "notebook")
    # On no node: nothing to ask, an empty answer.
    assert core.read_namespaced_pod_log("p", NS) == ""
    kubelet.schedule("p")
    kubelet.pulling("p")
    assert failure(lambda: core.read_namespaced_pod_log("p", NS)) == (
        400,
        'container "notebook" in pod "p" is waiting to start: ContainerCreating',
    )


def test_a_pod_made_again_under_the_same_name_starts_with_an_empty_log(
    core: CoreApi, kubelet: Kubelet
) -> None:
    make_pod(core, "p", "notebook")
    kubelet.schedule("p")
    kubelet.run("p")
    kubelet.write_log("p", "the first pod's line")
    core.delete_namespaced_pod("p", NS)
    make_pod(core, "p", "notebook")
    kubelet.schedule("p")
    kubelet.run("p")

    assert core.read_namespaced_pod_log("p", NS) == ""
