"""The fake API server and kubelet behave as documented, seen through the real client."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tests.kube.apiserver import FakeApiServer
from tests.kube.kubelet import DEADLINE_MESSAGE, DEFAULT_UNSCHEDULABLE, Kubelet

NS = "jupyter-sessions"
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

# The client's models make every field Optional; the tests reach through them unchecked.
CoreApi = Any
NetworkingApi = Any


@pytest.fixture
def core(kube_server: FakeApiServer) -> CoreApi:
    return client.CoreV1Api(kube_server.api_client())


@pytest.fixture
def networking(kube_server: FakeApiServer) -> NetworkingApi:
    return client.NetworkingV1Api(kube_server.api_client())


def make_pod(name: str, labels: dict[str, str] | None = None, **spec: Any) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="notebook", image="quay.io/jupyter/base:2025")],
            **spec,
        ),
    )


def make_config_map(name: str, labels: dict[str, str] | None = None) -> client.V1ConfigMap:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=labels), data={"k": "v"}
    )


def body(exc: ApiException) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(exc.body or "null")
    return parsed


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.02)


def collect_watch(core: CoreApi, **kwargs: Any) -> tuple[list[tuple[str, str]], threading.Thread]:
    """Watch pods in a thread; the list fills with (type, name) as events arrive.

    The stream ends at its timeout or when the test's server stops.
    """
    seen: list[tuple[str, str]] = []
    started = threading.Event()

    def run() -> None:
        stream = watch.Watch().stream(core.list_namespaced_pod, NS, **kwargs)
        started.set()
        for event in stream:
            seen.append((event["type"], event["object"].metadata.name))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(2)
    return seen, thread


# --- the server and how to reach it ---


def test_starts_quickly_on_an_ephemeral_port_and_stops() -> None:
    began = time.monotonic()
    with FakeApiServer() as server:
        started = time.monotonic() - began
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        assert client.CoreV1Api(server.api_client()).list_namespaced_pod(NS).items == []
    assert started < 0.5
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        urllib3.PoolManager().request("GET", f"{server.url}/version", retries=0)


def test_kubeconfig_loads_with_the_real_loader(
    kube_server: FakeApiServer, kubeconfig: Path
) -> None:
    api_client = config.new_client_from_config(config_file=str(kubeconfig))

    client.CoreV1Api(api_client).create_namespaced_config_map(NS, make_config_map("c"))

    assert api_client.configuration.host == kube_server.url
    _, current = config.list_kube_config_contexts(config_file=str(kubeconfig))
    assert current["context"]["namespace"] == NS
    assert kube_server.get("configmaps", NS, "c") is not None
    api_client.close()


def test_two_servers_are_independent() -> None:
    with FakeApiServer() as one, FakeApiServer() as two:
        client.CoreV1Api(one.api_client()).create_namespaced_config_map(NS, make_config_map("c"))
        assert one.port != two.port
        assert [c["metadata"]["name"] for c in one.objects("configmaps")] == ["c"]
        assert two.objects("configmaps") == []


def test_discovery_lists_the_served_resources(kube_server: FakeApiServer) -> None:
    api_client = kube_server.api_client()

    core = client.CoreV1Api(api_client).get_api_resources()
    networking = client.NetworkingV1Api(api_client).get_api_resources()

    assert {"pods", "pods/status", "pods/binding", "events", "secrets"} <= {
        r.name for r in core.resources
    }
    assert {"ingresses", "networkpolicies"} <= {r.name for r in networking.resources}


# --- server-set metadata ---


def test_create_sets_the_server_metadata(kube_server: FakeApiServer, core: CoreApi) -> None:
    first = core.create_namespaced_pod(NS, make_pod("a"))
    second = core.create_namespaced_config_map(NS, make_config_map("b"))

    stored = kube_server.get("pods", NS, "a")
    assert stored is not None
    meta = stored["metadata"]
    assert meta["namespace"] == NS
    assert meta["uid"] == first.metadata.uid
    assert meta["generation"] == 1
    assert RFC3339.fullmatch(meta["creationTimestamp"])
    assert int(second.metadata.resource_version) > int(meta["resourceVersion"])
    assert stored["status"] == {"phase": "Pending"}
    assert stored["kind"] == "Pod" and stored["apiVersion"] == "v1"
    assert stored["spec"]["restartPolicy"] == "Always"
    assert first.metadata.creation_timestamp.tzinfo is not None


def test_generate_name_and_service_cluster_ip(core: CoreApi) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(generate_name="jupyter-"),
        spec=make_pod("x").spec,
    )
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="jupyter"),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]),
    )

    created = core.create_namespaced_pod(NS, pod)
    exposed = core.create_namespaced_service(NS, service)

    assert re.fullmatch(r"jupyter-[a-z0-9]{5}", created.metadata.name)
    assert exposed.spec.cluster_ip and exposed.spec.type == "ClusterIP"
    assert exposed.spec.ports[0].target_port == 80


def test_patch_and_replace_bump_the_resource_version_and_a_no_op_does_not(
    kube_server: FakeApiServer, core: CoreApi
) -> None:
    created = core.create_namespaced_config_map(NS, make_config_map("c"))

    patched = core.patch_namespaced_config_map("c", NS, {"data": {"k": "w"}})
    unchanged = core.patch_namespaced_config_map("c", NS, {"data": {"k": "w"}})
    patched.data = {"k": "x"}
    replaced = core.replace_namespaced_config_map("c", NS, patched)

    versions = [int(o.metadata.resource_version) for o in (created, patched, replaced)]
    assert versions == sorted(set(versions))
    assert unchanged.metadata.resource_version == patched.metadata.resource_version
    assert replaced.data == {"k": "x"}
    assert kube_server.resource_version == replaced.metadata.resource_version


def test_a_replace_keeps_what_the_server_defaulted_and_allocated(core: CoreApi) -> None:
    core.create_namespaced_pod(NS, make_pod("a"))
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="a"),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]),
    )
    ip = core.create_namespaced_service(NS, service).spec.cluster_ip

    relabelled = make_pod("a", {"x": "y"})
    pod = core.replace_namespaced_pod("a", NS, relabelled)
    replaced = core.replace_namespaced_service("a", NS, service)

    assert pod.metadata.labels == {"x": "y"} and pod.spec.restart_policy == "Always"
    assert replaced.spec.cluster_ip == ip


def test_a_stale_resource_version_conflicts(core: CoreApi) -> None:
    stale = core.create_namespaced_config_map(NS, make_config_map("c"))
    core.patch_namespaced_config_map("c", NS, {"data": {"k": "w"}})

    with pytest.raises(ApiException) as caught:
        core.replace_namespaced_config_map("c", NS, stale)

    assert caught.value.status == 409
    assert body(caught.value)["reason"] == "Conflict"


def test_generation_follows_the_spec_not_the_metadata(networking: NetworkingApi) -> None:
    policy = client.V1NetworkPolicy(
        metadata=client.V1ObjectMeta(name="p"),
        spec=client.V1NetworkPolicySpec(
            pod_selector=client.V1LabelSelector(), policy_types=["Ingress"]
        ),
    )
    networking.create_namespaced_network_policy(NS, policy)

    labelled = networking.patch_namespaced_network_policy(
        "p", NS, {"metadata": {"labels": {"a": "b"}}}
    )
    respecced = networking.patch_namespaced_network_policy(
        "p", NS, {"spec": {"policyTypes": ["Ingress", "Egress"]}}
    )

    assert labelled.metadata.generation == 1
    assert respecced.metadata.generation == 2
    assert respecced.spec.policy_types == ["Ingress", "Egress"]


def test_status_is_written_only_through_the_status_subresource(
    kube_server: FakeApiServer, core: CoreApi
) -> None:
    core.create_namespaced_pod(NS, make_pod("a"))

    core.patch_namespaced_pod(
        "a", NS, {"status": {"phase": "Running"}, "metadata": {"labels": {"x": "y"}}}
    )
    after_main = core.read_namespaced_pod_status("a", NS)
    core.patch_namespaced_pod_status(
        "a", NS, {"status": {"phase": "Running"}, "metadata": {"labels": {"x": "z"}}}
    )

    assert after_main.status.phase == "Pending"
    assert after_main.metadata.labels == {"x": "y"}
    stored = kube_server.get("pods", NS, "a")
    assert stored is not None
    assert stored["status"]["phase"] == "Running"
    assert stored["metadata"]["labels"] == {"x": "y"}


def test_strategic_merge_merges_conditions_by_type(core: CoreApi) -> None:
    core.create_namespaced_pod(NS, make_pod("a"))
    core.patch_namespaced_pod_status(
        "a", NS, {"status": {"conditions": [{"type": "A", "status": "True"}]}}
    )

    pod = core.patch_namespaced_pod_status(
        "a", NS, {"status": {"conditions": [{"type": "B", "status": "False"}]}}
    )

    assert [(c.type, c.status) for c in pod.status.conditions] == [("A", "True"), ("B", "False")]


def test_json_patch(core: CoreApi) -> None:
    core.create_namespaced_config_map(NS, make_config_map("c"))

    patched = core.patch_namespaced_config_map(
        "c",
        NS,
        [{"op": "add", "path": "/data/new", "value": "1"}, {"op": "remove", "path": "/data/k"}],
    )

    assert patched.data == {"new": "1"}


def test_a_pod_spec_cannot_change_beyond_what_the_api_allows(core: CoreApi) -> None:
    core.create_namespaced_pod(NS, make_pod("a"))

    core.patch_namespaced_pod("a", NS, {"spec": {"activeDeadlineSeconds": 60}})
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_pod("a", NS, {"spec": {"hostname": "other"}})

    assert caught.value.status == 422
    assert body(caught.value)["reason"] == "Invalid"
    assert "pod updates may not change fields" in body(caught.value)["message"]


def test_invalid_names_and_labels_are_refused(core: CoreApi) -> None:
    with pytest.raises(ApiException) as bad_name:
        core.create_namespaced_pod(NS, make_pod("Not_A_Name"))
    with pytest.raises(ApiException) as bad_label:
        core.create_namespaced_config_map(NS, make_config_map("c", {"user": "a@b"}))
    with pytest.raises(ApiException) as bad_service:
        core.create_namespaced_service(
            NS, client.V1Service(metadata=client.V1ObjectMeta(name="1-starts-with-digit"))
        )

    for caught in (bad_name, bad_label, bad_service):
        assert caught.value.status == 422
        assert body(caught.value)["reason"] == "Invalid"


# --- errors ---


def test_conflict_and_not_found_answer_status_objects(core: CoreApi) -> None:
    core.create_namespaced_pod(NS, make_pod("a"))

    with pytest.raises(ApiException) as duplicate:
        core.create_namespaced_pod(NS, make_pod("a"))
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod("nope", NS)
    with pytest.raises(ApiException) as missing_delete:
        core.delete_namespaced_pod("nope", NS)

    assert duplicate.value.status == 409
    assert body(duplicate.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "a" already exists',
        "reason": "AlreadyExists",
        "details": {"name": "a", "kind": "pods"},
        "code": 409,
    }
    for caught in (missing, missing_delete):
        assert caught.value.status == 404
        assert body(caught.value)["reason"] == "NotFound"
        assert body(caught.value)["message"] == 'pods "nope" not found'


def test_unknown_resources_are_not_found(kube_server: FakeApiServer) -> None:
    apps = client.AppsV1Api(kube_server.api_client())

    with pytest.raises(ApiException) as caught:
        apps.list_namespaced_deployment(NS)

    assert caught.value.status == 404
    assert body(caught.value)["reason"] == "NotFound"


# --- deletion ---


def test_delete_answers_the_object_or_a_status_as_the_api_does(
    kube_server: FakeApiServer, core: CoreApi
) -> None:
    core.create_namespaced_pod(NS, make_pod("a"))
    core.create_namespaced_config_map(NS, make_config_map("c"))

    pod = core.delete_namespaced_pod("a", NS, grace_period_seconds=0)
    status = core.delete_namespaced_config_map("c", NS)

    assert pod.metadata.name == "a" and pod.metadata.deletion_timestamp is not None
    assert status["kind"] == "Status" and status["status"] == "Success"
    assert status["details"]["name"] == "c"
    assert kube_server.get("pods", NS, "a") is None


def test_delete_collection_takes_what_the_selector_selects(
    kube_server: FakeApiServer, core: CoreApi
) -> None:
    core.create_namespaced_config_map(NS, make_config_map("a", {"app": "jupyter"}))
    core.create_namespaced_config_map(NS, make_config_map("b", {"app": "jupyter"}))
    core.create_namespaced_config_map(NS, make_config_map("c", {"app": "other"}))

    core.delete_collection_namespaced_config_map(NS, label_selector="app=jupyter")

    assert [c["metadata"]["name"] for c in kube_server.objects("configmaps")] == ["c"]


def test_owned_objects_go_with_their_owner(kube_server: FakeApiServer, core: CoreApi) -> None:
    pod = core.create_namespaced_pod(NS, make_pod("a"))
    owner = client.V1OwnerReference(api_version="v1", kind="Pod", name="a", uid=pod.metadata.uid)
    core.create_namespaced_service(
        NS, client.V1Service(metadata=client.V1ObjectMeta(name="a", owner_references=[owner]))
    )
    core.create_namespaced_config_map(NS, make_config_map("kept"))

    core.delete_namespaced_pod("a", NS)

    assert kube_server.objects("services") == []
    assert [c["metadata"]["name"] for c in kube_server.objects("configmaps")] == ["kept"]


def test_orphaning_deletion_keeps_the_owned(kube_server: FakeApiServer, core: CoreApi) -> None:
    owner = core.create_namespaced_config_map(NS, make_config_map("owner"))
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    owned = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="owned", owner_references=[reference])
    )
    core.create_namespaced_config_map(NS, owned)

    core.delete_namespaced_config_map("owner", NS, propagation_policy="Orphan")

    assert [c["metadata"]["name"] for c in kube_server.objects("configmaps")] == ["owned"]


# --- selectors ---


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=jupyter", ["a", "b"]),
        ("app==jupyter,tier=gpu", ["b"]),
        ("app!=jupyter", ["c", "d"]),
        ("tier in (gpu,cpu)", ["a", "b", "c"]),
        ("tier notin (gpu)", ["a", "c", "d"]),
        ("tier", ["a", "b", "c"]),
        ("!tier", ["d"]),
        ("app=jupyter, tier in (cpu, gpu), !missing", ["a", "b"]),
        ("", ["a", "b", "c", "d"]),
    ],
)
def test_label_selectors(core: CoreApi, selector: str, expected: list[str]) -> None:
    for name, labels in {
        "a": {"app": "jupyter", "tier": "cpu"},
        "b": {"app": "jupyter", "tier": "gpu"},
        "c": {"app": "other", "tier": "cpu"},
        "d": {},
    }.items():
        core.create_namespaced_config_map(NS, make_config_map(name, labels or None))

    found = core.list_namespaced_config_map(NS, label_selector=selector)

    assert [c.metadata.name for c in found.items] == expected


def test_a_bad_label_selector_is_a_bad_request(core: CoreApi) -> None:
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_pod(NS, label_selector="a in (b")

    assert caught.value.status == 400
    assert body(caught.value)["reason"] == "BadRequest"


def test_field_selectors(core: CoreApi) -> None:
    core.create_namespaced_pod(NS, make_pod("a"))
    core.create_namespaced_pod(NS, make_pod("b"))
    core.create_namespaced_pod("elsewhere", make_pod("a"))
    core.patch_namespaced_pod_status("b", NS, {"status": {"phase": "Running"}})

    def names(selector: str, namespace: str | None = NS) -> list[str]:
        if namespace is None:
            pods = core.list_pod_for_all_namespaces(field_selector=selector).items
            return sorted(f"{p.metadata.namespace}/{p.metadata.name}" for p in pods)
        return [
            p.metadata.name
            for p in core.list_namespaced_pod(namespace, field_selector=selector).items
        ]

    assert names("metadata.name=a") == ["a"]
    assert names("status.phase=Running") == ["b"]
    assert names("status.phase!=Running,metadata.name!=b") == ["a"]
    assert names("metadata.namespace=elsewhere", None) == ["elsewhere/a"]
    assert names("metadata.name==a", None) == ["elsewhere/a", f"{NS}/a"]
    with pytest.raises(ApiException) as caught:
        names("spec.hostname=x")
    assert caught.value.status == 400
    assert body(caught.value)["message"] == "field label not supported: spec.hostname"


def test_event_field_selectors(kubelet: Kubelet, core: CoreApi) -> None:
    a = core.create_namespaced_pod(NS, make_pod("a"))
    core.create_namespaced_pod(NS, make_pod("b"))
    kubelet.schedule("a")
    kubelet.schedule("b")

    by_name = core.list_namespaced_event(NS, field_selector="involvedObject.name=a").items
    by_uid = core.list_namespaced_event(
        NS, field_selector=f"involvedObject.uid={a.metadata.uid},involvedObject.kind=Pod"
    ).items
    by_other_kind = core.list_namespaced_event(NS, field_selector="involvedObject.kind=Node").items

    assert [(e.involved_object.name, e.reason) for e in by_name] == [("a", "Scheduled")]
    assert [e.metadata.name for e in by_uid] == [e.metadata.name for e in by_name]
    assert by_other_kind == []


# --- watches ---


def test_a_watch_ends_after_its_timeout(core: CoreApi) -> None:
    began = time.monotonic()

    events = list(watch.Watch().stream(core.list_namespaced_pod, NS, timeout_seconds=1))

    assert events == []
    assert 0.9 < time.monotonic() - began < 2.5


def test_a_watch_sees_added_modified_and_deleted_live(core: CoreApi) -> None:
    version = core.list_namespaced_pod(NS).metadata.resource_version
    seen, thread = collect_watch(core, resource_version=version, timeout_seconds=2)

    core.create_namespaced_pod(NS, make_pod("a"))
    core.patch_namespaced_pod("a", NS, {"metadata": {"labels": {"x": "y"}}})
    core.delete_namespaced_pod("a", NS)
    eventually(lambda: len(seen) == 3)

    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


def test_a_watch_from_a_resource_version_replays_only_what_came_after(
    core: CoreApi,
) -> None:
    core.create_namespaced_pod(NS, make_pod("before"))
    version = core.list_namespaced_pod(NS).metadata.resource_version
    core.create_namespaced_pod(NS, make_pod("a"))
    core.delete_namespaced_pod("a", NS)

    stream = watch.Watch().stream(
        core.list_namespaced_pod, NS, resource_version=version, timeout_seconds=1
    )
    replayed = [(e["type"], e["object"].metadata.name) for e in stream]

    assert replayed == [("ADDED", "a"), ("DELETED", "a")]


def test_a_watch_without_a_resource_version_starts_with_what_exists(core: CoreApi) -> None:
    core.create_namespaced_pod(NS, make_pod("a"))
    core.create_namespaced_pod("elsewhere", make_pod("b"))

    stream = watch.Watch().stream(core.list_namespaced_pod, NS, timeout_seconds=1)

    assert [(e["type"], e["object"].metadata.name) for e in stream] == [("ADDED", "a")]


def test_a_selecting_watch_sees_objects_enter_and_leave(core: CoreApi) -> None:
    core.create_namespaced_pod(NS, make_pod("a"))
    core.create_namespaced_pod(NS, make_pod("b"))
    version = core.list_namespaced_pod(NS).metadata.resource_version
    seen, thread = collect_watch(
        core, resource_version=version, timeout_seconds=2, field_selector="metadata.name=a"
    )

    core.patch_namespaced_pod("b", NS, {"metadata": {"labels": {"x": "1"}}})
    core.patch_namespaced_pod_status("a", NS, {"status": {"phase": "Running"}})
    eventually(lambda: len(seen) == 1)
    labelled, labelled_thread = collect_watch(
        core, resource_version=version, timeout_seconds=1, label_selector="x=1"
    )
    core.patch_namespaced_pod("b", NS, {"metadata": {"labels": {"x": "2"}}})
    eventually(lambda: len(labelled) == 2)

    assert seen == [("MODIFIED", "a")]
    assert labelled == [("ADDED", "b"), ("DELETED", "b")]


def test_a_watch_from_a_compacted_version_is_expired(
    kube_server: FakeApiServer, core: CoreApi
) -> None:
    first = core.create_namespaced_pod(NS, make_pod("a"))
    core.create_namespaced_pod(NS, make_pod("b"))
    kube_server.compact()

    with pytest.raises(ApiException) as caught:
        list(
            watch.Watch().stream(
                core.list_namespaced_pod,
                NS,
                resource_version=first.metadata.resource_version,
                timeout_seconds=1,
            )
        )

    assert caught.value.status == 410


def test_stopping_the_server_ends_open_watches(core: CoreApi, kube_server: FakeApiServer) -> None:
    _, thread = collect_watch(core)
    eventually(lambda: bool(kube_server.requests_to("GET", "/pods$")))

    kube_server.stop()

    thread.join(3)
    assert not thread.is_alive()


# --- the other resources ---


def test_networking_resources(kube_server: FakeApiServer, networking: NetworkingApi) -> None:
    ingress = client.V1Ingress(
        metadata=client.V1ObjectMeta(name="i", labels={"app": "jupyter"}),
        spec=client.V1IngressSpec(
            rules=[client.V1IngressRule(host="example.org")],
        ),
    )
    policy = client.V1NetworkPolicy(
        metadata=client.V1ObjectMeta(name="p"),
        spec=client.V1NetworkPolicySpec(pod_selector=client.V1LabelSelector()),
    )

    networking.create_namespaced_ingress(NS, ingress)
    networking.create_namespaced_network_policy(NS, policy)
    listed = networking.list_namespaced_ingress(NS, label_selector="app=jupyter")
    networking.delete_namespaced_network_policy("p", NS)

    assert [i.metadata.name for i in listed.items] == ["i"]
    assert kube_server.objects("networkpolicies") == []
    assert [i["metadata"]["name"] for i in kube_server.objects("ingresses")] == ["i"]


def test_claims_and_secrets(kube_server: FakeApiServer, core: CoreApi) -> None:
    claim = client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="home"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
        ),
    )
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"token": "t"})

    created = core.create_namespaced_persistent_volume_claim(NS, claim)
    core.create_namespaced_secret(NS, secret)
    deleted = core.delete_namespaced_persistent_volume_claim("home", NS)

    assert created.status.phase == "Pending"
    assert deleted.metadata.name == "home"
    assert kube_server.get("secrets", NS, "s") is not None


# --- fault injection and the request log ---


def test_fail_next_answers_a_status_then_lets_requests_through(
    kube_server: FakeApiServer, core: CoreApi
) -> None:
    kube_server.fail_next("POST", r"/namespaces/[^/]+/pods$", status=503, times=2)

    outcomes: list[int] = []
    for _ in range(3):
        try:
            core.create_namespaced_pod(NS, make_pod("a"))
            outcomes.append(201)
        except ApiException as exc:
            outcomes.append(exc.status)
            assert body(exc)["kind"] == "Status"
            assert body(exc)["reason"] == "ServiceUnavailable"

    assert outcomes == [503, 503, 201]
    assert len(kube_server.requests_to("POST", "/pods$")) == 3
    assert kube_server.get("pods", NS, "a") is not None


def test_fail_next_with_a_body_and_query_parameters(
    kube_server: FakeApiServer, core: CoreApi
) -> None:
    kube_server.fail_next(
        "GET", "/pods$", status=429, body={"custom": True}, params={"watch": "true"}
    )

    core.list_namespaced_pod(NS)  # not a watch: not failed
    with pytest.raises(ApiException) as caught:
        list(watch.Watch().stream(core.list_namespaced_pod, NS, timeout_seconds=1))

    assert caught.value.status == 429
    assert body(caught.value) == {"custom": True}


def test_delay_next_makes_a_read_timeout_after_the_change_is_made(
    kube_server: FakeApiServer, core: CoreApi
) -> None:
    kube_server.delay_next("post", "/configmaps$", 1.0)

    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        core.create_namespaced_config_map(NS, make_config_map("c"), _request_timeout=(1, 0.2))

    assert kube_server.get("configmaps", NS, "c") is not None


def test_delay_next_before_the_request_is_handled(
    kube_server: FakeApiServer, core: CoreApi
) -> None:
    kube_server.delay_next("GET", "/configmaps$", 0.3, before=True)

    began = time.monotonic()
    core.list_namespaced_config_map(NS)

    assert time.monotonic() - began >= 0.3


def test_the_request_log_keeps_the_query(kube_server: FakeApiServer, core: CoreApi) -> None:
    core.list_namespaced_pod(NS, label_selector="app=jupyter")

    (request,) = kube_server.requests_to("get", "/pods$")

    assert request.method == "GET"
    assert request.path == f"/api/v1/namespaces/{NS}/pods"
    assert request.query["labelSelector"] == "app=jupyter"


def test_a_kmock_reaction_takes_precedence(kube_server: FakeApiServer, core: CoreApi) -> None:
    kube_server.emulator[f"get /api/v1/namespaces/{NS}/configmaps/scripted"] << {
        "metadata": {"name": "scripted"},
        "data": {"from": "kmock"},
    }

    assert core.read_namespaced_config_map("scripted", NS).data == {"from": "kmock"}


# --- the kubelet ---


@pytest.fixture
def pod(core: CoreApi) -> str:
    core.create_namespaced_pod(NS, make_pod("p"))
    return "p"


def events_of(core: CoreApi, name: str) -> list[tuple[str, str, str]]:
    events = core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name}").items
    return [(e.type, e.reason, e.message) for e in events]


def conditions(pod: Any) -> dict[str, str]:
    return {c.type: c.status for c in pod.status.conditions or []}


def test_kubelet_schedules(kubelet: Kubelet, core: CoreApi, pod: str) -> None:
    kubelet.schedule(pod)

    read = core.read_namespaced_pod(pod, NS)
    assert read.spec.node_name == "node-1"
    assert conditions(read) == {"PodScheduled": "True"}
    assert events_of(core, pod) == [
        ("Normal", "Scheduled", f"Successfully assigned {NS}/p to node-1")
    ]
    with pytest.raises(ApiException) as twice:
        kubelet.schedule(pod)
    assert twice.value.status == 409


def test_kubelet_cannot_schedule(kubelet: Kubelet, core: CoreApi, pod: str) -> None:
    kubelet.unschedulable(pod)

    read = core.read_namespaced_pod(pod, NS)
    (scheduled,) = read.status.conditions
    assert (scheduled.type, scheduled.status, scheduled.reason) == (
        "PodScheduled",
        "False",
        "Unschedulable",
    )
    assert scheduled.message == DEFAULT_UNSCHEDULABLE
    assert read.status.phase == "Pending"
    assert events_of(core, pod) == [("Warning", "FailedScheduling", DEFAULT_UNSCHEDULABLE)]


def test_kubelet_pulls_and_runs(kubelet: Kubelet, core: CoreApi, pod: str) -> None:
    kubelet.schedule(pod)
    kubelet.pulling(pod)
    pulling = core.read_namespaced_pod(pod, NS)
    kubelet.run(pod)

    read = core.read_namespaced_pod(pod, NS)
    assert pulling.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    assert read.status.phase == "Running"
    assert re.fullmatch(r"10\.0\.0\.\d+", read.status.pod_ip)
    (notebook,) = read.status.container_statuses
    assert notebook.ready and notebook.state.running.started_at is not None
    assert conditions(read) == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    assert [reason for _, reason, _ in events_of(core, pod)] == [
        "Scheduled",
        "Pulling",
        "Pulled",
        "Created",
        "Started",
    ]
    assert ("Normal", "Pulling", 'Pulling image "quay.io/jupyter/base:2025"') in events_of(
        core, pod
    )


def test_kubelet_runs_unready(kubelet: Kubelet, core: CoreApi, pod: str) -> None:
    kubelet.schedule(pod)
    kubelet.run(pod, ready=False)

    read = core.read_namespaced_pod(pod, NS)
    ready = next(c for c in read.status.conditions if c.type == "Ready")
    assert (read.status.phase, ready.status, ready.reason) == (
        "Running",
        "False",
        "ContainersNotReady",
    )
    assert ready.message == "containers with unready status: [notebook]"


def test_kubelet_fails_to_pull(kubelet: Kubelet, core: CoreApi, pod: str) -> None:
    kubelet.schedule(pod)
    kubelet.image_pull_failed(pod)
    first = core.read_namespaced_pod(pod, NS).status.container_statuses[0].state.waiting
    kubelet.image_pull_failed(pod, back_off=True)
    later = core.read_namespaced_pod(pod, NS).status.container_statuses[0].state.waiting

    assert first.reason == "ErrImagePull" and "not found" in first.message
    assert later.reason == "ImagePullBackOff"
    assert later.message == 'Back-off pulling image "quay.io/jupyter/base:2025"'
    reasons = [(kind, reason, message) for kind, reason, message in events_of(core, pod)]
    assert ("Warning", "Failed", "Error: ErrImagePull") in reasons
    assert ("Warning", "Failed", "Error: ImagePullBackOff") in reasons
    assert ("Normal", "BackOff", 'Back-off pulling image "quay.io/jupyter/base:2025"') in reasons


def test_kubelet_crash_loops(kubelet: Kubelet, core: CoreApi, pod: str) -> None:
    kubelet.schedule(pod)
    kubelet.run(pod)
    kubelet.crash(pod, exit_code=3)  # restartPolicy Always: a crash loop

    read = core.read_namespaced_pod(pod, NS)
    (notebook,) = read.status.container_statuses
    assert read.status.phase == "Running"
    assert notebook.state.waiting.reason == "CrashLoopBackOff"
    assert notebook.last_state.terminated.exit_code == 3
    assert notebook.restart_count == 1 and not notebook.ready
    assert ("Warning", "BackOff") in [(kind, reason) for kind, reason, _ in events_of(core, pod)]


def test_kubelet_fails_a_pod_that_is_not_restarted(kubelet: Kubelet, core: CoreApi) -> None:
    core.create_namespaced_pod(NS, make_pod("once", restart_policy="Never"))
    kubelet.schedule("once")
    kubelet.run("once")
    kubelet.crash("once", exit_code=2)

    read = core.read_namespaced_pod("once", NS)
    assert read.status.phase == "Failed"
    assert read.status.container_statuses[0].state.terminated.exit_code == 2
    assert read.status.container_statuses[0].state.terminated.reason == "Error"


def test_kubelet_deadline_exceeded(kubelet: Kubelet, core: CoreApi, pod: str) -> None:
    kubelet.schedule(pod)
    kubelet.run(pod)
    kubelet.deadline_exceeded(pod)

    read = core.read_namespaced_pod(pod, NS)
    assert (read.status.phase, read.status.reason, read.status.message) == (
        "Failed",
        "DeadlineExceeded",
        DEADLINE_MESSAGE,
    )
    assert ("Normal", "DeadlineExceeded", DEADLINE_MESSAGE) in events_of(core, pod)


def test_kubelet_succeeds_and_terminates(kubelet: Kubelet, core: CoreApi, pod: str) -> None:
    core.create_namespaced_pod(NS, make_pod("stopped"))
    for name in (pod, "stopped"):
        kubelet.schedule(name)
        kubelet.run(name)
    kubelet.succeed(pod)
    kubelet.terminate("stopped", exit_code=143)

    succeeded = core.read_namespaced_pod(pod, NS)
    stopped = core.read_namespaced_pod("stopped", NS)
    assert succeeded.status.phase == "Succeeded"
    assert succeeded.status.container_statuses[0].state.terminated.reason == "Completed"
    assert stopped.status.phase == "Failed"
    assert ("Normal", "Killing", "Stopping container notebook") in events_of(core, "stopped")


def test_kubelet_on_a_deleted_pod_gets_not_found(kubelet: Kubelet, core: CoreApi, pod: str) -> None:
    core.delete_namespaced_pod(pod, NS)

    with pytest.raises(ApiException) as caught:
        kubelet.run(pod)

    assert caught.value.status == 404


@pytest.fixture
def auto_kubelet(kubelet: Kubelet) -> Iterator[Kubelet]:
    yield kubelet.auto(delay=0.01)
    assert kubelet.errors == []


def test_auto_runs_every_new_pod(auto_kubelet: Kubelet, core: CoreApi) -> None:
    core.create_namespaced_pod(NS, make_pod("a"))
    core.create_namespaced_pod(NS, make_pod("b"))

    def all_ready() -> bool:
        pods = core.list_namespaced_pod(NS, field_selector="status.phase=Running").items
        return len(pods) == 2 and all(conditions(p).get("Ready") == "True" for p in pods)

    eventually(all_ready)
    assert [reason for _, reason, _ in events_of(core, "a")] == [
        "Scheduled",
        "Pulling",
        "Pulled",
        "Created",
        "Started",
    ]


def test_auto_survives_a_pod_deleted_on_the_way(
    kube_server: FakeApiServer, kubelet: Kubelet, core: CoreApi
) -> None:
    kubelet.auto(delay=0.2)
    core.create_namespaced_pod(NS, make_pod("gone"))
    eventually(lambda: bool(events_of(core, "gone")))
    core.delete_namespaced_pod("gone", NS)
    core.create_namespaced_pod(NS, make_pod("next"))

    eventually(lambda: core.read_namespaced_pod("next", NS).status.phase == "Running")
    assert kubelet.errors == []


def test_auto_stops_at_once(kube_server: FakeApiServer, kubelet: Kubelet, core: CoreApi) -> None:
    kubelet.auto()
    eventually(lambda: bool(kube_server.requests_to("GET", "/pods$")))

    began = time.monotonic()
    kubelet.stop()

    assert time.monotonic() - began < 1.0
    core.create_namespaced_pod(NS, make_pod("left-alone"))
    time.sleep(0.2)
    assert core.read_namespaced_pod("left-alone", NS).spec.node_name is None


def test_timestamps_parse(kubelet: Kubelet, core: CoreApi, pod: str) -> None:
    kubelet.schedule(pod)
    kubelet.run(pod)

    events = core.list_namespaced_event(NS).items
    scheduled = next(e for e in events if e.reason == "Scheduled")
    started = next(e for e in events if e.reason == "Started")
    assert isinstance(scheduled.event_time, datetime) and scheduled.last_timestamp is None
    assert isinstance(started.last_timestamp, datetime)
    assert started.source.component == "kubelet" and started.source.host == "node-1"
