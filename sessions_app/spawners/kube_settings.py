"""The Kubernetes back-end's settings (``KUBE_*``): checked, and turned into a :class:`KubeConfig`.

``portal/settings.py`` only reads the environment; what makes a value right for a cluster lives
here, beside the builders whose rules it applies. :func:`check_kube_settings` runs when the
sessions app is ready (``SessionsAppConfig.ready``) with ``SPAWNER=kubernetes``, so that every
process (web, workers, beat, ``manage.py``) refuses to start with a value the cluster would
refuse at every launch, and says which variable and why (``ImproperlyConfigured``), rather than
each session failing later.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from sessions_app.spawners.kube_objects import KubeConfig, parse_cidrs, parse_labels
from sessions_app.spawners.names import is_dns_label, is_dns_subdomain


def check_kube_settings(values: Any) -> None:
    """Raise ``ImproperlyConfigured`` naming the first bad ``KUBE_*`` value of ``values``
    (Django's settings, or anything with the same attributes)."""
    # Imported here: parse_quantity pulls in the client's utilities (and yaml) at once.
    from kubernetes.utils import parse_quantity

    names = ("KUBE_NAMESPACE", "KUBE_SCRATCH_CLAIM", "KUBE_ROUTER_NAMESPACE")
    for name in names:
        value = getattr(values, name)
        if not is_dns_label(value):
            raise ImproperlyConfigured(
                f"{name} must be a Kubernetes name (a DNS label), got {value!r}"
            )
    for name in ("KUBE_INGRESS_CLASS", "KUBE_HOME_STORAGE_CLASS"):
        value = getattr(values, name)
        if value and not is_dns_subdomain(value):
            raise ImproperlyConfigured(
                f"{name} must be empty or a Kubernetes object name, got {value!r}"
            )
    home_size = values.KUBE_HOME_SIZE
    try:
        if parse_quantity(home_size) <= 0:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            f"KUBE_HOME_SIZE must be a positive quantity such as 1Gi, got {home_size!r}"
        ) from None
    parsers: list[tuple[str, Callable[[], object]]] = [
        ("KUBE_EGRESS_ALLOW_CIDRS", lambda: parse_cidrs(values.KUBE_EGRESS_ALLOW_CIDRS)),
        ("KUBE_ROUTER_POD_LABELS", lambda: parse_labels(values.KUBE_ROUTER_POD_LABELS)),
    ]
    for name, parse in parsers:
        try:
            parse()
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {exc}") from None
    for name in ("KUBE_PUBLIC_URL", "KUBE_AUTH_URL"):
        url = getattr(values, name)
        if url and not url.startswith(("http://", "https://")):
            raise ImproperlyConfigured(f"{name} must be an http(s) URL, got {url!r}")
    # Without these, a session's route would catch every host, be picked up by any controller
    # (one that ignores the forward-auth), or let any pod of the router namespace in.
    for name in ("KUBE_PUBLIC_URL", "KUBE_INGRESS_CLASS", "KUBE_ROUTER_POD_LABELS"):
        if not getattr(values, name).strip():
            raise ImproperlyConfigured(f"{name} must be set when SPAWNER=kubernetes")
    if values.KUBE_UNSCHEDULABLE_SECONDS >= values.SPAWN_TIMEOUT_SECONDS:
        # Otherwise the spawn timeout always comes first and nobody learns there was no room.
        raise ImproperlyConfigured(
            f"KUBE_UNSCHEDULABLE_SECONDS ({values.KUBE_UNSCHEDULABLE_SECONDS}) must be less "
            f"than SPAWN_TIMEOUT_SECONDS ({values.SPAWN_TIMEOUT_SECONDS})"
        )
    _check_public_url(values.KUBE_PUBLIC_URL)


def _check_public_url(url: str) -> None:
    public = urlsplit(url)
    if public.scheme != "https" or public.path or public.query or public.username:
        raise ImproperlyConfigured(f"KUBE_PUBLIC_URL must be https://<host> (no path), got {url!r}")
    host = public.hostname or ""
    if host and (not is_dns_subdomain(host) or _is_ip_address(host)):
        # It becomes the host of every session's Ingress rule, which takes names only.
        raise ImproperlyConfigured(
            f"KUBE_PUBLIC_URL must name its host (not an IP address), got {url!r}"
        )


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.replace(".", "").isdigit()
    return True


def kube_config(values: Any, library_url: str) -> KubeConfig:
    """The builders' settings from checked ``KUBE_*`` values (``library_url``: what the pods
    clone, empty for none)."""
    return KubeConfig(
        namespace=values.KUBE_NAMESPACE,
        public_url=values.KUBE_PUBLIC_URL,
        ingress_class=values.KUBE_INGRESS_CLASS,
        auth_url=values.KUBE_AUTH_URL,
        scratch_claim=values.KUBE_SCRATCH_CLAIM,
        home_storage_class=values.KUBE_HOME_STORAGE_CLASS,
        home_size=values.KUBE_HOME_SIZE,
        library_image=values.KUBE_LIBRARY_IMAGE,
        library_url=library_url,
        library_branch=values.NOTEBOOKS_LIBRARY_BRANCH,
        egress_allow_cidrs=parse_cidrs(values.KUBE_EGRESS_ALLOW_CIDRS),
        router_namespace=values.KUBE_ROUTER_NAMESPACE,
        router_pod_labels=parse_labels(values.KUBE_ROUTER_POD_LABELS),
    )
