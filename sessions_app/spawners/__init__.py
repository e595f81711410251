"""Spawner back-ends; :func:`get_spawner` returns the one the settings choose."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from sessions_app.spawners.base import Spawner


@cache
def get_spawner() -> Spawner:
    if settings.SPAWNER == "local":
        from sessions_app.spawners.local import LocalProcessSpawner

        return LocalProcessSpawner(
            runtime_dir=settings.LOCAL_SPAWNER_RUNTIME_DIR,
            port_range=settings.LOCAL_SPAWNER_PORT_RANGE,
            public_host=settings.LOCAL_SPAWNER_PUBLIC_HOST,
            stop_grace_seconds=settings.SESSION_STOP_GRACE_SECONDS,
        )
    raise ValueError(f"unknown spawner {settings.SPAWNER!r}")
