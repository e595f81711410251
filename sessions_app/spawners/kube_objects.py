"""The Kubernetes objects of one session, built by pure functions.

Every builder takes plain values (a :class:`KubeConfig`, a :class:`~.base.SpawnRequest`, names)
and returns a model of the official client, so it can be validated offline, compared in tests
and sent as it is. Nothing here talks to a cluster; :mod:`.kubernetes` does.

Per session: a Pod (the server), a Service in front of it and an Ingress that routes
``/user/<name>/`` on the portal's host to it, guarded by the portal's forward-auth endpoint.
Per user: the private home's PersistentVolumeClaim, kept across sessions. Per namespace: one
NetworkPolicy for every session pod (:mod:`.kube_network`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kubernetes.client import (
    V1Capabilities,
    V1Container,
    V1ContainerPort,
    V1EmptyDirVolumeSource,
    V1EnvVar,
    V1HTTPGetAction,
    V1HTTPIngressPath,
    V1HTTPIngressRuleValue,
    V1Ingress,
    V1IngressBackend,
    V1IngressRule,
    V1IngressServiceBackend,
    V1IngressSpec,
    V1ObjectMeta,
    V1OwnerReference,
    V1PersistentVolumeClaim,
    V1PersistentVolumeClaimSpec,
    V1PersistentVolumeClaimVolumeSource,
    V1Pod,
    V1PodSecurityContext,
    V1PodSpec,
    V1Probe,
    V1ResourceRequirements,
    V1SeccompProfile,
    V1SecurityContext,
    V1Service,
    V1ServiceBackendPort,
    V1ServicePort,
    V1ServiceSpec,
    V1Volume,
    V1VolumeMount,
    V1VolumeResourceRequirements,
)

from sessions_app.spawners.base import SpawnRequest
from sessions_app.spawners.egress import METADATA_CIDRS
from sessions_app.spawners.kube_extras import apply_extras, extras_of

# Made in :mod:`.names`; the aliased ones are imported from here by older callers.
from sessions_app.spawners.names import dns_label_part as dns_label_part
from sessions_app.spawners.names import (
    home_claim_name,
    label_value,
    route_name,
    session_name,
)
from sessions_app.spawners.names import is_dns_label as is_dns_label
from sessions_app.spawners.names import is_dns_subdomain as is_dns_subdomain
from sessions_app.spawners.names import is_label_value as is_label_value

PART_OF = "jupyter-launcher-portal"
APP_NAME = "jupyter-session"
HOME_COMPONENT = "home"
SESSION_COMPONENT = "session"
LABEL_PREFIX = "jupyter-portal"
SESSION_LABEL = f"{LABEL_PREFIX}/session"
USER_LABEL = f"{LABEL_PREFIX}/user"
ENVIRONMENT_LABEL = f"{LABEL_PREFIX}/environment"
#: The session URL's user part (``names.route_name``, as a label value): what two routes that
#: would shadow each other share, and no two users do. A start removes the routes of its path
#: left by its user's earlier sessions by this label, and their path (``kube.py``).
ROUTE_LABEL = f"{LABEL_PREFIX}/route"
USERNAME_ANNOTATION = f"{LABEL_PREFIX}/username"
#: Every session pod of this portal carries these labels; reconciliation lists by them.
SESSION_SELECTOR = {
    "app.kubernetes.io/name": APP_NAME,
    "app.kubernetes.io/managed-by": PART_OF,
}
NETWORK_POLICY_NAME = "jupyter-sessions"
#: What the forward-auth answer hands the ingress for the request to the server.
AUTH_RESPONSE_HEADERS = "Authorization, Cookie"
# The session pod's container that runs Jupyter (its log is the session's server log).
SERVER_CONTAINER = "notebook"
SERVER_PORT = 8888
PORT_NAME = "http"
HOME = "/home/jovyan"
USER_ID = 1000
GROUP_ID = 100  # the Jupyter images' "users" group
LIBRARY_DIR = f"{HOME}/notebooks-library"
SCRATCH_DIR = f"{HOME}/scratch"
# The clone's own resources: small, and requests equal to limits like the server's.
LIBRARY_CPU = "100m"
LIBRARY_MEMORY = "256Mi"
LIBRARY_SIZE_LIMIT = "1Gi"
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


@dataclass(frozen=True)
class KubeConfig:
    """The back-end's settings (``KUBE_*``), as plain values."""

    namespace: str = "jupyter-sessions"
    public_url: str = ""
    ingress_class: str = "nginx"
    auth_url: str = "http://portal-web.jupyter-portal.svc.cluster.local/auth/session/"
    scratch_claim: str = "scratch"
    home_storage_class: str = ""
    home_size: str = "1Gi"
    library_image: str = "docker.io/alpine/git:v2.47.2"
    library_url: str = ""
    library_branch: str = ""
    egress_allow_cidrs: tuple[str, ...] = ()
    router_namespace: str = "ingress-nginx"
    router_pod_labels: dict[str, str] = field(
        default_factory=lambda: {"app.kubernetes.io/name": "ingress-nginx"}
    )

    @property
    def public_host(self) -> str:
        return urlsplit(self.public_url).hostname or ""


def parse_labels(text: str) -> dict[str, str]:
    """``a=b,c=d`` as a dict; ``ValueError`` names what is wrong."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        prefix, _, name = key.rpartition("/")
        if not sep or not _LABEL_KEY.fullmatch(key) or len(name) > 63 or len(prefix) > 253:
            raise ValueError(f"{item!r} is not a label of the form key=value")
        if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid label value")
        labels[key] = value
    return labels


def parse_cidrs(items: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Normalised CIDRs for the egress allow-list; ``ValueError`` says what is wrong.

    Refused: host bits set (``10.1.2.3/8``), networks wider than /8 (IPv4) or /16 (IPv6),
    which would open every port to much of the internet, and any network holding a cloud
    metadata address.
    """
    networks = []
    for item in items:
        network = ipaddress.ip_network(item, strict=True)
        if network.prefixlen < (8 if network.version == 4 else 16):
            raise ValueError(
                f"{item} is wider than an allow-list entry may be (/8, or /16 for IPv6)"
            )
        for metadata in METADATA_CIDRS:
            address = ipaddress.ip_network(metadata)
            if address.version == network.version and address.subnet_of(network):  # type: ignore[arg-type]
                raise ValueError(
                    f"{item} holds the cloud metadata address {address.network_address}"
                )
        networks.append(str(network))
    return tuple(networks)


def session_labels(request: SpawnRequest, name: str) -> dict[str, str]:
    return {
        **SESSION_SELECTOR,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": SESSION_COMPONENT,
        "app.kubernetes.io/part-of": PART_OF,
        SESSION_LABEL: label_value(request.session_id),
        USER_LABEL: label_value(request.username),
        ROUTE_LABEL: label_value(route_name(request.username)),
        ENVIRONMENT_LABEL: label_value(request.environment),
    }


def _restricted_container_security() -> V1SecurityContext:
    return V1SecurityContext(
        run_as_non_root=True,
        run_as_user=USER_ID,
        run_as_group=GROUP_ID,
        allow_privilege_escalation=False,
        privileged=False,
        capabilities=V1Capabilities(drop=["ALL"]),
        seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
    )


def _resources(cpu: str, memory: str) -> V1ResourceRequirements:
    # Requests equal to limits: the pod's QoS class is Guaranteed.
    amounts = {"cpu": cpu, "memory": memory}
    return V1ResourceRequirements(requests=dict(amounts), limits=dict(amounts))


def _library_init_container(config: KubeConfig) -> V1Container:
    # A failed clone must not block the session (the init container always succeeds): it
    # leaves a note in the folder instead. URL and branch reach the shell as arguments, never
    # as part of the script.
    script = (
        'if git clone --quiet --depth 1 ${2:+"--branch=$2"} -- "$1" /library; then '
        "rm -rf /library/.git; "
        "else find /library -mindepth 1 -delete; "
        'echo "The notebooks library could not be cloned from $3." > /library/CLONE-FAILED.txt; '
        "fi; exit 0"
    )
    return V1Container(
        name="notebooks-library",
        image=config.library_image,
        command=[
            "sh",
            "-c",
            script,
            "clone",
            config.library_url,
            config.library_branch,
            _without_credentials(config.library_url),
        ],
        env=[
            V1EnvVar(name="GIT_TERMINAL_PROMPT", value="0"),
            V1EnvVar(name="HOME", value="/tmp"),
        ],
        resources=_resources(LIBRARY_CPU, LIBRARY_MEMORY),
        security_context=_restricted_container_security(),
        volume_mounts=[V1VolumeMount(name="library", mount_path="/library")],
    )


def _without_credentials(url: str) -> str:
    """``url`` without a user name or password (what every user may read)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


def _server_args(base_url: str) -> list[str]:
    return [
        "--ServerApp.ip=0.0.0.0",
        f"--ServerApp.port={SERVER_PORT}",
        f"--ServerApp.base_url={base_url}",
        f"--ServerApp.root_dir={HOME}",
        "--ServerApp.open_browser=False",
        # Requests arrive through the portal's host, via the ingress controller.
        "--ServerApp.allow_remote_access=True",
        "--ServerApp.trust_xheaders=True",
    ]


def _server_env(config: KubeConfig, request: SpawnRequest, token: str) -> list[V1EnvVar]:
    return [
        V1EnvVar(name="JUPYTER_TOKEN", value=token),
        V1EnvVar(name="JUPYTER_PORTAL_SESSION_ID", value=request.session_id),
        # For the session's JupyterLab extension (time left, stop, "your session ended").
        V1EnvVar(name="JUPYTER_PORTAL_URL", value=config.public_url),
        # Bokeh's plots carry BokehJS instead of fetching it from a CDN (offline browsers).
        V1EnvVar(name="BOKEH_RESOURCES", value="inline"),
        V1EnvVar(name="HOME", value=HOME),
        # pip and conda installs land in the home, which is kept across sessions.
        V1EnvVar(name="PYTHONUSERBASE", value=f"{HOME}/.local"),
        V1EnvVar(name="PIP_USER", value="1"),
        V1EnvVar(name="CONDA_ENVS_DIRS", value=f"{HOME}/.conda/envs"),
        V1EnvVar(name="CONDA_PKGS_DIRS", value=f"{HOME}/.conda/pkgs"),
        V1EnvVar(name="MEM_LIMIT", value=str(request.memory_mb * 1024 * 1024)),
        V1EnvVar(name="CPU_LIMIT", value=str(request.cpus)),
    ]


def make_pod(config: KubeConfig, request: SpawnRequest, token: str) -> V1Pod:
    """The session's server: one pod, killed by the cluster itself at the end of its time."""
    name = session_name(request.username, request.session_id)
    image = str(request.backend_settings.get("image") or "")
    command = request.backend_settings.get("command") or ["jupyter-lab"]
    scratch = request.scratch_dir.name if request.scratch_dir is not None else ""
    mounts = [V1VolumeMount(name="home", mount_path=HOME)]
    volumes = [
        V1Volume(
            name="home",
            persistent_volume_claim=V1PersistentVolumeClaimVolumeSource(
                claim_name=home_claim_name(request.home_dir.name)
            ),
        )
    ]
    if scratch:
        mounts.append(V1VolumeMount(name="scratch", mount_path=SCRATCH_DIR, sub_path=scratch))
        volumes.append(
            V1Volume(
                name="scratch",
                persistent_volume_claim=V1PersistentVolumeClaimVolumeSource(
                    claim_name=config.scratch_claim
                ),
            )
        )
    init_containers = None
    if config.library_url:
        mounts.append(V1VolumeMount(name="library", mount_path=LIBRARY_DIR, read_only=True))
        volumes.append(
            V1Volume(
                name="library", empty_dir=V1EmptyDirVolumeSource(size_limit=LIBRARY_SIZE_LIMIT)
            )
        )
        init_containers = [_library_init_container(config)]
    server = V1Container(
        name=SERVER_CONTAINER,
        image=image,
        # Arguments only: the image's entrypoint (tini and the Jupyter images' start.sh) stays
        # PID 1, reaps the kernels' zombies and runs the image's start-up hooks.
        args=[*command, *_server_args(request.base_url)],
        env=_server_env(config, request, token),
        working_dir=HOME,
        ports=[V1ContainerPort(name=PORT_NAME, container_port=SERVER_PORT, protocol="TCP")],
        resources=_resources(str(request.cpus), f"{request.memory_mb}Mi"),
        readiness_probe=V1Probe(
            # Jupyter answers GET <base_url>api without a token: it is ready when it answers.
            http_get=V1HTTPGetAction(path=f"{request.base_url}api", port=PORT_NAME),
            period_seconds=2,
            timeout_seconds=2,
            failure_threshold=3,
        ),
        security_context=_restricted_container_security(),
        volume_mounts=mounts,
    )
    priority_class = str(request.backend_settings.get("priority_class") or "") or None
    pod = V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=V1ObjectMeta(
            name=name,
            namespace=config.namespace,
            labels=session_labels(request, name),
            annotations={USERNAME_ANNOTATION: request.username},
        ),
        spec=V1PodSpec(
            restart_policy="Never",
            active_deadline_seconds=request.duration_seconds,
            automount_service_account_token=False,
            enable_service_links=False,
            priority_class_name=priority_class,
            security_context=V1PodSecurityContext(
                run_as_non_root=True,
                run_as_user=USER_ID,
                run_as_group=GROUP_ID,
                fs_group=GROUP_ID,
                seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
            ),
            init_containers=init_containers,
            containers=[server],
            volumes=volumes,
        ),
    )
    # The environment's tolerations, node selector, pull secrets, data shares and variables.
    return apply_extras(pod, extras_of(request.backend_settings))


def meta(obj: Any) -> V1ObjectMeta:
    """An object's metadata (an empty one if it has none)."""
    metadata = getattr(obj, "metadata", None)
    return metadata if isinstance(metadata, V1ObjectMeta) else V1ObjectMeta()


def owner_reference(pod: V1Pod) -> V1OwnerReference:
    """Makes an object belong to the pod: the cluster removes it when the pod goes."""
    return V1OwnerReference(
        api_version="v1", kind="Pod", name=str(meta(pod).name), uid=str(meta(pod).uid)
    )


def make_service(
    config: KubeConfig, request: SpawnRequest, owner: V1OwnerReference | None = None
) -> V1Service:
    """The session's stable address inside the cluster, which its Ingress points at."""
    name = session_name(request.username, request.session_id)
    return V1Service(
        api_version="v1",
        kind="Service",
        metadata=V1ObjectMeta(
            name=name,
            namespace=config.namespace,
            labels=session_labels(request, name),
            owner_references=[owner] if owner else None,
        ),
        spec=V1ServiceSpec(
            type="ClusterIP",
            selector={SESSION_LABEL: label_value(request.session_id), **SESSION_SELECTOR},
            ports=[
                V1ServicePort(
                    name=PORT_NAME, port=SERVER_PORT, target_port=PORT_NAME, protocol="TCP"
                )
            ],
        ),
    )


def make_ingress(
    config: KubeConfig, request: SpawnRequest, owner: V1OwnerReference | None = None
) -> V1Ingress:
    """Routes ``/user/<name>/`` on the portal's host to the session, websockets included.

    ingress-nginx asks the portal (``auth-url``) before every request, websocket upgrades
    included: only the signed-in owner of this session gets through. Someone not signed in is
    sent to the portal's sign-in page (``auth-signin``). The answer's ``Authorization`` (the
    server's token) and ``Cookie`` (the caller's cookies without the portal's) replace the
    client's own headers of those names (``auth-response-headers``: ingress-nginx writes
    ``proxy_set_header`` for each, and an empty one is not sent): the token never reaches the
    browser, and portal credentials never reach the server.
    """
    name = session_name(request.username, request.session_id)
    auth_url = f"{config.auth_url.rstrip('/')}/{request.session_id}/"
    annotations = {
        "nginx.ingress.kubernetes.io/auth-url": auth_url,
        "nginx.ingress.kubernetes.io/auth-signin": (
            f"{config.public_url}/login/?next=$escaped_request_uri"
        ),
        "nginx.ingress.kubernetes.io/auth-response-headers": AUTH_RESPONSE_HEADERS,
        # Kernels' websockets stay open for hours; uploads may be large.
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
        "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
        "nginx.ingress.kubernetes.io/proxy-body-size": "512m",
    }
    path = V1HTTPIngressPath(
        path=request.base_url,
        path_type="Prefix",
        backend=V1IngressBackend(
            service=V1IngressServiceBackend(name=name, port=V1ServiceBackendPort(name=PORT_NAME))
        ),
    )
    return V1Ingress(
        api_version="networking.k8s.io/v1",
        kind="Ingress",
        metadata=V1ObjectMeta(
            name=name,
            namespace=config.namespace,
            labels=session_labels(request, name),
            annotations=annotations,
            owner_references=[owner] if owner else None,
        ),
        spec=V1IngressSpec(
            ingress_class_name=config.ingress_class or None,
            rules=[
                V1IngressRule(
                    host=config.public_host or None,
                    http=V1HTTPIngressRuleValue(paths=[path]),
                )
            ],
        ),
    )


def make_pvc(config: KubeConfig, request: SpawnRequest) -> V1PersistentVolumeClaim:
    """The user's private home: created on first use, kept across sessions."""
    return V1PersistentVolumeClaim(
        api_version="v1",
        kind="PersistentVolumeClaim",
        metadata=V1ObjectMeta(
            name=home_claim_name(request.home_dir.name),
            namespace=config.namespace,
            labels={
                "app.kubernetes.io/name": APP_NAME,
                "app.kubernetes.io/managed-by": PART_OF,
                "app.kubernetes.io/part-of": PART_OF,
                "app.kubernetes.io/component": HOME_COMPONENT,
                USER_LABEL: label_value(request.username),
            },
            annotations={
                USERNAME_ANNOTATION: request.username,
                f"{LABEL_PREFIX}/folder": request.home_dir.name,
            },
        ),
        spec=V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            storage_class_name=config.home_storage_class or None,
            resources=V1VolumeResourceRequirements(requests={"storage": config.home_size}),
        ),
    )
