"""The base and every overlay render, validate against each supported Kubernetes version's
schemas, and pass the checks that schemas miss (``checks.py``)."""

from __future__ import annotations

import pytest
from django.conf import settings
from kubernetes_validate import SchemaNotFoundError, ValidationError, validate

from tests.deploy import checks
from tests.deploy.rendering import REPO, kustomizations, overlay_names, render, secret_example
from tests.deploy.versions import SUPPORTED_KUBERNETES_VERSIONS

KUSTOMIZATIONS = list(kustomizations())
SETTINGS = REPO / "portal" / "settings.py"


def manifests(name: str) -> checks.Manifests:
    return checks.Manifests(render(name), external_secrets=secret_example())


def test_there_are_a_staging_and_a_production_overlay() -> None:
    assert {"staging", "production"} <= set(overlay_names())


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kustomization_renders_the_portal(name: str) -> None:
    kinds = {obj["kind"] for obj in render(name)}

    assert {"Namespace", "Deployment", "Job", "Service", "Ingress", "ConfigMap"} <= kinds
    assert {"Role", "RoleBinding", "NetworkPolicy", "PodDisruptionBudget"} <= kinds
    assert {"PersistentVolume", "PersistentVolumeClaim", "PriorityClass"} <= kinds
    assert "Secret" not in kinds, "the operator creates the Secret; apply -k must not overwrite it"


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_object_is_valid_for_the_kubernetes_version(name: str, version: str) -> None:
    problems = []
    for obj in [*render(name), *secret_example()]:
        label = f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        try:
            validate(obj, version, strict=True)
        except ValidationError as exc:
            where = "/".join(str(part) for part in exc.path)
            problems.append(f"{label}: {where}: {exc.message}")
        except SchemaNotFoundError as exc:
            problems.append(f"{label}: {exc.message}")

    assert problems == []


@pytest.mark.parametrize("check", list(checks.CHECKS))
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kustomization_passes_check(name: str, check: str) -> None:
    assert checks.CHECKS[check](manifests(name)) == []


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_variable_set_is_read_by_the_settings(name: str) -> None:
    known = checks.settings_variables(SETTINGS)

    assert checks.check_env_names_known(manifests(name), known) == []


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_celery_queue_has_a_worker(name: str) -> None:
    queues = {queue.name for queue in settings.CELERY_TASK_QUEUES}

    assert checks.check_worker_queues(manifests(name), queues) == []


@pytest.mark.parametrize("name", overlay_names())
def test_overlay_pins_its_images(name: str) -> None:
    assert checks.check_images_pinned(manifests(name)) == []


@pytest.mark.parametrize("name", overlay_names())
def test_overlay_routes_one_host_and_its_settings_name_it(name: str) -> None:
    # Given the base's placeholder host, when an overlay renders, its Ingress says which host.
    hosts = {
        rule["host"]
        for obj in render(name)
        if obj["kind"] == "Ingress"
        for rule in obj["spec"]["rules"]
    }

    assert len(hosts) == 1
    assert checks.check_settings_agree(manifests(name)) == []
