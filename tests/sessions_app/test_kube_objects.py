"""The Kubernetes objects of a session, as the cluster would see them, checked offline.

Every builder's output goes through kubernetes-validate (strict, for every supported
Kubernetes version) and through ``tests.kube_checks``, which catches what the schemas let
through: names, labels, quantities, the restricted Pod Security Standard, Ingress paths, and
how the pod, Service, Ingress, home claim and NetworkPolicy of one session fit together. Each
check is shown to fail on a broken object. Names are checked as properties (hypothesis), the
``KUBE_*`` parsers and the start-up checks of the settings with good and bad values.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from hypothesis import assume, given
from hypothesis import strategies as st
from kubernetes.client import ApiClient

from sessions_app.spawners.base import SpawnRequest
from sessions_app.spawners.kube_network import make_network_policy
from sessions_app.spawners.kube_objects import (
    ENVIRONMENT_LABEL,
    LIBRARY_DIR,
    PORT_NAME,
    SERVER_PORT,
    SESSION_LABEL,
    USER_LABEL,
    KubeConfig,
    home_claim_name,
    label_value,
    make_ingress,
    make_pod,
    make_pvc,
    make_service,
    meta,
    owner_reference,
    parse_cidrs,
    parse_labels,
    session_name,
)
from tests.kube_checks import (
    SUPPORTED_KUBERNETES_VERSIONS,
    dns1035_label_problems,
    dns1123_label_problems,
    label_value_problems,
    object_problems,
    recommended_labels_problems,
    schema_problems,
    selector_matches,
    session_ingress_problems,
    session_network_policy_problems,
    session_pod_problems,
    session_service_problems,
)

JSONDict = dict[str, Any]

SESSION_ID = "5b0f3f4e-8d1c-4c3a-9a57-2f8f0e6f4c11"
OTHER_SESSION_ID = "0c6d2b1a-77e4-4f0e-8f43-6a1de0f2b9aa"
TOKEN = "not-a-real-token"
POD_UID = "2d1c8f0a-3b4e-4c5d-9e6f-7a8b9c0d1e2f"
HOME_ROOT = Path("/srv/portal/home")
SCRATCH_ROOT = Path("/srv/portal/scratch")
IMAGE = "quay.io/jupyter/scipy-notebook:2025-01-06"

CONFIG = KubeConfig(
    namespace="jupyter-sessions",
    public_url="https://jupyter.example.org",
    scratch_claim="scratch",
    home_storage_class="standard-rwo",
    home_size="10Gi",
)
LIBRARY_CONFIG = replace(
    CONFIG, library_url="https://git.example.org/course/notebooks.git", library_branch="main"
)
ALLOW_LIST_CONFIG = replace(
    CONFIG,
    egress_allow_cidrs=("10.20.0.0/16", "192.168.7.0/24", "2001:db8::/32"),
    router_namespace="traefik",
    router_pod_labels={"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "edge"},
)
NO_HOST_CONFIG = replace(CONFIG, public_url="", ingress_class="")
# Scratch, library and an allow-list: every part of the objects is there to break.
FULL_CONFIG = replace(
    ALLOW_LIST_CONFIG,
    library_url=LIBRARY_CONFIG.library_url,
    library_branch=LIBRARY_CONFIG.library_branch,
)


def spawn_request(
    username: str = "alice",
    *,
    session_id: str = SESSION_ID,
    scratch: bool = True,
    environment: str = "python-3-12",
    priority_class: str = "",
    folder: str = "u~42",
    duration_seconds: int = 4 * 3600,
) -> SpawnRequest:
    backend_settings: dict[str, Any] = {"image": IMAGE}
    if priority_class:
        backend_settings["priority_class"] = priority_class
    return SpawnRequest(
        session_id=session_id,
        username=username,
        memory_mb=4096,
        cpus=2,
        duration_seconds=duration_seconds,
        home_dir=HOME_ROOT / folder,
        scratch_dir=SCRATCH_ROOT / folder if scratch else None,
        environment=environment,
        backend_settings=backend_settings,
    )


@dataclass(frozen=True)
class Case:
    request: SpawnRequest
    config: KubeConfig = CONFIG


CASES: dict[str, Case] = {
    "plain": Case(spawn_request()),
    "no-scratch": Case(spawn_request(scratch=False)),
    "library": Case(spawn_request(), LIBRARY_CONFIG),
    "library-no-scratch": Case(spawn_request(scratch=False), LIBRARY_CONFIG),
    "priority-class": Case(spawn_request(priority_class="jupyter-sessions-high")),
    "upper-case": Case(spawn_request("ALICE_Smith")),
    "dots": Case(spawn_request("first.last")),
    "email": Case(spawn_request("alice+lab@example.org")),
    "unicode": Case(spawn_request("józef-straße-東京")),
    "200-characters": Case(spawn_request("Ab9_" * 50)),
    "empty-slug": Case(spawn_request("___")),
    "long-environment": Case(spawn_request(environment="high-memory-data-science-" * 4 + "gpu")),
    "egress-allow-list": Case(spawn_request(), ALLOW_LIST_CONFIG),
    "no-public-host": Case(spawn_request(), NO_HOST_CONFIG),
    "only-a-dot": Case(spawn_request(".")),
    "with-a-slash": Case(spawn_request("dept/alice")),
}


def case_params(ingress: bool = False) -> list[pytest.ParameterSet]:
    """Every case (``ingress`` is kept for the callers: every Ingress must now pass too)."""
    return [pytest.param(case, id=case_id) for case_id, case in CASES.items()]


_serialize = ApiClient().sanitize_for_serialization


@dataclass
class Built:
    """A case's objects, serialised as they are sent."""

    case: Case
    pod: JSONDict
    service: JSONDict
    ingress: JSONDict
    claim: JSONDict
    policy: JSONDict
    # The Service and Ingress without owner references, as made before the pod exists.
    unowned: list[JSONDict] = field(default_factory=list)


def build(case: Case) -> Built:
    config, request = case.config, case.request
    # The service and the ingress belong to the pod the API server created (it has a uid).
    created = make_pod(config, request, TOKEN)
    meta(created).uid = POD_UID
    owner = owner_reference(created)
    return Built(
        case=case,
        pod=_serialize(make_pod(config, request, TOKEN)),
        service=_serialize(make_service(config, request, owner)),
        ingress=_serialize(make_ingress(config, request, owner)),
        claim=_serialize(make_pvc(config, request)),
        policy=_serialize(make_network_policy(config)),
        unowned=[
            _serialize(make_service(config, request)),
            _serialize(make_ingress(config, request)),
        ],
    )


def session_labels_expected(request: SpawnRequest) -> dict[str, str]:
    return {
        SESSION_LABEL: label_value(request.session_id),
        USER_LABEL: label_value(request.username),
        ENVIRONMENT_LABEL: label_value(request.environment),
    }


def pod_promises(built: Built) -> list[str]:
    request, config = built.case.request, built.case.config
    return session_pod_problems(
        built.pod,
        deadline_seconds=request.duration_seconds,
        base_url=request.base_url,
        home_claim=home_claim_name(request.home_dir.name),
        scratch_claim=config.scratch_claim,
        scratch_subpath=request.scratch_dir.name if request.scratch_dir else None,
        library_mount=LIBRARY_DIR if config.library_url else None,
        labels=session_labels_expected(request),
    )


def ingress_promises(built: Built) -> list[str]:
    return session_ingress_problems(
        built.ingress,
        built.service,
        base_url=built.case.request.base_url,
        session_id=built.case.request.session_id,
        host=built.case.config.public_host or None,
    )


def policy_promises(built: Built) -> list[str]:
    config = built.case.config
    return session_network_policy_problems(
        built.policy,
        pod_labels=built.pod["metadata"]["labels"],
        allow_cidrs=config.egress_allow_cidrs,
        router_namespace=config.router_namespace,
        router_pod_labels=config.router_pod_labels,
        server_port=SERVER_PORT,
    )


def session_names_problems(built: Built) -> list[str]:
    # One name for the pod, its Service and its Ingress; a Service's name is a DNS-1035 label.
    return [
        problem
        for obj in (built.pod, built.service, built.ingress)
        for problem in dns1035_label_problems(obj["metadata"]["name"], obj["kind"])
    ]


# --- 1. The API's schemas, strictly, for every supported version ---------------------------


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES_VERSIONS)
@pytest.mark.parametrize("case", case_params())
def test_the_session_objects_pass_the_api_schemas_strictly(case: Case, version: str) -> None:
    built = build(case)
    objects = [built.pod, built.service, built.ingress, built.claim]

    assert [problem for obj in objects for problem in schema_problems(obj, version)] == []


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "config",
    [
        pytest.param(CONFIG, id="default"),
        pytest.param(FULL_CONFIG, id="library-allow-list-and-other-router"),
        pytest.param(NO_HOST_CONFIG, id="no-public-host"),
    ],
)
def test_the_network_policy_and_unowned_objects_pass_the_api_schemas_strictly(
    config: KubeConfig, version: str
) -> None:
    # The policy depends only on the settings; the Service and Ingress before the pod exists
    # differ from the owned ones only in their owner references.
    built = build(Case(spawn_request(), config))
    objects = [built.policy, *built.unowned]

    assert [problem for obj in objects for problem in schema_problems(obj, version)] == []


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES_VERSIONS)
def test_the_schemas_refuse_an_unknown_field_and_a_wrong_type(version: str) -> None:
    # Given a good pod, when it gains a misspelt field or a number as a string, then the
    # strict schemas of this very version say so (no silent fall-back to another version).
    pod = build(CASES["plain"]).pod
    misspelt = copy.deepcopy(pod)
    misspelt["spec"]["restartPolicyy"] = "Never"
    wrong_type = copy.deepcopy(pod)
    wrong_type["spec"]["activeDeadlineSeconds"] = "3600"

    assert schema_problems(pod, version) == []
    assert "'restartPolicyy' was unexpected" in " ".join(schema_problems(misspelt, version))
    assert "is not of type 'integer'" in " ".join(schema_problems(wrong_type, version))


def test_a_version_without_schemas_is_a_problem_not_a_pass() -> None:
    pod = build(CASES["plain"]).pod

    assert schema_problems(pod, "1.99.0") == [
        f"Pod/{pod['metadata']['name']}: kubernetes-validate has no schemas for Kubernetes 1.99"
    ]


# --- 2. Our own checks on the builders' output ---------------------------------------------


@pytest.mark.parametrize("case", case_params())
def test_the_pod_passes_the_general_checks(case: Case) -> None:
    # Names, labels, quantities, restricted security for every container (init included).
    assert object_problems(build(case).pod) == []


@pytest.mark.parametrize("case", case_params())
def test_the_pod_keeps_the_session_promises(case: Case) -> None:
    # Deadline, Never restarted, no token, Guaranteed QoS, labels, probe, env, volumes.
    assert pod_promises(build(case)) == []


@pytest.mark.parametrize("case", case_params())
def test_pod_service_and_ingress_share_a_dns_1035_name(case: Case) -> None:
    built = build(case)

    assert session_names_problems(built) == []
    assert (
        built.pod["metadata"]["name"]
        == built.service["metadata"]["name"]
        == built.ingress["metadata"]["name"]
    )


@pytest.mark.parametrize("case", case_params())
def test_the_service_selects_its_pod_only(case: Case) -> None:
    built = build(case)
    other = build(replace(case, request=replace(case.request, session_id=OTHER_SESSION_ID)))

    assert object_problems(built.service) == []
    assert session_service_problems(built.service, built.pod) == []
    assert not selector_matches(built.service["spec"]["selector"], other.pod["metadata"]["labels"])


@pytest.mark.parametrize("case", case_params(ingress=True))
def test_the_ingress_is_accepted_by_the_api_server_and_ingress_nginx(case: Case) -> None:
    built = build(case)

    assert [p for obj in (built.ingress, *built.unowned) for p in object_problems(obj)] == []


@pytest.mark.parametrize("case", case_params())
def test_the_ingress_routes_the_base_url_to_the_service_behind_forward_auth(case: Case) -> None:
    built = build(case)

    assert ingress_promises(built) == []
    assert built.ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] == {
        "name": PORT_NAME
    }


@pytest.mark.parametrize("case", case_params())
def test_pod_service_and_ingress_carry_the_session_labels(case: Case) -> None:
    built = build(case)
    expected = session_labels_expected(case.request)

    for obj in (built.pod, built.service, built.ingress):
        labels = obj["metadata"]["labels"]
        assert recommended_labels_problems(obj) == []
        assert {key: labels.get(key) for key in expected} == expected


@pytest.mark.parametrize("case", case_params())
def test_the_home_claim_is_named_after_the_folder_and_passes_the_checks(case: Case) -> None:
    claim = build(case).claim

    assert object_problems(claim) == []
    assert claim["metadata"]["name"] == home_claim_name(case.request.home_dir.name)
    assert dns1123_label_problems(claim["metadata"]["name"], "claim") == []
    assert claim["metadata"]["labels"][USER_LABEL] == label_value(case.request.username)
    assert (
        recommended_labels_problems(
            claim,
            (
                "app.kubernetes.io/name",
                "app.kubernetes.io/component",
                "app.kubernetes.io/part-of",
                "app.kubernetes.io/managed-by",
            ),
        )
        == []
    )


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(CONFIG, id="default"),
        pytest.param(ALLOW_LIST_CONFIG, id="allow-list-and-other-router"),
    ],
)
def test_the_network_policy_selects_session_pods_and_lets_through_only_dns_web_and_the_list(
    config: KubeConfig,
) -> None:
    built = build(Case(spawn_request(), config))
    portal_web_pod = {
        "app.kubernetes.io/name": "jupyter-portal",
        "app.kubernetes.io/component": "web",
        "app.kubernetes.io/part-of": "jupyter-launcher-portal",
    }

    assert object_problems(built.policy) == []
    assert policy_promises(built) == []
    assert not selector_matches(built.policy["spec"]["podSelector"], portal_web_pod)


def test_the_priority_class_is_set_only_when_the_environment_names_one() -> None:
    with_class = build(CASES["priority-class"]).pod["spec"]
    without = build(CASES["plain"]).pod["spec"]

    assert with_class["priorityClassName"] == "jupyter-sessions-high"
    assert "priorityClassName" not in without


def test_the_library_is_cloned_by_a_restricted_init_container_only_when_configured() -> None:
    with_library = build(CASES["library"]).pod
    without = build(CASES["plain"]).pod

    (init,) = with_library["spec"]["initContainers"]
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    assert "https://git.example.org/course/notebooks.git" in init["command"]
    assert "initContainers" not in without["spec"]
    assert all(v["name"] != "library" for v in without["spec"]["volumes"])


# --- Each check can fail --------------------------------------------------------------------


def _container(obj: JSONDict, name: str = "notebook") -> JSONDict:
    spec = obj["spec"]
    return next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name)


def _env_value(obj: JSONDict, name: str, value: str | None) -> None:
    env = _container(obj)["env"]
    if value is None:
        env[:] = [e for e in env if e["name"] != name]
    else:
        next(e for e in env if e["name"] == name)["value"] = value


def _mount(obj: JSONDict, name: str) -> JSONDict:
    return next(m for m in _container(obj)["volumeMounts"] if m["name"] == name)


def _egress(obj: JSONDict, index: int) -> JSONDict:
    return dict(obj["spec"]["egress"][index])


Path_ = tuple[str | int, ...]


def _set(path: Path_, value: Any) -> Callable[[JSONDict], None]:
    """A breakage that sets ``obj[path[0]][path[1]]...`` (or deletes it: ``_DELETE``)."""

    def mutate(obj: JSONDict) -> None:
        *parents, last = path
        target: Any = obj
        for key in parents:
            target = target[key]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value

    return mutate


_DELETE = object()


@dataclass(frozen=True)
class Breakage:
    target: str  # which object of the FULL_CONFIG session to break
    mutate: Callable[[JSONDict], None]
    check: Callable[[Built], list[str]]
    expected: str


def _general(target: str) -> Callable[[Built], list[str]]:
    return lambda built: object_problems(getattr(built, target))


def _do(*steps: Callable[[JSONDict], None]) -> Callable[[JSONDict], None]:
    def mutate(obj: JSONDict) -> None:
        for step in steps:
            step(obj)

    return mutate


_POD_SC: Path_ = ("spec", "securityContext")
_NB: Path_ = ("spec", "containers", 0)
_NB_SC: Path_ = (*_NB, "securityContext")
_INIT: Path_ = ("spec", "initContainers", 0)
_INIT_SC: Path_ = (*_INIT, "securityContext")
_PATH: Path_ = ("spec", "rules", 0, "http", "paths", 0)
_LABELS: Path_ = ("metadata", "labels")
_AUTH_URL: Path_ = ("metadata", "annotations", "nginx.ingress.kubernetes.io/auth-url")
_AUTH_RESPONSE_HEADERS: Path_ = (
    "metadata",
    "annotations",
    "nginx.ingress.kubernetes.io/auth-response-headers",
)

BREAKAGES: dict[str, Breakage] = {
    # Names.
    "service-name-upper-case": Breakage(
        "service", _set(("metadata", "name"), "Jupyter-alice"), _general("service"), "DNS-1035"
    ),
    "service-name-starts-with-a-digit": Breakage(
        "service", _set(("metadata", "name"), "1-jupyter"), _general("service"), "DNS-1035"
    ),
    "session-name-64-characters": Breakage(
        "pod", _set(("metadata", "name"), "j" * 64), session_names_problems, "DNS-1035"
    ),
    "namespace-not-a-label": Breakage(
        "claim", _set(("metadata", "namespace"), "Jupyter_Sessions"), _general("claim"), "namespace"
    ),
    "claim-name-with-underscore": Breakage(
        "claim", _set(("metadata", "name"), "home_alice"), _general("claim"), "DNS-1123 subdomain"
    ),
    # Labels and annotations.
    "label-key-with-a-space": Breakage(
        "pod", _set((*_LABELS, "bad key"), "x"), _general("pod"), "not a qualified name"
    ),
    "label-key-upper-case-prefix": Breakage(
        "service", _set((*_LABELS, "Example.COM/x"), "x"), _general("service"), "prefix"
    ),
    "label-value-64-characters": Breakage(
        "ingress", _set((*_LABELS, USER_LABEL), "a" * 64), _general("ingress"), "not a valid label"
    ),
    "label-value-with-a-newline": Breakage(
        "claim", _set((*_LABELS, USER_LABEL), "alice\n"), _general("claim"), "not a valid label"
    ),
    "annotation-key-with-a-space": Breakage(
        "pod", _set(("metadata", "annotations", "user name"), "alice"), _general("pod"), "qualified"
    ),
    "selector-value-with-a-space": Breakage(
        "policy",
        _set(("spec", "podSelector", "matchLabels", "app.kubernetes.io/name"), "jupyter session"),
        _general("policy"),
        "not a valid label value",
    ),
    # Quantities.
    "memory-not-a-quantity": Breakage(
        "pod",
        _set((*_NB, "resources", "limits", "memory"), "lots"),
        _general("pod"),
        "not a quantity",
    ),
    "cpu-not-a-number": Breakage(
        "pod", _set((*_NB, "resources", "limits", "cpu"), "NaN"), _general("pod"), "not a quantity"
    ),
    "cpu-zero": Breakage(
        "pod", _set((*_NB, "resources", "requests", "cpu"), "0"), _general("pod"), "not positive"
    ),
    "memory-below-64Mi": Breakage(
        "pod",
        _do(
            _set((*_NB, "resources", "requests", "memory"), "32Mi"),
            _set((*_NB, "resources", "limits", "memory"), "32Mi"),
        ),
        _general("pod"),
        "less than 64Mi",
    ),
    "cpu-above-256": Breakage(
        "pod", _set((*_NB, "resources", "limits", "cpu"), "500"), _general("pod"), "more than 256"
    ),
    "request-above-limit": Breakage(
        "pod",
        _set((*_NB, "resources", "requests", "memory"), "8Gi"),
        _general("pod"),
        "above its limit",
    ),
    "init-request-below-limit": Breakage(
        "pod", _set((*_INIT, "resources", "requests", "cpu"), "50m"), pod_promises, "QoS"
    ),
    "no-limits": Breakage(
        "pod", _set((*_NB, "resources", "limits"), _DELETE), pod_promises, "Guaranteed QoS"
    ),
    "claim-storage-zero": Breakage(
        "claim",
        _set(("spec", "resources", "requests", "storage"), "0"),
        _general("claim"),
        "not positive",
    ),
    "claim-storage-not-a-quantity": Breakage(
        "claim",
        _set(("spec", "resources", "requests", "storage"), "big"),
        _general("claim"),
        "quantity",
    ),
    # The restricted Pod Security Standard.
    "run-as-root-allowed": Breakage(
        "pod", _set((*_NB_SC, "runAsNonRoot"), False), _general("pod"), "runAsNonRoot"
    ),
    "run-as-non-root-nowhere": Breakage(
        "pod",
        _do(
            _set((*_NB_SC, "runAsNonRoot"), _DELETE),
            _set((*_POD_SC, "runAsNonRoot"), _DELETE),
        ),
        _general("pod"),
        "runAsNonRoot",
    ),
    "run-as-uid-0": Breakage(
        "pod", _set((*_NB_SC, "runAsUser"), 0), _general("pod"), "be 0 (root)"
    ),
    "privilege-escalation": Breakage(
        "pod", _set((*_NB_SC, "allowPrivilegeEscalation"), True), _general("pod"), "Escalation"
    ),
    "privilege-escalation-unset": Breakage(
        "pod",
        _set((*_NB_SC, "allowPrivilegeEscalation"), _DELETE),
        _general("pod"),
        "allowPrivilegeEscalation",
    ),
    "init-container-privilege-escalation": Breakage(
        "pod",
        _set((*_INIT_SC, "allowPrivilegeEscalation"), True),
        _general("pod"),
        "initContainers[notebooks-library]: securityContext.allowPrivilegeEscalation",
    ),
    "capabilities-not-dropped": Breakage(
        "pod", _set((*_NB_SC, "capabilities", "drop"), []), _general("pod"), "drop must contain ALL"
    ),
    "capability-added": Breakage(
        "pod", _set((*_INIT_SC, "capabilities", "add"), ["SYS_ADMIN"]), _general("pod"), "SYS_ADMIN"
    ),
    "seccomp-unconfined": Breakage(
        "pod", _set((*_NB_SC, "seccompProfile", "type"), "Unconfined"), _general("pod"), "seccomp"
    ),
    "seccomp-nowhere": Breakage(
        "pod",
        _do(
            _set((*_NB_SC, "seccompProfile"), _DELETE),
            _set((*_INIT_SC, "seccompProfile"), _DELETE),
            _set((*_POD_SC, "seccompProfile"), _DELETE),
        ),
        _general("pod"),
        "seccompProfile",
    ),
    "privileged": Breakage(
        "pod", _set((*_NB_SC, "privileged"), True), _general("pod"), "privileged must not"
    ),
    "host-path-volume": Breakage(
        "pod",
        lambda obj: obj["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
        _general("pod"),
        "hostPath",
    ),
    "host-network": Breakage(
        "pod", _set(("spec", "hostNetwork"), True), _general("pod"), "hostNet"
    ),
    "host-pid": Breakage("pod", _set(("spec", "hostPID"), True), _general("pod"), "hostPID"),
    "host-port": Breakage(
        "pod", _set((*_NB, "ports", 0, "hostPort"), 8888), _general("pod"), "hostPort"
    ),
    # Containers.
    "no-image": Breakage("pod", _set((*_NB, "image"), ""), _general("pod"), "no image"),
    "bad-env-name": Breakage(
        "pod", _set((*_NB, "env", 0, "name"), "1-TOKEN"), _general("pod"), "not a valid variable"
    ),
    "mount-of-a-missing-volume": Breakage(
        "pod", _set((*_NB, "volumeMounts", 0, "name"), "gone"), _general("pod"), "no volume of that"
    ),
    "sub-path-escapes": Breakage(
        "pod", lambda o: _mount(o, "scratch").update(subPath="../u~1"), _general("pod"), ".."
    ),
    "port-name-upper-case": Breakage(
        "pod", _set((*_NB, "ports", 0, "name"), "HTTP"), _general("pod"), "IANA"
    ),
    "probe-on-an-unknown-port": Breakage(
        "pod", _set((*_NB, "readinessProbe", "httpGet", "port"), "web"), _general("pod"), "no port"
    ),
    # The session's pod.
    "service-account-token-mounted": Breakage(
        "pod", _set(("spec", "automountServiceAccountToken"), True), pod_promises, "automount"
    ),
    "service-account-token-default": Breakage(
        "pod", _set(("spec", "automountServiceAccountToken"), _DELETE), pod_promises, "automount"
    ),
    "deadline-not-the-sessions": Breakage(
        "pod", _set(("spec", "activeDeadlineSeconds"), 3600), pod_promises, "activeDeadlineSeconds"
    ),
    "restarted-always": Breakage(
        "pod", _set(("spec", "restartPolicy"), "Always"), pod_promises, "restartPolicy"
    ),
    "probe-outside-the-base-url": Breakage(
        "pod", _set((*_NB, "readinessProbe", "httpGet", "path"), "/api"), pod_promises, "readiness"
    ),
    "pip-installs-outside-the-home": Breakage(
        "pod",
        lambda o: _env_value(o, "PYTHONUSERBASE", "/usr/local"),
        pod_promises,
        "PYTHONUSERBASE",
    ),
    "conda-envs-unset": Breakage(
        "pod", lambda o: _env_value(o, "CONDA_ENVS_DIRS", None), pod_promises, "CONDA_ENVS_DIRS"
    ),
    "home-of-another-claim": Breakage(
        "pod",
        _set(("spec", "volumes", 0, "persistentVolumeClaim", "claimName"), "home-u-43-0123456789"),
        pod_promises,
        "home claim",
    ),
    "home-read-only": Breakage(
        "pod", lambda o: _mount(o, "home").update(readOnly=True), pod_promises, "writable"
    ),
    "scratch-of-another-user": Breakage(
        "pod", lambda o: _mount(o, "scratch").update(subPath="u~43"), pod_promises, "u~42"
    ),
    "library-writable": Breakage(
        "pod",
        lambda o: _mount(o, "library").update(readOnly=False),
        pod_promises,
        "read-only",
    ),
    "no-instance-label": Breakage(
        "pod",
        _set((*_LABELS, "app.kubernetes.io/instance"), _DELETE),
        pod_promises,
        "app.kubernetes.io/instance",
    ),
    "session-label-of-another-session": Breakage(
        "pod", _set((*_LABELS, SESSION_LABEL), OTHER_SESSION_ID), pod_promises, SESSION_LABEL
    ),
    # The Service.
    "service-selects-another-session": Breakage(
        "service",
        _set(("spec", "selector", SESSION_LABEL), OTHER_SESSION_ID),
        lambda b: session_service_problems(b.service, b.pod),
        "does not select",
    ),
    "service-targets-an-unknown-port": Breakage(
        "service",
        _set(("spec", "ports", 0, "targetPort"), "web"),
        lambda b: session_service_problems(b.service, b.pod),
        "no port of",
    ),
    "service-on-every-node": Breakage(
        "service",
        _set(("spec", "type"), "NodePort"),
        lambda b: session_service_problems(b.service, b.pod),
        "ClusterIP",
    ),
    "service-port-name-too-long": Breakage(
        "service",
        _set(("spec", "ports", 0, "name"), "jupyter-http-port"),
        _general("service"),
        "IANA",
    ),
    # The Ingress.
    "routes-another-path": Breakage(
        "ingress", _set((*_PATH, "path"), "/user/bob/"), ingress_promises, "routes"
    ),
    "routes-exactly": Breakage(
        "ingress", _set((*_PATH, "pathType"), "Exact"), ingress_promises, "(Prefix)"
    ),
    "routes-to-another-service": Breakage(
        "ingress",
        _set((*_PATH, "backend", "service", "name"), "other"),
        ingress_promises,
        "backend",
    ),
    "routes-to-a-port-number": Breakage(
        "ingress",
        _set((*_PATH, "backend", "service", "port"), {"number": SERVER_PORT}),
        ingress_promises,
        "not a port name",
    ),
    "routes-on-another-host": Breakage(
        "ingress", _set(("spec", "rules", 0, "host"), "evil.example.org"), ingress_promises, "host"
    ),
    "auth-for-another-session": Breakage(
        "ingress",
        _set(_AUTH_URL, f"http://portal/auth/session/{OTHER_SESSION_ID}/"),
        ingress_promises,
        "auth-url",
    ),
    "no-forward-auth": Breakage(
        "ingress",
        _set(_AUTH_URL, _DELETE),
        ingress_promises,
        "auth-url",
    ),
    "no-credential-from-the-forward-auth": Breakage(
        "ingress",
        _set(_AUTH_RESPONSE_HEADERS, "Cookie"),
        ingress_promises,
        "auth-response-headers",
    ),
    "credential-header-name-ingress-nginx-refuses": Breakage(
        "ingress",
        _set(_AUTH_RESPONSE_HEADERS, "Authorization, X Token"),
        ingress_promises,
        "auth-response-headers",
    ),
    "host-is-an-ip-address": Breakage(
        "ingress", _set(("spec", "rules", 0, "host"), "10.0.0.5"), _general("ingress"), "not an IP"
    ),
    "path-with-dot-segment": Breakage(
        "ingress", _set((*_PATH, "path"), "/user/./"), _general("ingress"), "contains '/./'"
    ),
    "path-ingress-nginx-refuses": Breakage(
        "ingress", _set((*_PATH, "path"), "/user/a.b/"), _general("ingress"), "ingress-nginx"
    ),
    "backend-port-both-name-and-number": Breakage(
        "ingress",
        _set((*_PATH, "backend", "service", "port"), {"name": "http", "number": 8888}),
        _general("ingress"),
        "exactly one of name and number",
    ),
    # The claim.
    "unknown-access-mode": Breakage(
        "claim",
        _set(("spec", "accessModes"), ["ReadWriteSometimes"]),
        _general("claim"),
        "accessMode",
    ),
    "storage-class-not-a-name": Breakage(
        "claim",
        _set(("spec", "storageClassName"), "Fast_SSD"),
        _general("claim"),
        "storageClassName",
    ),
    # The NetworkPolicy.
    "policy-selects-other-pods": Breakage(
        "policy",
        _set(("spec", "podSelector"), {"matchLabels": {"app.kubernetes.io/name": "other"}}),
        policy_promises,
        "does not select",
    ),
    "policy-only-ingress": Breakage(
        "policy", _set(("spec", "policyTypes"), ["Ingress"]), policy_promises, "policyTypes"
    ),
    "egress-anywhere": Breakage(
        "policy",
        lambda obj: obj["spec"]["egress"].append({}),
        policy_promises,
        "neither DNS, web nor allow-list",
    ),
    "dns-on-another-port": Breakage(
        "policy",
        _set(("spec", "egress", 0, "ports"), [{"protocol": "UDP", "port": 54}]),
        policy_promises,
        "UDP and TCP 53",
    ),
    "dns-to-any-pod": Breakage(
        "policy",
        _set(("spec", "egress", 0, "to"), [{"namespaceSelector": {}}]),
        policy_promises,
        "neither DNS",
    ),
    "web-also-ssh": Breakage(
        "policy",
        lambda obj: obj["spec"]["egress"][1]["ports"].append({"protocol": "TCP", "port": 22}),
        policy_promises,
        "only TCP 80 and 443",
    ),
    "metadata-reachable": Breakage(
        "policy",
        _set(("spec", "egress", 1, "to", 0, "ipBlock", "except"), _DELETE),
        policy_promises,
        "does not except 169.254.169.254/32",
    ),
    "allow-list-short": Breakage(
        "policy", lambda obj: obj["spec"]["egress"][2]["to"].pop(), policy_promises, "allow-list"
    ),
    "allow-list-extra": Breakage(
        "policy",
        lambda obj: obj["spec"]["egress"][2]["to"].append({"ipBlock": {"cidr": "0.0.0.0/0"}}),
        policy_promises,
        "allow-list",
    ),
    "ingress-from-anywhere-in-the-namespace": Breakage(
        "policy",
        _set(("spec", "ingress", 0, "from", 0, "podSelector"), {}),
        policy_promises,
        "spec.ingress must be one rule",
    ),
    "ingress-on-another-port": Breakage(
        "policy",
        _set(("spec", "ingress", 0, "ports", 0, "port"), 8080),
        policy_promises,
        "spec.ingress must be one rule",
    ),
    "cidr-with-host-bits": Breakage(
        "policy",
        _set(("spec", "egress", 2, "to", 0, "ipBlock", "cidr"), "10.20.0.1/16"),
        _general("policy"),
        "canonical",
    ),
    "except-outside-the-block": Breakage(
        "policy",
        _set(("spec", "egress", 1, "to", 0, "ipBlock", "except"), ["fd00::/8"]),
        _general("policy"),
        "not strictly inside",
    ),
    "policy-port-out-of-range": Breakage(
        "policy",
        _set(("spec", "ingress", 0, "ports", 0, "port"), 70000),
        _general("policy"),
        "1-65535",
    ),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_each_check_finds_a_broken_object(name: str) -> None:
    # Given the good objects of a session with scratch, library and an allow-list, the check
    # finds nothing; when one object is broken, it names the problem.
    breakage = BREAKAGES[name]
    good = build(Case(spawn_request(), FULL_CONFIG))
    assert breakage.check(good) == []
    broken = copy.deepcopy(good)
    breakage.mutate(getattr(broken, breakage.target))

    problems = breakage.check(broken)

    assert any(breakage.expected in problem for problem in problems), problems


WORKLOADS = {
    "Deployment": ("apps/v1", ("spec", "template")),
    "StatefulSet": ("apps/v1", ("spec", "template")),
    "DaemonSet": ("apps/v1", ("spec", "template")),
    "ReplicaSet": ("apps/v1", ("spec", "template")),
    "Job": ("batch/v1", ("spec", "template")),
    "CronJob": ("batch/v1", ("spec", "jobTemplate", "spec", "template")),
}


def workload(kind: str, pod: JSONDict) -> JSONDict:
    """A workload of ``kind`` whose pod template is ``pod``."""
    api_version, path = WORKLOADS[kind]
    labels = {"app.kubernetes.io/name": "jupyter-portal", "app.kubernetes.io/component": "web"}
    spec = copy.deepcopy(pod["spec"])
    for key in ("activeDeadlineSeconds", "restartPolicy"):
        spec.pop(key)
    if kind in ("Job", "CronJob"):
        spec["restartPolicy"] = "Never"
    obj: JSONDict = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "portal-web", "namespace": "jupyter-portal", "labels": labels},
    }
    parent = obj
    for key in path[:-1]:
        parent = parent.setdefault(key, {})
    parent[path[-1]] = {"metadata": {"labels": labels}, "spec": spec}
    if kind == "CronJob":
        obj["spec"]["schedule"] = "*/5 * * * *"
    elif kind != "Job":
        obj["spec"]["selector"] = {"matchLabels": dict(labels)}
        if kind == "StatefulSet":
            obj["spec"]["serviceName"] = "portal-web"
    return obj


@pytest.mark.parametrize("kind", WORKLOADS)
def test_pod_templates_of_workloads_are_checked_like_pods(kind: str) -> None:
    # The checks serve the manifests in deploy/ too: a good template passes the schemas and
    # the checks; a privileged container or a stray selector in it is found.
    pod = build(CASES["library"]).pod
    good = workload(kind, pod)
    privileged = copy.deepcopy(good)
    template = (
        privileged["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else privileged["spec"]
    )
    template["template"]["spec"]["initContainers"][0]["securityContext"]["privileged"] = True

    assert object_problems(good) == []
    assert schema_problems(good, SUPPORTED_KUBERNETES_VERSIONS[-1]) == []
    assert any(
        "template.spec.initContainers[notebooks-library]: securityContext.privileged" in p
        for p in object_problems(privileged)
    ), object_problems(privileged)
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        stray = copy.deepcopy(good)
        stray["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "worker"
        assert any("does not select" in p for p in object_problems(stray))


def test_a_job_that_restarts_always_is_found() -> None:
    job = workload("Job", build(CASES["plain"]).pod)
    job["spec"]["template"]["spec"]["restartPolicy"] = "Always"

    assert any("restartPolicy 'Always'" in p for p in object_problems(job))


# --- 3. Names, as properties ----------------------------------------------------------------

_texts = st.text(max_size=300)


@given(username=_texts, session_id=_texts)
def test_a_session_name_is_a_dns_1035_label_for_any_user_and_session(
    username: str, session_id: str
) -> None:
    name = session_name(username, session_id)

    assert dns1035_label_problems(name, "session name") == []
    assert name == session_name(username, session_id)


@given(text=_texts)
def test_label_value_makes_a_valid_label_value_of_any_text(text: str) -> None:
    assert label_value_problems(label_value(text), "label") == []


@given(username=_texts, first=_texts, second=_texts)
def test_two_sessions_never_share_a_name(username: str, first: str, second: str) -> None:
    assume(first != second)

    assert session_name(username, first) != session_name(username, second)
    # Users whose names slug alike ("Alice", "alice!") are kept apart by the session's hash.
    assert session_name(username.upper(), first) != session_name(username + "!", second)


@given(folders=st.lists(_texts, unique=True, min_size=2, max_size=40))
def test_home_claim_names_are_distinct_valid_labels_for_distinct_folders(
    folders: list[str],
) -> None:
    names = [home_claim_name(folder) for folder in folders]

    assert len(set(names)) == len(folders)
    assert [p for name in names for p in dns1123_label_problems(name, "claim")] == []


def test_names_of_awkward_users_stay_readable() -> None:
    assert session_name("First.Last", SESSION_ID).startswith("jupyter-first-last-")
    assert session_name("___", SESSION_ID).startswith("jupyter-")
    assert len(session_name("x" * 200, SESSION_ID)) <= 63
    assert home_claim_name("u~42").startswith("home-u-42-")
    assert label_value("alice") == "alice"


def test_label_value_of_a_text_ending_in_a_newline_is_valid() -> None:
    assert label_value_problems(label_value("alice\n"), "label") == []


# --- 4. Parsers of the KUBE_* settings ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("app=web", {"app": "web"}),
        (
            " app.kubernetes.io/name=ingress-nginx , app.kubernetes.io/component=controller,",
            {
                "app.kubernetes.io/name": "ingress-nginx",
                "app.kubernetes.io/component": "controller",
            },
        ),
        ("tier=", {"tier": ""}),
        ("Release_Track=Stable.1", {"Release_Track": "Stable.1"}),
    ],
)
def test_parse_labels_accepts_good_labels(text: str, expected: dict[str, str]) -> None:
    assert parse_labels(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("novalue", "'novalue' is not a label of the form key=value"),
        ("=web", "'=web' is not a label of the form key=value"),
        ("bad key=web", "'bad key=web' is not a label of the form key=value"),
        ("Example.COM/app=web", "'Example.COM/app=web' is not a label of the form key=value"),
        ("-app=web", "'-app=web' is not a label of the form key=value"),
        ("k" * 64 + "=v", "is not a label of the form key=value"),
        ("app=two words", "'two words' is not a valid label value"),
        ("app=-web", "'-web' is not a valid label value"),
        ("app=" + "v" * 64, "is not a valid label value"),
    ],
)
def test_parse_labels_refuses_bad_labels_saying_which(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("*", r"\*")):
        parse_labels(text)


def test_parse_labels_refuses_a_key_prefix_over_253_characters() -> None:
    with pytest.raises(ValueError, match="not a label"):
        parse_labels("a" * 254 + "/app=web")


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], ()),
        (["10.0.0.0/8", "192.168.7.0/24"], ("10.0.0.0/8", "192.168.7.0/24")),
        (["2001:DB8::/32"], ("2001:db8::/32",)),
        (["203.0.113.7"], ("203.0.113.7/32",)),
    ],
)
def test_parse_cidrs_normalises_good_networks(items: list[str], expected: tuple[str, ...]) -> None:
    assert parse_cidrs(items) == expected


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("10.0.0.1/8", "10.0.0.1/8 has host bits set"),
        ("10.0.0.0/33", "'10.0.0.0/33' does not appear to be an IPv4 or IPv6 network"),
        ("intranet", "'intranet' does not appear to be an IPv4 or IPv6 network"),
        ("", "'' does not appear to be an IPv4 or IPv6 network"),
    ],
)
def test_parse_cidrs_refuses_bad_networks_saying_which(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        parse_cidrs(["10.0.0.0/8", item])


# --- 5. The portal refuses bad KUBE_* settings at start-up ----------------------------------

GOOD_KUBE_ENV = {
    "SPAWNER": "kubernetes",
    "KUBE_NAMESPACE": "jupyter-sessions",
    "KUBE_PUBLIC_URL": "https://jupyter.example.org",
    "KUBE_AUTH_URL": "http://portal-web.jupyter-portal.svc.cluster.local/auth/session/",
    "KUBE_SCRATCH_CLAIM": "scratch",
    "KUBE_HOME_SIZE": "10Gi",
    "KUBE_EGRESS_ALLOW_CIDRS": "10.20.0.0/16, 2001:db8::/32",
    "KUBE_ROUTER_NAMESPACE": "ingress-nginx",
    "KUBE_ROUTER_POD_LABELS": (
        "app.kubernetes.io/name=ingress-nginx,app.kubernetes.io/component=controller"
    ),
}
BAD_KUBE_VALUES: dict[str, tuple[str, str, str]] = {
    # id: variable, value, what the message says besides the variable's name
    "namespace-not-a-label": ("KUBE_NAMESPACE", "Bad_Name", "'Bad_Name'"),
    "scratch-claim-not-a-label": ("KUBE_SCRATCH_CLAIM", "Scratch Claim", "'Scratch Claim'"),
    "home-size-not-a-quantity": ("KUBE_HOME_SIZE", "lots", "'lots'"),
    "home-size-zero": ("KUBE_HOME_SIZE", "0", "positive"),
    "cidr-with-host-bits": ("KUBE_EGRESS_ALLOW_CIDRS", "10.0.0.1/8", "has host bits set"),
    "cidr-not-a-network": ("KUBE_EGRESS_ALLOW_CIDRS", "10.0.0.0/8,intranet", "'intranet'"),
    "router-label-without-value": ("KUBE_ROUTER_POD_LABELS", "novalue", "'novalue'"),
    "public-url-not-http": ("KUBE_PUBLIC_URL", "ftp://x", "'ftp://x'"),
    "auth-url-not-http": ("KUBE_AUTH_URL", "portal-web/auth/session/", "http(s) URL"),
    # The cluster would refuse these at every launch (or select nothing).
    "namespace-with-a-trailing-newline": ("KUBE_NAMESPACE", "jupyter-sessions\n", "a DNS label"),
    "router-namespace-not-a-name": ("KUBE_ROUTER_NAMESPACE", "Ingress NGINX", "a DNS label"),
    "public-url-with-an-ip-address": ("KUBE_PUBLIC_URL", "https://203.0.113.7", "IP address"),
    "ingress-class-not-a-name": ("KUBE_INGRESS_CLASS", "NGINX Class", "object name"),
}

# Runs the settings module once per environment in one process, then the check the sessions
# app runs when it is ready: each run is a start-up with that environment, and the process
# imports the kubernetes client (two seconds) only once.
_SETTINGS_PROBE = """
import json, os, runpy, sys, types
from django.core.exceptions import ImproperlyConfigured
from sessions_app.spawners.kube_settings import check_kube_settings

base = dict(os.environ)
results = []
for overrides in json.loads(sys.argv[1]):
    os.environ.clear()
    os.environ.update({**base, **overrides})
    try:
        values = runpy.run_path("portal/settings.py")
        if values["SPAWNER"] == "kubernetes":
            check_kube_settings(types.SimpleNamespace(**values))
    except ImproperlyConfigured as exc:
        results.append(str(exc))
    else:
        results.append("")
sys.stdout.write(json.dumps(results))
"""


def _clean_environment(var_dir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("KUBE_")
        and key not in ("SPAWNER", "DJANGO_SETTINGS_MODULE", "PORTAL_VAR_DIR")
    }
    return {**env, "PORTAL_VAR_DIR": str(var_dir)}


@dataclass(frozen=True)
class StartUps:
    """What starting the portal said, with each environment."""

    # The settings' start-up error by case id ("" when it started).
    messages: dict[str, str]
    # ``manage.py check``: return code, stdout and stderr, with good and with bad settings.
    good_check: tuple[int, str, str]
    bad_check: tuple[int, str, str]


@pytest.fixture(scope="module")
def start_ups(tmp_path_factory: pytest.TempPathFactory) -> StartUps:
    # The three processes run at once: each spends about two seconds importing.
    cases: dict[str, dict[str, str]] = {"good": GOOD_KUBE_ENV}
    for case_id, (variable, value, *_) in BAD_KUBE_VALUES.items():
        cases[case_id] = {**GOOD_KUBE_ENV, variable: value}
    env = _clean_environment(tmp_path_factory.mktemp("var"))

    def run(command: list[str], overrides: dict[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, *command],
            cwd=settings.BASE_DIR,
            env={**env, **overrides},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    processes = [
        run(["-c", _SETTINGS_PROBE, json.dumps(list(cases.values()))], {}),
        run(["manage.py", "check"], GOOD_KUBE_ENV),
        run(["manage.py", "check"], {**GOOD_KUBE_ENV, "KUBE_NAMESPACE": "Bad_Name"}),
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        results.append((process.returncode, out, err))
    probe_code, probe_out, probe_err = results[0]
    assert probe_code == 0, probe_err
    return StartUps(
        messages=dict(zip(cases, json.loads(probe_out), strict=True)),
        good_check=results[1],
        bad_check=results[2],
    )


def test_good_kube_settings_start(start_ups: StartUps) -> None:
    assert start_ups.messages["good"] == ""


@pytest.mark.parametrize("case_id", BAD_KUBE_VALUES)
def test_a_bad_kube_setting_stops_the_start_naming_the_variable(
    start_ups: StartUps, case_id: str
) -> None:
    variable, _, detail = BAD_KUBE_VALUES[case_id]

    assert start_ups.messages[case_id].startswith(variable)
    assert detail in start_ups.messages[case_id]


def test_manage_py_starts_with_good_kube_settings_and_refuses_a_bad_one(
    start_ups: StartUps,
) -> None:
    # The real start-up, end to end: Django's command line with the environment as deployed.
    good_code, good_out, good_err = start_ups.good_check
    bad_code, _, bad_err = start_ups.bad_check

    assert good_code == 0, good_err
    assert "no issues" in good_out
    assert bad_code != 0
    assert "ImproperlyConfigured: KUBE_NAMESPACE must be a Kubernetes name" in bad_err
