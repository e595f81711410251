"""Each check in ``checks.py`` fails on a broken rendering: given the base, when one thing is
broken, then the check names it (and the base itself passes, see ``test_manifests.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from portal.env import env_secret
from tests.deploy import checks
from tests.deploy.rendering import REPO, render, secret_example

Obj = dict[str, Any]


@pytest.fixture
def base() -> checks.Manifests:
    return checks.Manifests(render("base"), external_secrets=secret_example())


def find(m: checks.Manifests, kind: str, name: str, namespace: str = "jupyter-portal") -> Obj:
    obj = m.find(kind, "" if kind in checks.CLUSTER_SCOPED else namespace, name)
    assert obj is not None, f"{kind} {namespace}/{name} is not in the base"
    return obj


def pod(m: checks.Manifests, name: str) -> Obj:
    kind = "Job" if name == "portal-migrate" else "Deployment"
    spec: Obj = find(m, kind, name)["spec"]["template"]["spec"]
    return spec


def container(m: checks.Manifests, name: str) -> Obj:
    first: Obj = pod(m, name)["containers"][0]
    return first


def reported(problems: list[str], *words: str) -> bool:
    return any(all(word in problem for word in words) for problem in problems)


# --- names and labels ---------------------------------------------------------------------------


def test_names_check_reports_an_invalid_service_name(base: checks.Manifests) -> None:
    find(base, "Service", "portal-web")["metadata"]["name"] = "Portal_Web"

    assert reported(checks.check_names(base), "Portal_Web", "DNS-1035")


def test_names_check_reports_a_namespace_on_a_cluster_scoped_object(base: checks.Manifests) -> None:
    find(base, "PriorityClass", "jupyter-session-small")["metadata"]["namespace"] = "x"

    assert reported(checks.check_names(base), "jupyter-session-small", "cluster-scoped")


def test_names_check_reports_a_bad_container_and_port_name(base: checks.Manifests) -> None:
    container(base, "portal-web")["name"] = "Web"
    container(base, "portal-web")["ports"][0]["name"] = "much-too-long-port-name"

    problems = checks.check_names(base)

    assert reported(problems, "container name 'Web'")
    assert reported(problems, "much-too-long-port-name")


def test_labels_check_reports_invalid_values_and_keys(base: checks.Manifests) -> None:
    labels = find(base, "Deployment", "portal-worker-spawn")["metadata"]["labels"]
    labels["app.kubernetes.io/version"] = "not a label value"
    labels["-bad-key"] = "x"

    problems = checks.check_labels(base)

    assert reported(problems, "'not a label value'")
    assert reported(problems, "'-bad-key'")


# --- pods ---------------------------------------------------------------------------------------


def test_resources_check_reports_a_missing_limit(base: checks.Manifests) -> None:
    del container(base, "portal-worker-spawn")["resources"]["limits"]["memory"]

    assert reported(
        checks.check_resources(base), "portal-worker-spawn", "memory needs a request and a limit"
    )


def test_resources_check_reports_a_request_above_the_limit(base: checks.Manifests) -> None:
    container(base, "portal-web")["resources"]["requests"]["cpu"] = "1500m"

    assert reported(checks.check_resources(base), "portal-web", "above the limit")


def test_resources_check_reports_a_quantity_that_does_not_parse(base: checks.Manifests) -> None:
    container(base, "portal-beat")["resources"]["limits"]["memory"] = "1 GB"

    assert reported(checks.check_resources(base), "portal-beat", "'1 GB' is not a quantity")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("allowPrivilegeEscalation", True, "allowPrivilegeEscalation"),
        ("capabilities", {"drop": ["NET_RAW"]}, "drop ALL"),
        ("readOnlyRootFilesystem", False, "writable"),
        ("privileged", True, "privileged"),
    ],
)
def test_security_check_reports_a_weakened_container(
    base: checks.Manifests, key: str, value: object, words: str
) -> None:
    container(base, "portal-worker-spawn")["securityContext"][key] = value

    assert reported(checks.check_security_context(base), "portal-worker-spawn", words)


def test_security_check_reports_root_and_no_seccomp(base: checks.Manifests) -> None:
    spec = pod(base, "portal-migrate")
    del spec["securityContext"]["runAsNonRoot"]
    del container(base, "portal-migrate")["securityContext"]["runAsNonRoot"]
    del spec["securityContext"]["seccompProfile"]

    problems = checks.check_security_context(base)

    assert reported(problems, "portal-migrate", "runAsNonRoot")
    assert reported(problems, "portal-migrate", "seccompProfile")


def test_security_check_accepts_seccomp_on_the_container(base: checks.Manifests) -> None:
    spec = pod(base, "portal-beat")
    profile = spec["securityContext"].pop("seccompProfile")
    spec["containers"][0]["securityContext"]["seccompProfile"] = profile

    assert checks.check_security_context(base) == []


def test_web_check_reports_a_single_replica(base: checks.Manifests) -> None:
    find(base, "Deployment", "portal-web")["spec"]["replicas"] = 1

    assert reported(checks.check_web(base), "portal-web", "at least 2")


def test_web_check_reports_missing_probes(base: checks.Manifests) -> None:
    web = container(base, "portal-web")
    del web["livenessProbe"]
    web["readinessProbe"]["httpGet"]["path"] = "/healthz"
    web["startupProbe"]["httpGet"]["port"] = "metrics"

    problems = checks.check_web(base)

    assert reported(problems, "liveness probe on /healthz")
    assert reported(problems, "readiness probe on /readyz")
    assert reported(problems, "startupProbe port 'metrics'")


def test_beat_check_reports_two_replicas_and_rolling_updates(base: checks.Manifests) -> None:
    beat = find(base, "Deployment", "portal-beat")
    beat["spec"]["replicas"] = 2
    beat["spec"]["strategy"] = {"type": "RollingUpdate"}

    problems = checks.check_single_beat(base)

    assert reported(problems, "2 replicas")
    assert reported(problems, "Recreate")


def test_queue_check_reports_a_queue_without_worker_and_a_worker_without_queue(
    base: checks.Manifests,
) -> None:
    args = container(base, "portal-worker-storage")["args"]
    args.remove("--queues=storage")
    container(base, "portal-worker-spawn")["args"].append("-Q")
    container(base, "portal-worker-spawn")["args"].append("spawn,bulk")

    problems = checks.check_worker_queues(base, {"control", "spawn", "storage"})

    assert reported(problems, "portal-worker-storage", "names no queue")
    assert reported(problems, "no worker consumes the queue 'storage'")
    assert reported(problems, "portal-worker-spawn", "'bulk' is not in the settings")
    assert not reported(problems, "'spawn'")


def test_beat_check_reports_a_worker_that_also_runs_beat(base: checks.Manifests) -> None:
    container(base, "portal-worker-spawn")["args"].append("--beat")

    assert reported(checks.check_single_beat(base), "portal-worker-spawn", "beat")


# --- access -------------------------------------------------------------------------------------


def test_rbac_check_reports_secrets_wildcards_and_subresources(base: checks.Manifests) -> None:
    role = find(base, "Role", "portal-spawner", "jupyter-sessions")
    role["rules"].append({"apiGroups": [""], "resources": ["secrets", "pods/exec"], "verbs": ["*"]})

    problems = checks.check_rbac(base)

    assert reported(problems, "Secrets")
    assert reported(problems, "'*' in verbs")
    assert reported(problems, "pods/exec")


def test_rbac_check_reports_rights_outside_the_sessions_namespace(base: checks.Manifests) -> None:
    binding = find(base, "RoleBinding", "portal-spawner", "jupyter-sessions")
    binding["metadata"]["namespace"] = "jupyter-portal"
    base.objects.append(
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "x"}, "roleRef": {}, "subjects": []}
    )  # fmt: skip

    problems = checks.check_rbac(base)

    assert reported(problems, "RoleBinding jupyter-portal/portal-spawner", "outside")
    assert reported(problems, "ClusterRoleBinding x", "no cluster-wide rights")


def test_rbac_check_reports_a_token_mounted_without_rights(base: checks.Manifests) -> None:
    pod(base, "portal-web")["automountServiceAccountToken"] = True

    assert reported(checks.check_rbac(base), "portal-web", "API token")


def test_references_check_reports_a_missing_secret_and_key(base: checks.Manifests) -> None:
    volumes = pod(base, "portal-beat")["volumes"]
    volumes[0]["secret"]["secretName"] = "portal-secret"
    pod(base, "portal-web")["volumes"][0]["secret"]["items"].append({"key": "nope", "path": "nope"})

    problems = checks.check_references(base)

    assert reported(problems, "portal-beat", "Secret jupyter-portal/portal-secret does not exist")
    assert reported(problems, "portal-web", "no key 'nope'")


def test_references_check_reports_a_missing_config_map_and_claim(base: checks.Manifests) -> None:
    container(base, "portal-worker-spawn")["envFrom"][0]["configMapRef"]["name"] = "portal-config"
    scratch = next(v for v in pod(base, "portal-worker-spawn")["volumes"] if v["name"] == "scratch")
    scratch["persistentVolumeClaim"]["claimName"] = "scratch-typo"

    problems = checks.check_references(base)

    assert reported(problems, "ConfigMap jupyter-portal/portal-config does not exist")
    assert reported(problems, "PersistentVolumeClaim jupyter-portal/scratch-typo")


def test_file_variables_check_reports_a_path_outside_the_mounts(base: checks.Manifests) -> None:
    env = container(base, "portal-web")["env"]
    next(e for e in env if e["name"] == "SECRET_KEY_FILE")["value"] = "/run/secrets/secret-key"

    assert reported(checks.check_file_variables(base), "SECRET_KEY_FILE", "in no mounted volume")


def test_file_variables_check_reports_a_file_the_volume_lacks(base: checks.Manifests) -> None:
    # The beat's volume projects only two keys of the Secret.
    container(base, "portal-beat")["env"].append(
        {"name": "DATABASE_URL_FILE", "value": "/etc/portal/secrets/database-url"}
    )

    assert reported(checks.check_file_variables(base), "portal-beat", "no file 'database-url'")


def test_selectors_check_reports_selectors_that_select_nothing(base: checks.Manifests) -> None:
    find(base, "Service", "portal-web")["spec"]["selector"]["app.kubernetes.io/component"] = "wbe"
    pdb = find(base, "PodDisruptionBudget", "portal-worker-spawn")
    pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "workers"
    policy = find(base, "NetworkPolicy", "portal-beat")
    policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] = "portal"

    problems = checks.check_selectors(base)

    assert reported(problems, "Service jupyter-portal/portal-web", "matches no pod template")
    assert reported(problems, "PodDisruptionBudget jupyter-portal/portal-worker-spawn")
    assert reported(problems, "NetworkPolicy jupyter-portal/portal-beat")


def test_selectors_check_reports_a_target_port_the_pods_lack(base: checks.Manifests) -> None:
    find(base, "Service", "portal-web")["spec"]["ports"][0]["targetPort"] = 8080

    assert reported(checks.check_selectors(base), "targetPort 8080")


def test_budget_check_reports_a_budget_that_blocks_drains(base: checks.Manifests) -> None:
    find(base, "Deployment", "portal-worker-spawn")["spec"]["replicas"] = 1

    assert reported(checks.check_disruption_budgets(base), "portal-worker-spawn", "never evict")


def test_namespace_check_reports_a_missing_profile_and_namespace(base: checks.Manifests) -> None:
    namespace = find(base, "Namespace", "jupyter-sessions")
    namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "baseline"
    find(base, "Service", "portal-web")["metadata"]["namespace"] = "default"

    problems = checks.check_namespaces(base)

    assert reported(problems, "jupyter-sessions", "restricted")
    assert reported(problems, "namespace default is not created")


# --- storage and settings -----------------------------------------------------------------------


def test_scratch_check_reports_two_different_shares(base: checks.Manifests) -> None:
    find(base, "PersistentVolume", "jupyter-scratch-portal")["spec"]["nfs"]["path"] = "/other"

    assert reported(checks.check_scratch(base), "different shares")


def test_scratch_check_accepts_two_csi_volumes_of_one_share(base: checks.Manifests) -> None:
    # Given CephFS-like static volumes: same driver and path, a handle of their own each.
    for name in ("jupyter-scratch-sessions", "jupyter-scratch-portal"):
        spec = find(base, "PersistentVolume", name)["spec"]
        del spec["nfs"]
        spec["csi"] = {
            "driver": "cephfs.csi.ceph.com",
            "volumeHandle": name,
            "volumeAttributes": {"staticVolume": "true", "rootPath": "/volumes/scratch"},
        }

    assert checks.check_scratch(base) == []


def test_scratch_check_reports_a_volume_bound_to_another_claim(base: checks.Manifests) -> None:
    pv = find(base, "PersistentVolume", "jupyter-scratch-sessions")
    pv["spec"]["claimRef"]["namespace"] = "jupyter-portal"
    claim = find(base, "PersistentVolumeClaim", "scratch")
    claim["spec"]["resources"]["requests"]["storage"] = "20Ti"

    problems = checks.check_scratch(base)

    assert reported(problems, "jupyter-scratch-sessions", "claimRef")
    assert reported(problems, "request above")


def test_scratch_check_reports_a_worker_mount_away_from_the_root(base: checks.Manifests) -> None:
    mounts = container(base, "portal-worker-spawn")["volumeMounts"]
    next(m for m in mounts if m["name"] == "scratch")["mountPath"] = "/scratch"

    assert reported(
        checks.check_scratch(base), "portal-worker-spawn", "does not mount the scratch claim"
    )


def config(m: checks.Manifests) -> dict[str, str]:
    name = container(m, "portal-web")["envFrom"][0]["configMapRef"]["name"]
    data: dict[str, str] = find(m, "ConfigMap", name)["data"]
    return data


def test_settings_check_reports_a_host_missing_from_the_settings(base: checks.Manifests) -> None:
    config(base)["ALLOWED_HOSTS"] = "portal-web.jupyter-portal.svc.cluster.local"
    config(base)["KUBE_PUBLIC_URL"] = "https://elsewhere.example.org"

    problems = checks.check_settings_agree(base)

    assert reported(problems, "jupyter.example.org is not in ALLOWED_HOSTS")
    assert reported(problems, "KUBE_PUBLIC_URL")


def test_settings_check_reports_a_probe_host_the_portal_refuses(base: checks.Manifests) -> None:
    # The kubelet's probe would get 400 (DisallowedHost), and the pod would never be ready.
    probe = container(base, "portal-web")["readinessProbe"]["httpGet"]
    probe["httpHeaders"][0]["value"] = "portal-web"

    assert reported(checks.check_settings_agree(base), "readinessProbe Host portal-web")


def test_settings_check_reports_an_auth_url_to_no_service(base: checks.Manifests) -> None:
    config(base)["KUBE_AUTH_URL"] = "http://portal.jupyter-portal.svc.cluster.local/auth/session/"
    config(base)["ALLOWED_HOSTS"] += ",portal.jupyter-portal.svc.cluster.local"

    assert reported(checks.check_settings_agree(base), "names no Service")


def test_settings_check_reports_another_router_or_sessions_namespace(
    base: checks.Manifests,
) -> None:
    config(base)["KUBE_ROUTER_NAMESPACE"] = "traefik"
    config(base)["KUBE_NAMESPACE"] = "sessions"

    problems = checks.check_settings_agree(base)

    assert reported(problems, "ingress controller", "traefik")
    assert reported(problems, "KUBE_NAMESPACE sessions")


def test_settings_variables_are_read_from_the_settings_file(tmp_path: Path) -> None:
    names = checks.settings_variables(REPO / "portal" / "settings.py")

    assert {"SECRET_KEY", "SECRET_KEY_FILE", "DATABASE_URL_FILE", "ALLOWED_HOSTS"} <= names
    assert "DEBUG_FILE" not in names  # only secrets have a file variant


def test_env_secret_reads_the_file_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The assumption settings_variables() makes about env_secret (portal/env.py).
    (tmp_path / "value").write_text("from-a-file\n")
    monkeypatch.delenv("DEPLOY_CHECK_SECRET", raising=False)
    monkeypatch.setitem(os.environ, "DEPLOY_CHECK_SECRET_FILE", str(tmp_path / "value"))

    assert env_secret("DEPLOY_CHECK_SECRET") == "from-a-file"


def test_env_names_check_reports_a_variable_the_settings_never_read(
    base: checks.Manifests,
) -> None:
    container(base, "portal-web")["env"].append({"name": "SECRETKEY_FILE", "value": "/x"})
    config(base)["KUBE_NAMESPCE"] = "jupyter-sessions"
    known = checks.settings_variables(REPO / "portal" / "settings.py")

    problems = checks.check_env_names_known(base, known)

    assert reported(problems, "SECRETKEY_FILE", "portal-web")
    assert reported(problems, "KUBE_NAMESPCE")


def test_images_check_reports_unpinned_images(base: checks.Manifests) -> None:
    # The base names its image logically ("jupyter-portal"); overlays must pin it.
    assert reported(checks.check_images_pinned(base), "names no registry")
    container(base, "portal-web")["image"] = "registry.example.org/jupyter/portal:latest"
    pinned = "registry.example.org/jupyter/portal@sha256:ab"
    container(base, "portal-worker-spawn")["image"] = pinned

    problems = checks.check_images_pinned(base)

    assert reported(problems, "portal-web", "not pinned")
    assert not reported(problems, "portal-worker-spawn")


# --- the forward-auth endpoints stay internal ---------------------------------------------------


def test_forward_auth_check_reports_auth_routed_to_the_public(base: checks.Manifests) -> None:
    # Without the refusing Ingress, the site's "/" would route /auth/ to the portal.
    base.objects.remove(find(base, "Ingress", "portal-forward-auth"))

    assert reported(checks.check_forward_auth_not_public(base), "portal", "/auth/")


def test_forward_auth_check_reports_a_refusal_that_admits_clients(base: checks.Manifests) -> None:
    annotations = find(base, "Ingress", "portal-forward-auth")["metadata"]["annotations"]
    annotations["nginx.ingress.kubernetes.io/whitelist-source-range"] = "0.0.0.0/0"

    assert reported(checks.check_forward_auth_not_public(base), "/auth/")
