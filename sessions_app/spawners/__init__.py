"""Spawner back-ends; :func:`get_spawner` returns the one the settings choose."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from sessions_app.spawners.base import Spawner


@cache
def get_spawner() -> Spawner:
    if settings.SPAWNER == "local":
        from sessions_app.spawners.isolation import config_from_settings
        from sessions_app.spawners.local import LocalProcessSpawner

        return LocalProcessSpawner(
            runtime_dir=settings.LOCAL_SPAWNER_RUNTIME_DIR,
            socket_dir=settings.LOCAL_SPAWNER_SOCKET_DIR,
            public_url=settings.PORTAL_PUBLIC_URL,
            stop_grace_seconds=settings.SESSION_STOP_GRACE_SECONDS,
            isolation=config_from_settings(),
            log_max_bytes=settings.LOCAL_SESSION_LOG_MAX_BYTES,
            software_dir=settings.LOCAL_SESSION_ENV,
        )
    if settings.SPAWNER == "kubernetes":
        from sessions_app.spawners.kube import KubernetesSpawner
        from sessions_app.spawners.kube_settings import kube_config
        from storage_app.library_builtin import is_builtin

        # The pods clone the library themselves. The one that ships with the portal ("builtin")
        # is a repository on the portal's disk, which they cannot reach: no library for them.
        library_url = settings.NOTEBOOKS_LIBRARY_URL
        if is_builtin(library_url):
            library_url = ""
        return KubernetesSpawner(
            kube_config(settings, library_url),
            config_file=settings.KUBE_CONFIG_FILE,
            request_timeout=settings.KUBE_REQUEST_TIMEOUT_SECONDS,
            retries=settings.KUBE_RETRIES,
            unschedulable_seconds=settings.KUBE_UNSCHEDULABLE_SECONDS,
            stop_grace_seconds=settings.SESSION_STOP_GRACE_SECONDS,
        )
    raise ValueError(f"unknown spawner {settings.SPAWNER!r}")
