"""The Kubernetes spawner, with the real ``kubernetes`` client over HTTP against a fake API server.

No cluster can run on these machines (no kubelet, kube-apiserver or container engine), so the
API server is ``tests/kube/apiserver.py`` (kmock plus what it lacks: server-set metadata,
selectors, watch timeouts, owner garbage collection) and the test plays the kubelet by patching
pod status through the same client (``tests/kube/kubelet.py``). What only a real cluster can
prove (images pulled, probes, the network policy enforced, ingress-nginx's forward-auth) is in
the tests marked ``cluster`` and the closing notes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
from kubernetes.client import ApiClient

from sessions_app.spawners.base import Route, ServerStatus, SpawnerError, SpawnRequest, State
from sessions_app.spawners.kube import KubernetesSpawner, TransientSpawnerError
from sessions_app.spawners.kube_objects import (
    NETWORK_POLICY_NAME,
    SESSION_LABEL,
    KubeConfig,
    home_claim_name,
    make_pvc,
    session_name,
)
from tests.kube.apiserver import FakeApiServer
from tests.kube.kubelet import Kubelet
from tests.sessions_app.spawner_contract import SpawnerContract, make_request

NS = "jupyter-sessions"
IMAGE = "quay.io/jupyter/minimal-notebook:python-3.11"
PUBLIC_URL = "https://jupyter.example.org"


def kube_request(tmp_path: Path, username: str = "alice", **overrides: object) -> SpawnRequest:
    fields: dict[str, object] = {
        "scratch_dir": tmp_path / "scratch" / "u~7",
        "home_dir": tmp_path / "home" / "u~7",
        "environment": "ecmwf-dss",
        "backend_settings": {"image": IMAGE, "priority_class": "session-small"},
    }
    fields.update(overrides)
    return make_request(tmp_path, username, **fields)


def make_spawner(server: FakeApiServer, **overrides: object) -> KubernetesSpawner:
    options: dict[str, object] = {
        "request_timeout": 2.0,
        "retries": 3,
        "backoff_seconds": 0.01,
        "unschedulable_seconds": 300,
        "stop_grace_seconds": 1.0,
    }
    options.update(overrides)
    config = KubeConfig(namespace=NS, public_url=PUBLIC_URL)
    return KubernetesSpawner(config, server.api_client(), **options)  # type: ignore[arg-type]


@pytest.fixture
def spawner(kube_server: FakeApiServer) -> KubernetesSpawner:
    return make_spawner(kube_server)


def no_progress(message: str) -> None:
    pass


class TestKubernetesSpawnerContract(SpawnerContract):
    """The contract every back-end passes, with the test's kubelet running every new pod."""

    start_timeout = 20.0

    @pytest.fixture
    def spawner(self, kube_server: FakeApiServer, kubelet: Kubelet) -> KubernetesSpawner:
        kubelet.auto(delay=0.02)
        return make_spawner(kube_server)

    def make_request(self, tmp_path: Path, username: str) -> SpawnRequest:
        return kube_request(tmp_path, username)

    def assert_url_answers(self, url: str) -> None:
        # No ingress controller runs here to follow the URL through. What it would follow is
        # checked instead: the URL, without a token, is on the portal's host, under a path
        # that exactly one Ingress routes (after the forward-auth, which hands it the
        # server's credential) to a Service whose selector picks a pod that runs with the
        # token the spawner's route gives.
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_URL
        assert parts.query == ""
        server = self._server
        ingresses = [
            ingress
            for ingress in server.objects("ingresses", NS)
            for rule in ingress["spec"]["rules"]
            for path in rule["http"]["paths"]
            if parts.path.startswith(path["path"]) and rule.get("host") == parts.hostname
        ]
        assert len(ingresses) == 1
        annotations = ingresses[0]["metadata"]["annotations"]
        assert annotations["nginx.ingress.kubernetes.io/auth-response-headers"] == (
            "Authorization, Cookie"
        )
        session_id = ingresses[0]["metadata"]["labels"][SESSION_LABEL]
        assert annotations["nginx.ingress.kubernetes.io/auth-url"].endswith(f"/{session_id}/")
        backend = ingresses[0]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        service = server.get("services", NS, backend["name"])
        assert service is not None
        selector = service["spec"]["selector"]
        pods = [
            pod
            for pod in server.objects("pods", NS)
            if selector.items() <= pod["metadata"]["labels"].items()
        ]
        assert len(pods) == 1
        env = {e["name"]: e.get("value") for e in pods[0]["spec"]["containers"][0]["env"]}
        [state] = [s.state for s in self._spawner.list_servers() if s.session_id == session_id]
        route = self._spawner.route(state)
        assert route == Route(upstream="", authorization=f"token {env['JUPYTER_TOKEN']}")

    @pytest.fixture(autouse=True)
    def _remember_server(self, kube_server: FakeApiServer) -> None:
        self._server = kube_server
        self._spawner = make_spawner(kube_server)


# --- Start: the objects, adoption and replacement ------------------------------------------------


def test_start_creates_the_sessions_objects_owned_by_its_pod(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, tmp_path: Path
) -> None:
    request = kube_request(tmp_path)
    messages: list[str] = []

    state = spawner.start(request, messages.append)

    name = session_name("alice", request.session_id)
    pod = kube_server.get("pods", NS, name)
    assert pod is not None
    assert pod["metadata"]["labels"][SESSION_LABEL] == request.session_id
    assert pod["spec"]["activeDeadlineSeconds"] == request.duration_seconds
    assert pod["spec"]["priorityClassName"] == "session-small"
    for kind in ("services", "ingresses"):
        owned = kube_server.get(kind, NS, name)
        assert owned is not None, kind
        [owner] = owned["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"]) == ("Pod", pod["metadata"]["uid"])
    assert kube_server.get("persistentvolumeclaims", NS, home_claim_name("u~7")) is not None
    assert kube_server.get("networkpolicies", NS, NETWORK_POLICY_NAME) is not None
    assert state["pod"] == name
    assert state["url"] == f"{PUBLIC_URL}/user/alice/lab"
    assert spawner.route(state) == Route(upstream="", authorization=f"token {state['token']}")
    assert messages == ["Preparing your private storage.", "Asking the cluster for your server."]


def test_the_home_volume_is_kept_across_sessions(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, tmp_path: Path
) -> None:
    first = spawner.start(kube_request(tmp_path), no_progress)
    claim = kube_server.get("persistentvolumeclaims", NS, home_claim_name("u~7"))
    spawner.stop(first)

    spawner.start(kube_request(tmp_path), no_progress)

    [kept] = kube_server.objects("persistentvolumeclaims", NS)
    assert claim is not None
    assert kept["metadata"]["uid"] == claim["metadata"]["uid"]


def test_a_retried_start_adopts_the_sessions_own_pod(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, tmp_path: Path
) -> None:
    request = kube_request(tmp_path)
    first = spawner.start(request, no_progress)

    second = spawner.start(request, no_progress)

    assert second["token"] == first["token"]  # the running pod's token, not a new one
    assert len(kube_server.objects("pods", NS)) == 1
    assert len(kube_server.objects("ingresses", NS)) == 1


def test_a_pod_of_another_session_under_the_name_is_replaced(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, tmp_path: Path
) -> None:
    request = kube_request(tmp_path)
    name = session_name("alice", request.session_id)
    stranger = spawner.core.create_namespaced_pod(
        NS,
        cast(
            Any,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": {SESSION_LABEL: "someone-else"}},
                "spec": {"containers": [{"name": "x", "image": "busybox"}]},
            },
        ),
    )

    spawner.start(request, no_progress)

    pod = kube_server.get("pods", NS, name)
    assert pod is not None
    assert stranger.metadata is not None
    assert pod["metadata"]["uid"] != stranger.metadata.uid
    assert pod["metadata"]["labels"][SESSION_LABEL] == request.session_id


def test_the_network_policy_follows_the_settings(
    kube_server: FakeApiServer, tmp_path: Path
) -> None:
    make_spawner(kube_server).start(kube_request(tmp_path), no_progress)
    wider = KubernetesSpawner(
        KubeConfig(namespace=NS, egress_allow_cidrs=("192.0.2.0/24",)),
        kube_server.api_client(),
        retries=0,
    )

    wider.start(kube_request(tmp_path, "bob"), no_progress)

    policy = kube_server.get("networkpolicies", NS, NETWORK_POLICY_NAME)
    assert policy is not None
    cidrs = [
        peer["ipBlock"]["cidr"]
        for rule in policy["spec"]["egress"]
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    ]
    assert "192.0.2.0/24" in cidrs


def test_an_environment_without_an_image_is_refused_before_any_call(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, tmp_path: Path
) -> None:
    before = len(kube_server.requests)

    with pytest.raises(SpawnerError, match="no container image"):
        spawner.start(kube_request(tmp_path, backend_settings={}), no_progress)

    assert len(kube_server.requests) == before


# --- Errors: retries, timeouts, permanent refusals --------------------------------------------


def test_server_errors_are_retried_with_backoff(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, tmp_path: Path
) -> None:
    kube_server.fail_next("POST", r"/namespaces/jupyter-sessions/pods$", 500, times=2)
    kube_server.fail_next("POST", r"/services$", 503)

    state = spawner.start(kube_request(tmp_path), no_progress)

    assert len(kube_server.requests_to("POST", r"/pods$")) == 3
    assert len(kube_server.requests_to("POST", r"/services$")) == 2
    assert kube_server.get("pods", NS, state["pod"]) is not None


def test_a_timeout_is_retried(kube_server: FakeApiServer, tmp_path: Path) -> None:
    spawner = make_spawner(kube_server, request_timeout=0.3)
    state = spawner.start(kube_request(tmp_path), no_progress)
    kube_server.delay_next("GET", rf"/pods/{state['pod']}$", 2.0)

    result = spawner.poll(state)

    assert result.status == ServerStatus.STARTING
    assert len(kube_server.requests_to("GET", rf"/pods/{state['pod']}$")) == 2


def test_errors_that_persist_fail_the_start_and_leave_nothing_behind(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, tmp_path: Path
) -> None:
    kube_server.fail_next("POST", r"/ingresses$", 500, times=10)

    with pytest.raises(TransientSpawnerError, match="did not manage to create the session's route"):
        spawner.start(kube_request(tmp_path), no_progress)

    assert kube_server.objects("pods", NS) == []
    assert kube_server.objects("services", NS) == []
    assert kube_server.objects("ingresses", NS) == []
    # The home is the user's storage, not this start's: it stays.
    assert len(kube_server.objects("persistentvolumeclaims", NS)) == 1


def test_a_refusal_fails_at_once_with_the_clusters_reason(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, tmp_path: Path
) -> None:
    kube_server.fail_next(
        "POST",
        r"/pods$",
        403,
        body={
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "Forbidden",
            "code": 403,
            "message": 'pods "x" is forbidden: exceeded quota: sessions, requested: cpu=2',
        },
    )

    with pytest.raises(SpawnerError, match="exceeded quota") as caught:
        spawner.start(kube_request(tmp_path), no_progress)

    assert not isinstance(caught.value, TransientSpawnerError)
    assert len(kube_server.requests_to("POST", r"/pods$")) == 1
    assert kube_server.objects("pods", NS) == []


def test_an_unreachable_cluster_is_a_transient_error(tmp_path: Path) -> None:
    server = FakeApiServer().start()
    spawner = make_spawner(server, retries=1)
    server.stop()

    with pytest.raises(TransientSpawnerError, match="did not answer"):
        spawner.start(kube_request(tmp_path), no_progress)


def test_poll_does_not_call_a_session_gone_when_the_api_fails(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, tmp_path: Path
) -> None:
    state = spawner.start(kube_request(tmp_path), no_progress)
    kube_server.fail_next("GET", rf"/pods/{state['pod']}$", 500, times=10)

    assert spawner.poll(state).status == ServerStatus.STARTING


# --- Poll: progress, readiness, failures ------------------------------------------------------


@pytest.fixture
def started(spawner: KubernetesSpawner, tmp_path: Path) -> Iterator[State]:
    state = spawner.start(kube_request(tmp_path), no_progress)
    yield state
    spawner.stop(state)


def test_pod_events_become_progress_and_readiness_running(
    spawner: KubernetesSpawner, kubelet: Kubelet, started: State
) -> None:
    name = started["pod"]
    seen = [spawner.poll(started).message]
    kubelet.schedule(name)
    seen.append(spawner.poll(started).message)
    kubelet.pulling(name)
    seen.append(spawner.poll(started).message)
    kubelet.run(name, ready=False)
    not_ready = spawner.poll(started)
    kubelet.run(name)

    running = spawner.poll(started)

    assert seen == [
        "Waiting for the cluster to place your server.",
        "A node was found for your server.",
        "Downloading the environment's image (this can take a few minutes).",
    ]
    assert not_ready.status == ServerStatus.STARTING
    assert not_ready.message == "Your Jupyter server is starting up."
    assert running.status == ServerStatus.RUNNING
    assert running.url == started["url"]
    assert running.started_at is not None


def test_wait_returns_when_the_pod_changes_not_at_its_timeout(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, kubelet: Kubelet, started: State
) -> None:
    spawner.poll(started)  # remembers the version a watch starts from
    timer = threading.Timer(0.3, kubelet.schedule, args=[started["pod"]])
    timer.start()
    began = time.monotonic()

    spawner.wait(started, timeout=30)

    waited = time.monotonic() - began
    timer.join()
    [watch] = kube_server.requests_to("GET", r"/pods$")[-1:]
    assert watch.query.get("watch") == "true"
    assert watch.query.get("resourceVersion")
    # A watch, not a sleep: back long before the 30 s it was allowed (generous for a busy CI).
    assert waited < 15


def test_an_old_version_does_not_turn_waiting_into_a_tight_loop(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, started: State
) -> None:
    # The pod has not changed for long (a slow pull): its own version is older than the API
    # server keeps watches for (410 Gone). The wait must still wait.
    spawner.poll(started)
    kube_server.compact()
    rounds = 0
    began = time.monotonic()
    while time.monotonic() - began < 2.0:
        assert spawner.poll(started).status == ServerStatus.STARTING
        spawner.wait(started, timeout=0.05)  # what the spawn loop passes (SPAWN_POLL_SECONDS)
        rounds += 1

    assert rounds <= 4  # a watch of about a second each, not 40 rounds of 50 ms


def test_a_home_still_being_deleted_is_not_adopted(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, tmp_path: Path
) -> None:
    # Retention removed the user's home a moment ago and a finalizer (pvc-protection) holds it
    # while its last pod ends. The fake deletes at once, so the API's two answers are played:
    # "exists" on create, then the claim with its deletionTimestamp on read.
    request = kube_request(tmp_path)
    claim = ApiClient().sanitize_for_serialization(make_pvc(KubeConfig(namespace=NS), request))
    claim["metadata"].update(
        deletionTimestamp="2026-11-26T00:00:00Z",
        finalizers=["kubernetes.io/pvc-protection"],
        uid="9f1c",
        resourceVersion="7",
    )
    kube_server.fail_next("POST", r"/persistentvolumeclaims$", 409)
    kube_server.fail_next(
        "GET", rf"/persistentvolumeclaims/{claim['metadata']['name']}$", 200, body=claim
    )

    with pytest.raises(TransientSpawnerError, match="still being removed"):
        spawner.start(request, no_progress)

    assert kube_server.objects("pods", NS) == []


def test_a_stale_route_of_the_users_earlier_session_is_removed(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, tmp_path: Path
) -> None:
    earlier = spawner.start(kube_request(tmp_path), no_progress)
    # Its clean-up failed half-way: the pod went, the route stayed.
    spawner.core.delete_namespaced_pod(earlier["pod"], NS, propagation_policy="Orphan")
    assert kube_server.get("ingresses", NS, earlier["pod"]) is not None

    later = spawner.start(kube_request(tmp_path), no_progress)

    assert [i["metadata"]["name"] for i in kube_server.objects("ingresses", NS)] == [later["pod"]]


@pytest.mark.parametrize(
    ("play", "message"),
    [
        (lambda k, n: k.image_pull_failed(n), "could not be downloaded (ErrImagePull"),
        (lambda k, n: k.image_pull_failed(n, back_off=True), "(ImagePullBackOff"),
        (lambda k, n: k.fail(n, exit_code=3), "exited with code 3"),
        (lambda k, n: k.succeed(n), "The server exited."),
    ],
    ids=["image-pull", "image-back-off", "crash", "exit"],
)
def test_permanent_failures_are_gone_with_a_readable_reason(
    spawner: KubernetesSpawner, kubelet: Kubelet, started: State, play: object, message: str
) -> None:
    name = started["pod"]
    kubelet.schedule(name)
    kubelet.pulling(name)
    play(kubelet, name)  # type: ignore[operator]

    result = spawner.poll(started)

    assert result.status == ServerStatus.GONE
    assert message in result.message
    assert not result.deadline_exceeded


def test_the_deadline_ends_it_as_its_time_limit(
    spawner: KubernetesSpawner, kubelet: Kubelet, started: State
) -> None:
    kubelet.schedule(started["pod"])
    kubelet.run(started["pod"])
    kubelet.deadline_exceeded(started["pod"])

    result = spawner.poll(started)

    assert result.status == ServerStatus.GONE
    assert result.deadline_exceeded
    assert "time limit" in result.message


def test_unschedulable_waits_then_fails_with_the_schedulers_reason(
    kube_server: FakeApiServer, kubelet: Kubelet, tmp_path: Path
) -> None:
    patient = make_spawner(kube_server)
    impatient = make_spawner(kube_server, unschedulable_seconds=1)
    state = patient.start(kube_request(tmp_path), no_progress)
    kubelet.unschedulable(state["pod"])

    waiting = patient.poll(state)
    time.sleep(2.1)  # creationTimestamp has whole seconds
    given_up = impatient.poll(state)

    assert waiting.status == ServerStatus.STARTING
    assert "room" in waiting.message
    assert given_up.status == ServerStatus.GONE
    assert "Insufficient memory" in given_up.message


# --- Stop, list, homes ------------------------------------------------------------------------


def test_stop_removes_route_service_and_pod_and_a_second_stop_is_done(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, started: State
) -> None:
    spawner.stop(started)
    spawner.stop(started)

    assert kube_server.objects("pods", NS) == []
    assert kube_server.objects("services", NS) == []
    assert kube_server.objects("ingresses", NS) == []
    assert spawner.poll(started).status == ServerStatus.GONE
    assert len(kube_server.requests_to("DELETE", rf"/pods/{started['pod']}$")) == 2


def test_list_servers_asks_for_the_session_labels_only(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, started: State
) -> None:
    spawner.core.create_namespaced_pod(
        NS,
        cast(
            Any,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "not-ours", "labels": {"app": "other"}},
                "spec": {"containers": [{"name": "x", "image": "busybox"}]},
            },
        ),
    )

    servers = list(spawner.list_servers())

    assert [s.session_id for s in servers] == [started["session_id"]]
    assert servers[0].state["token"] == started["token"]
    [listing] = kube_server.requests_to("GET", r"/pods$")[-1:]
    assert "app.kubernetes.io/name=jupyter-session" in listing.query["labelSelector"]


def test_remove_home_deletes_the_volume_and_a_missing_one_is_done(
    spawner: KubernetesSpawner, kube_server: FakeApiServer, started: State
) -> None:
    spawner.stop(started)

    spawner.remove_home("u~7")
    spawner.remove_home("u~7")

    assert kube_server.objects("persistentvolumeclaims", NS) == []


@pytest.mark.parametrize(
    "state", [{}, {"pod": "Not A Name"}, {"pod": 5}, {"pod": "jupyter-x-" + uuid.uuid4().hex}]
)
def test_bad_or_stale_state_is_gone(spawner: KubernetesSpawner, state: State) -> None:
    assert spawner.poll(state).status == ServerStatus.GONE
    spawner.stop(state)


def test_a_client_from_a_kubeconfig_leaves_retrying_to_the_spawner(tmp_path: Path) -> None:
    # Given a spawner that reads its cluster from a kubeconfig file
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    spawner = KubernetesSpawner(KubeConfig(namespace=NS), config_file=str(kubeconfig))

    # When it makes its client
    api = spawner.api_client

    # then urllib3 does not retry under the spawner's own loop (each of its attempts would
    # otherwise take up to four request timeouts)
    assert api.configuration.host == "http://127.0.0.1:1"
    retries = api.rest_client.pool_manager.connection_pool_kw["retries"]
    assert retries.total is False
