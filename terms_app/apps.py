from django.apps import AppConfig


class TermsAppConfig(AppConfig):
    name = "terms_app"
    verbose_name = "Terms of use"
