"""Settings of the test identity provider, a tiny Django project apart from the portal.

It never imports the portal's settings: the two run in different processes and must not
share a database, a secret key or cookie names. Everything that differs per test run comes
from environment variables set by ``tests.idp.provider``.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def _required_env(name: str) -> str:
    """The value of an environment variable the fixture always sets; fail loudly without it."""
    value = os.environ.get(name, "")
    if not value:
        raise ImproperlyConfigured(f"{name} must be set to run the test identity provider")
    return value


BASE_DIR = Path(__file__).resolve().parent
STATE_DIR = Path(_required_env("IDP_STATE_DIR"))
PORT = int(_required_env("IDP_PORT"))

SECRET_KEY = _required_env("IDP_SECRET_KEY")
IDP_CONTROL_SECRET = _required_env("IDP_CONTROL_SECRET")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oidc_provider",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tests.idp.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": STATE_DIR / "idp.sqlite3",
        # runserver is threaded: a browser and a test may hit the provider at once, and SQLite
        # then needs writers to queue instead of failing with "database is locked".
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

# Cookies are scoped by host, not by port: the portal also runs on 127.0.0.1, so the
# provider's cookies need names of their own or each server would overwrite the other's.
SESSION_COOKIE_NAME = "idp_sessionid"
CSRF_COOKIE_NAME = "idp_csrftoken"

LOGIN_URL = "/accounts/login/"
USE_TZ = True
TIME_ZONE = "UTC"

SITE_URL = f"http://127.0.0.1:{PORT}"
OIDC_IDTOKEN_INCLUDE_CLAIMS = True
OIDC_EXTRA_SCOPE_CLAIMS = "tests.idp.claims.PortalScopeClaims"
OIDC_USERINFO = "tests.idp.claims.userinfo"
OIDC_IDTOKEN_PROCESSING_HOOK = "tests.idp.claims.add_authentication_methods"
OIDC_GRANT_TYPE_PASSWORD_ENABLE = True
# Introspection answers any registered client that has the introspection scope, about any
# token, with the token's own audience: the portal must be told about tokens issued to other
# applications to refuse them (tests/accounts_app/test_oidc_audience.py).
OIDC_INTROSPECTION_VALIDATE_AUDIENCE_SCOPE = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # The provider's own debug lines say why a token or authorization request was refused;
    # they land in the log file that the fixture shows when something goes wrong.
    "loggers": {"oidc_provider": {"handlers": ["console"], "level": "DEBUG"}},
}
