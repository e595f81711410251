"""A start removes the routes its user's earlier sessions left behind, and only those: selected
by the route they serve and not this session's own id, never by a label two users could share
(against the fake API server, with the real client)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessions_app.spawners.kube import KubernetesSpawner
from sessions_app.spawners.kube_objects import ROUTE_LABEL, USER_LABEL, label_value
from tests.kube.apiserver import FakeApiServer
from tests.sessions_app.test_spawner_kube import NS, kube_request, make_spawner, no_progress


@pytest.fixture
def spawner(kube_server: FakeApiServer) -> KubernetesSpawner:
    return make_spawner(kube_server)


def _names(server: FakeApiServer) -> list[str]:
    return sorted(i["metadata"]["name"] for i in server.objects("ingresses", NS))


def test_another_users_route_stays_even_with_the_same_user_label(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, tmp_path: Path
) -> None:
    bob = spawner.start(kube_request(tmp_path, "bob"), no_progress)
    # As if bob's user label had come out the same as mallory's (the review's collision).
    spawner.networking.patch_namespaced_ingress(
        bob["pod"], NS, {"metadata": {"labels": {USER_LABEL: label_value("mallory")}}}
    )

    mallory = spawner.start(kube_request(tmp_path, "mallory"), no_progress)

    assert _names(kube_server) == sorted([bob["pod"], mallory["pod"]])


def test_a_route_labelled_like_ours_for_another_path_stays(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, tmp_path: Path
) -> None:
    bob = spawner.start(kube_request(tmp_path, "bob"), no_progress)
    spawner.networking.patch_namespaced_ingress(
        bob["pod"], NS, {"metadata": {"labels": {ROUTE_LABEL: "alice"}}}
    )

    alice = spawner.start(kube_request(tmp_path, "alice"), no_progress)

    assert _names(kube_server) == sorted([bob["pod"], alice["pod"]])


def test_the_clean_up_never_lists_by_the_user_label(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, tmp_path: Path
) -> None:
    state = spawner.start(kube_request(tmp_path, "alice"), no_progress)

    [listed] = kube_server.requests_to("GET", r"/ingresses$")
    selector = listed.query["labelSelector"]
    assert USER_LABEL not in selector
    assert f"jupyter-portal/session!={state['session_id']}" in selector
