from django.apps import AppConfig


class SuspensionAppConfig(AppConfig):
    name = "suspension_app"
    verbose_name = "Suspensions"
