from __future__ import annotations

from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Jupyter sessions"

    def ready(self) -> None:
        from django.conf import settings

        from portal.health import register_readiness
        from sessions_app import receivers  # noqa: F401  (a suspension stops the session)

        if settings.SPAWNER == "kubernetes":
            # A KUBE_* value the cluster would refuse stops every process at start, naming it.
            from sessions_app.spawners.kube_settings import check_kube_settings

            check_kube_settings(settings)
        if settings.SPAWNER == "local":
            register_readiness("isolation", _isolation_readiness)
            register_readiness("session_software", _software_readiness)


def _isolation_readiness() -> tuple[bool, str]:
    """Ready unless LOCAL_ISOLATION=required and the machine cannot isolate sessions."""
    from sessions_app.spawners.isolation import isolation_status

    status = isolation_status()
    detail = f"{status['mode']}; limits: {status['limits']}; " + (
        "packet filter on" if status["packet_filter"] else "packet filter off"
    )
    return bool(status["ok"]), detail


def _software_readiness() -> tuple[bool, str]:
    """Ready once the local sessions' software is built (make run builds it)."""
    from django.conf import settings

    from sessions_app.spawners.base import SpawnerError
    from sessions_app.spawners.software import session_software

    try:
        software = session_software(settings.LOCAL_SESSION_ENV)
    except SpawnerError as exc:
        return False, str(exc)
    return True, str(software.prefix)
