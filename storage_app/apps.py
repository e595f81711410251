from django.apps import AppConfig


class StorageAppConfig(AppConfig):
    name = "storage_app"
    verbose_name = "Storage"

    def ready(self) -> None:
        # Measures the owner's storage when a session starts and ends (receivers.py).
        from storage_app import receivers  # noqa: F401
