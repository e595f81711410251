"""An environment's Kubernetes extras (tolerations, node selector, extended resources, pull
secrets, data shares, variables): on the pod the spawner sends, and checked in the admin with the
builders' schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db.models import Field
from kubernetes.client import ApiClient

from sessions_app.models import Environment
from sessions_app.spawners.kube_extras import FIELDS, extras_problems
from sessions_app.spawners.kube_objects import KubeConfig, make_pod
from tests.kube.apiserver import FakeApiServer
from tests.kube_checks import SUPPORTED_KUBERNETES_VERSIONS, object_problems, schema_problems
from tests.sessions_app.test_spawner_kube import NS, kube_request, make_spawner, no_progress

# docs/deployment.md's example (test_the_docs_show_the_example): one GPU on a GPU node pool
# and a read-only data share.
GPU_AND_DATA: dict[str, Any] = {
    "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "extended_resources": {"nvidia.com/gpu": 1},
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
    # Extended resources: in the limits and the requests alike, beside the portal's own.
    [plain] = _pod(tmp_path, {})["spec"]["containers"]
    for section in ("limits", "requests"):
        expected = {**plain["resources"][section], "nvidia.com/gpu": "1"}
        assert server["resources"][section] == expected


def test_only_the_server_gets_the_extended_resources(tmp_path: Path) -> None:
    spec = _pod(tmp_path, GPU_AND_DATA)["spec"]

    for container in spec.get("initContainers", []):
        assert "nvidia.com/gpu" not in container["resources"]["limits"]
        assert "nvidia.com/gpu" not in container["resources"]["requests"]


def test_a_start_sends_them_to_the_cluster(kube_server: FakeApiServer, tmp_path: Path) -> None:
    spawner = make_spawner(kube_server)
    request = kube_request(
        tmp_path, backend_settings={"image": "example.org/session:1", "kube": GPU_AND_DATA}
    )

    state = spawner.start(request, no_progress)

    pod = kube_server.get("pods", NS, state["pod"])
    assert pod is not None
    assert pod["spec"]["tolerations"] == GPU_AND_DATA["tolerations"]
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_the_example_is_right() -> None:
    assert extras_problems(GPU_AND_DATA) == {}


def test_the_docs_show_the_example() -> None:
    """docs/deployment.md's table, field by field (by the admin's labels), is GPU_AND_DATA."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "deployment.md").read_text()
    table = docs.split("| field | value |\n| --- | --- |\n", 1)[1].split("\n\n", 1)[0]
    fields = [(key, Environment._meta.get_field(field)) for key, field in FIELDS.items()]
    labels = {str(field.verbose_name): key for key, field in fields if isinstance(field, Field)}
    shown = {}
    for row in table.splitlines():
        label, value = (cell.strip() for cell in row.strip("|").split("|", 1))
        shown[labels[label]] = json.loads(value.strip("`"))

    assert shown == GPU_AND_DATA


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
        ("kube_extended_resources", ["nvidia.com/gpu"], "JSON object of whole counts"),
        ("kube_extended_resources", {"nvidia.com/gpu": "1"}, "JSON object of whole counts"),
        ("kube_extended_resources", {"nvidia.com/gpu": 1.5}, "JSON object of whole counts"),
        ("kube_extended_resources", {"nvidia.com/gpu": True}, "JSON object of whole counts"),
        ("kube_extended_resources", {"nvidia.com/gpu": 0}, "from 1 to 16, not 0"),
        ("kube_extended_resources", {"nvidia.com/gpu": -1}, "from 1 to 16, not -1"),
        ("kube_extended_resources", {"nvidia.com/gpu": 17}, "from 1 to 16, not 17"),
        ("kube_extended_resources", {"cpu": 1}, "'cpu' is not an extended resource"),
        ("kube_extended_resources", {"memory": 1}, "not an extended resource"),
        ("kube_extended_resources", {"ephemeral-storage": 1}, "not an extended resource"),
        ("kube_extended_resources", {"hugepages-2Mi": 1}, "not an extended resource"),
        ("kube_extended_resources", {"kubernetes.io/gpu": 1}, "not an extended resource"),
        ("kube_extended_resources", {"gpu.kubernetes.io/x": 1}, "not an extended resource"),
        ("kube_extended_resources", {"requests.example.com/x": 1}, "not an extended resource"),
        ("kube_extended_resources", {"Example.com/gpu": 1}, "not an extended resource"),
        ("kube_extended_resources", {"example.com/": 1}, "not an extended resource"),
        ("kube_extended_resources", {"example.com/a/b": 1}, "not an extended resource"),
        ("kube_extended_resources", {"example.com/-gpu": 1}, "not an extended resource"),
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
