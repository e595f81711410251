from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    """Identity and access: sign-in (OIDC or local), the second factor, the access policy."""

    default = True
    name = "accounts_app"
    verbose_name = "Identity and access"
    default_auto_field = "django.db.models.BigAutoField"


class PortalAdminConfig(admin_apps.AdminConfig):
    """Django's admin, on a site that also asks for the second factor."""

    default = False
    default_site = "accounts_app.admin_site.PortalAdminSite"
