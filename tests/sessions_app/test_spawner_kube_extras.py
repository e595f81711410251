"""An environment's Kubernetes extras (tolerations, node selector, pull secrets, data shares,
variables): on the pod the spawner sends, and checked in the admin with the builders' schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from kubernetes.client import ApiClient

from sessions_app.models import Environment
from sessions_app.spawners.kube_extras import extras_problems
from sessions_app.spawners.kube_objects import KubeConfig, make_pod
from tests.kube.apiserver import FakeApiServer
from tests.kube_checks import SUPPORTED_KUBERNETES_VERSIONS, object_problems, schema_problems
from tests.sessions_app.test_spawner_kube import NS, kube_request, make_spawner, no_progress

# docs/deployment.md's example: a GPU node pool and a read-only data share.
GPU_AND_DATA: dict[str, Any] = {
    "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "image_pull_secrets": ["registry-credentials"],
    "volumes": [
        {"name": "era5", "persistentVolumeClaim": {"claimName": "era5-archive", "readOnly": True}}
    ],
    "volume_mounts": [{"name": "era5", "mountPath": "/data/era5", "readOnly": True}],
    "env": {"ERA5_ROOT": "/data/era5"},
}


def _pod(tmp_path: Path, extras: dict[str, Any]) -> dict[str, Any]:
    request = kube_request(
        tmp_path, backend_settings={"image": "example.org/session:1", "kube": extras}
    )
    return dict(ApiClient().sanitize_for_serialization(make_pod(KubeConfig(), request, "t")))


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES_VERSIONS)
def test_the_pod_with_extras_passes_every_supported_schema(tmp_path: Path, version: str) -> None:
    pod = _pod(tmp_path, GPU_AND_DATA)

    assert schema_problems(pod, version) == []
    assert object_problems(pod) == []


def test_the_extras_are_on_the_pod(tmp_path: Path) -> None:
    spec = _pod(tmp_path, GPU_AND_DATA)["spec"]
    [server] = spec["containers"]

    assert spec["nodeSelector"] == GPU_AND_DATA["node_selector"]
    assert spec["tolerations"] == GPU_AND_DATA["tolerations"]
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert GPU_AND_DATA["volumes"][0] in spec["volumes"]
    assert {"name": "home", "mountPath": "/home/jovyan"} in server["volumeMounts"]
    assert GPU_AND_DATA["volume_mounts"][0] in server["volumeMounts"]
    assert {"name": "ERA5_ROOT", "value": "/data/era5"} in server["env"]


def test_a_start_sends_them_to_the_cluster(kube_server: FakeApiServer, tmp_path: Path) -> None:
    spawner = make_spawner(kube_server)
    request = kube_request(
        tmp_path, backend_settings={"image": "example.org/session:1", "kube": GPU_AND_DATA}
    )

    state = spawner.start(request, no_progress)

    pod = kube_server.get("pods", NS, state["pod"])
    assert pod is not None
    assert pod["spec"]["tolerations"] == GPU_AND_DATA["tolerations"]


def test_the_example_is_right() -> None:
    assert extras_problems(GPU_AND_DATA) == {}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kube_tolerations", [{"key": "gpu", "efect": "NoSchedule"}], "efect"),
        ("kube_tolerations", {"key": "gpu"}, "JSON list of objects"),
        ("kube_node_selector", {"pool": "two words"}, "not a label value"),
        ("kube_image_pull_secrets", ["Not A Name"], "not a Secret name"),
        ("kube_volumes", [{"name": "root", "hostPath": {"path": "/"}}], "hostPath is not allowed"),
        ("kube_volumes", [{"name": "home", "emptyDir": {}}], "name of its own"),
        ("kube_env", {"JUPYTER_TOKEN": "known"}, "set by the portal"),
        ("kube_env", {"N": 1}, "JSON object of strings"),
    ],
)
def test_the_admin_refuses_bad_extras_under_their_field(
    environment: Environment, field: str, value: Any, message: str
) -> None:
    setattr(environment, field, value)

    with pytest.raises(ValidationError) as caught:
        environment.full_clean()

    assert message in " ".join(caught.value.message_dict[field])


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ({"name": "era5", "mountPath": "/data/era5"}, "must be read-only"),
        ({"name": "era5", "mountPath": "/home", "readOnly": True}, "would hide the home"),
        ({"name": "era5", "mountPath": "/home/jovyan/scratch/x", "readOnly": True}, "outside"),
        ({"name": "other", "mountPath": "/data", "readOnly": True}, "not one of the extra"),
        ({"name": "era5", "mountPath": "/data", "readOnly": True, "bogus": 1}, "bogus"),
    ],
)
def test_mounts_are_read_only_and_hide_nothing_of_the_portal(
    environment: Environment, mount: dict[str, Any], message: str
) -> None:
    environment.kube_volumes = GPU_AND_DATA["volumes"]
    environment.kube_volume_mounts = [mount]

    with pytest.raises(ValidationError) as caught:
        environment.full_clean()

    assert message in " ".join(caught.value.message_dict["kube_volume_mounts"])


def test_good_extras_are_saved(environment: Environment) -> None:
    for key, value in GPU_AND_DATA.items():
        setattr(environment, f"kube_{key}", value)

    environment.full_clean()
    environment.save()

    environment.refresh_from_db()
    assert environment.kube_extras() == GPU_AND_DATA
