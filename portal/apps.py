from django.apps import AppConfig


class PortalConfig(AppConfig):
    """Cross-cutting concerns of the portal: API tokens and API error handling."""

    name = "portal"
    verbose_name = "Portal access"

    def ready(self) -> None:
        from portal import signals

        signals.connect()
