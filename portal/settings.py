"""Settings of the portal, read from environment variables (see the README's table).

Unset, the variables give the embedded default: SQLite, a Celery broker that runportal starts
itself (a redis-server on a Unix socket in var/; a real worker and beat), the local spawner and
local accounts.

Past the ~500 lines of the other modules, on purpose: Django reads one settings module, and
this one is a flat list of reads, one section per concern (database, identity, API, Celery,
sessions, cache, storage, suspension), most of its lines the comments that say what a value is
for. Checks that need more than a typed reader live beside what they configure (the Kubernetes
settings: ``sessions_app.spawners.kube_settings``); the typed readers are ``portal.env``'s.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email
from kombu import Exchange, Queue

from portal.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_rate,
    env_secret,
    env_str,
)
from portal.private_files import make_private_dir, write_private_file

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PORTAL_VAR_DIR", str(BASE_DIR / "var"))).resolve()
if not VAR_DIR.is_dir():
    # The portal's alone (database, secrets, broker): runportal also tightens an older one.
    make_private_dir(VAR_DIR)


def _embedded_secret_key() -> str:
    # The embedded default keeps a random key on disk so sessions survive a restart; a
    # production deployment passes SECRET_KEY (or SECRET_KEY_FILE).
    path = VAR_DIR / "secret_key"
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process wrote it first
            write_private_file(path, secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env_secret("SECRET_KEY") or _embedded_secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Reverse proxies in front of the portal that append to X-Forwarded-For (the ingress
# controller: 1); the client's address, recorded with terms acceptances, is read from there.
TRUSTED_PROXY_HOPS = env_int("TRUSTED_PROXY_HOPS", 0, minimum=0)
# Threads of each web process for the sync views (portal/asgi.py): as many requests at once per
# process; the async (waiting) views need none.
WEB_THREADS = env_int("WEB_THREADS", 8, minimum=1)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# With secure cookies the portal is served over HTTPS: browsers are told to keep to it
# (Strict-Transport-Security, sent on HTTPS answers only) for HSTS_SECONDS; 0: no header.
SECURE_HSTS_SECONDS = env_int(
    "HSTS_SECONDS", 365 * 24 * 3600 if SESSION_COOKIE_SECURE else 0, minimum=0
)

INSTALLED_APPS = [
    # The admin site, with the portal's access rules (staff, second factor, not suspended).
    "accounts_app.apps.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "portal",
    "accounts_app",
    "terms_app",
    "storage_app",
    "sessions_app",
    "suspension_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every answer (CONTENT_SECURITY_POLICY below, portal/csp.py).
    "portal.csp.PortalCSPMiddleware",
    # Cache-Control: no-store on the API answers that carry a secret (portal/no_store.py).
    "portal.no_store.no_store_middleware",
    # Every answer under /api/ is JSON {detail, code}; NUL in its query strings is refused
    # (portal/api_middleware.py).
    "portal.api_middleware.ApiMiddleware",
    # A view that meets a database (or cache) outage answers 503, not 500 (portal/outage.py).
    "portal.outage.OutageMiddleware",
    # WhiteNoise's, async-capable (portal/static_files.py).
    "portal.static_files.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Pages: sign-in, second factor, access policy, suspension; then the provider re-check.
    "accounts_app.middleware.AccessPolicyMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------

DATABASE_URL = env_secret("DATABASE_URL")
# Connections a process keeps in a pool (psycopg_pool; PostgreSQL only); 0: none, each thread
# keeps its own for 60 s instead. The web sets it (runportal, deploy/): under the ASGI server
# every request runs its sync code on a thread of its own, which would otherwise open (and
# drop) a connection per request; the waiting views give theirs back while they wait.
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 0, minimum=0)
if DATABASE_URL:
    try:
        DATABASES = {
            "default": dj_database_url.parse(
                DATABASE_URL, conn_max_age=0 if DATABASE_POOL_SIZE else 60
            )
        }
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if DATABASE_POOL_SIZE and "postgresql" in DATABASES["default"]["ENGINE"]:
        # The pool checks each connection as it leaves (a round trip): one the server dropped
        # (a restart, a network cut) is replaced, not handed out to fail a request.
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        # Django's back-end, but requests fail at once while the pool cannot connect.
        DATABASES["default"]["ENGINE"] = "portal.postgresql"
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": DATABASE_POOL_SIZE,
            # A request waits at most this long for a connection; then 503 (portal/outage.py).
            # The pool has one per web thread and more: it makes requests wait only while the
            # database does not answer, and each such request holds a thread meanwhile.
            "timeout": 5,
            # A failing reconnection gives up after this long (psycopg_pool: 5 minutes, its
            # delay doubling), and the next request starts a new one: the pool is back within
            # seconds of the database, not up to as long again as the outage lasted.
            "reconnect_timeout": 5,
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "portal.sqlite3"),
            "OPTIONS": {
                # Web, worker and beat share one file: WAL lets readers run beside a writer,
                # IMMEDIATE takes the write lock at BEGIN so concurrent writers queue on the
                # timeout instead of failing with "database is locked" half-way.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth, i18n, static -----------------------------------------------------------------------

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "accounts_app.oidc.PortalOidcBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    # Not a check: Django's hook for a changed password, which revokes the API tokens.
    {"NAME": "accounts_app.password_change.RevokeApiTokensOnPasswordChange"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "launcher"
LOGOUT_REDIRECT_URL = "login"

# --- Identity and access ----------------------------------------------------------------------
# OpenID Connect is on when a client id is set; the endpoints are the provider's (see its
# discovery document). Local accounts (password + the same second factor) are the embedded
# default and break-glass for staff: with OIDC on they are off unless LOCAL_LOGIN turns them on.

OIDC_RP_CLIENT_ID = env_str("OIDC_RP_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env_secret("OIDC_RP_CLIENT_SECRET")
OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("OIDC_OP_AUTHORIZATION_ENDPOINT")
OIDC_OP_TOKEN_ENDPOINT = env_str("OIDC_OP_TOKEN_ENDPOINT")
OIDC_OP_USER_ENDPOINT = env_str("OIDC_OP_USER_ENDPOINT")
OIDC_OP_JWKS_ENDPOINT = env_str("OIDC_OP_JWKS_ENDPOINT")
OIDC_OP_LOGOUT_ENDPOINT = env_str("OIDC_OP_LOGOUT_ENDPOINT")
# Token introspection (RFC 7662): how the API learns whom an opaque access token was issued to
# (accounts_app/oidc_audience.py). Unset, only JWT access tokens whose aud/azp name
# OIDC_RP_CLIENT_ID are accepted.
OIDC_OP_INTROSPECTION_ENDPOINT = env_str("OIDC_OP_INTROSPECTION_ENDPOINT")
OIDC_RP_SIGN_ALGO = env_choice("OIDC_RP_SIGN_ALGO", "rs256", ("rs256", "es256", "hs256")).upper()
OIDC_RP_SCOPES = env_str("OIDC_RP_SCOPES", "openid email profile groups")
OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "your organisation's account")
OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = env_int("OIDC_RENEW_SECONDS", 15 * 60, minimum=30)
OIDC_TIMEOUT = env_int("OIDC_TIMEOUT_SECONDS", 10, minimum=1)
OIDC_BEARER_CACHE_SECONDS = env_int("OIDC_BEARER_CACHE_SECONDS", 60, minimum=0)
OIDC_STORE_ID_TOKEN = True  # the hint of RP-initiated logout
OIDC_USE_PKCE = True
OIDC_CALLBACK_CLASS = "accounts_app.oidc.PortalCallbackView"
OIDC_OP_LOGOUT_URL_METHOD = "accounts_app.oidc.provider_logout_url"
LOGIN_REDIRECT_URL_FAILURE = "/login/failed/"  # a path: mozilla-django-oidc does not reverse it
# The session page polls its status with fetch(): a redirect to the provider would break it.
OIDC_EXEMPT_URLS = ["session-status"]
# Claims → user: which claim holds what.
OIDC_USERNAME_CLAIM = env_str("OIDC_USERNAME_CLAIM", "preferred_username")
OIDC_EMAIL_CLAIM = env_str("OIDC_EMAIL_CLAIM", "email")
OIDC_FIRST_NAME_CLAIM = env_str("OIDC_FIRST_NAME_CLAIM", "given_name")
OIDC_LAST_NAME_CLAIM = env_str("OIDC_LAST_NAME_CLAIM", "family_name")
# Access policy: who may use the portal. Members of ACCESS_GROUP (Django group; staff and
# superusers always); for OIDC users the membership follows the claim at each login. An empty
# ACCESS_GROUP opens the portal to everyone who signs in.
ACCESS_GROUP = env_str("ACCESS_GROUP", "staff")
OIDC_ACCESS_CLAIM = env_str("OIDC_ACCESS_CLAIM", "groups")
OIDC_ACCESS_VALUES = env_list("OIDC_ACCESS_VALUES", ["staff"])
# The provider's own multi-factor assertion: any of these amr values (or acr values) counts
# as the second factor, and the portal does not ask again.
OIDC_MFA_AMR_VALUES = env_list("OIDC_MFA_AMR_VALUES", ["mfa", "otp", "hwk", "swk"])
OIDC_MFA_ACR_VALUES = env_list("OIDC_MFA_ACR_VALUES")
LOCAL_LOGIN = env_bool("LOCAL_LOGIN", not OIDC_RP_CLIENT_ID)
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Jupyter launcher portal")
SECOND_FACTOR_BACKUP_CODES = 10
# Password sign-in (accounts_app/sign_in_throttle.py): after each wrong password the account
# waits twice as long as after the one before (1 s, 2 s, 4 s, … as for second-factor codes),
# at most SIGN_IN_MAX_WAIT_SECONDS; so does a client address once it has had
# SIGN_IN_ADDRESS_FREE_FAILURES wrong passwords (people behind one NAT share it).
SIGN_IN_MAX_WAIT_SECONDS = env_int("SIGN_IN_MAX_WAIT_SECONDS", 900, minimum=1)
SIGN_IN_ADDRESS_FREE_FAILURES = env_int("SIGN_IN_ADDRESS_FREE_FAILURES", 20, minimum=0)
# API tokens expire: API_TOKEN_DAYS after they are made unless their owner chooses a lifetime,
# which may not exceed API_TOKEN_MAX_DAYS.
API_TOKEN_DAYS = env_int("API_TOKEN_DAYS", 90, minimum=1)
API_TOKEN_MAX_DAYS = env_int("API_TOKEN_MAX_DAYS", 365, minimum=1)
if API_TOKEN_DAYS > API_TOKEN_MAX_DAYS:
    raise ImproperlyConfigured(
        f"API_TOKEN_DAYS ({API_TOKEN_DAYS}) must not exceed API_TOKEN_MAX_DAYS "
        f"({API_TOKEN_MAX_DAYS})"
    )


# Content-Security-Policy (django-csp; portal/csp.py): scripts, styles, images and fonts from
# the portal only (no inline script or style: the pages keep theirs in static files; the QR code
# and the charts are inline SVG, which needs nothing more); the session page's fetch() and event
# stream go to the portal. Forms post to the portal; portal/csp.py adds the identity provider's
# origins to form-action (the sign-in button and sign-out end in redirects to it).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
}

# --- REST API -----------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.api_auth.BearerTokenAuthentication",
        "accounts_app.api_auth.OidcBearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Signed in, second factor, access policy, not suspended: the same rules as the pages.
    "DEFAULT_PERMISSION_CLASSES": ["accounts_app.permissions.PortalAccess"],
    # drf-spectacular's, plus what every operation can answer (portal/api_openapi.py).
    "DEFAULT_SCHEMA_CLASS": "portal.api_openapi.AutoSchema",
    # ?page= and ?page_size= (at most 100), checked: portal/pagination.py.
    "DEFAULT_PAGINATION_CLASS": "portal.pagination.PortalPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "portal.api_errors.exception_handler",
    # JSON only (no browsable pages: every answer under /api/ is JSON); ?format=xml is 406.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "portal.api_errors.ContentNegotiation",
    # NUL, lone surrogates and deep nesting refused with 400 in every body (portal/api_parser.py).
    "DEFAULT_PARSER_CLASSES": [
        "portal.api_parser.JSONParser",
        "portal.api_parser.FormParser",
        "portal.api_parser.MultiPartParser",
    ],
    # Request rates per person and per address (portal/throttles.py): 429 with Retry-After.
    "DEFAULT_THROTTLE_CLASSES": ["portal.throttles.RequestRateThrottle"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# Requests to the API a minute (or N/second, /hour, /day; "off": no limit), counted across every
# web process: per signed-in person (a script polling once a second uses 60/minute), and per
# client address (everyone's, also before sign-in; people behind one NAT share it).
API_THROTTLE_USER = env_rate("API_THROTTLE_USER", "1200/minute")
API_THROTTLE_ADDRESS = env_rate("API_THROTTLE_ADDRESS", "6000/minute")
SPECTACULAR_SETTINGS = {
    "TITLE": "Jupyter launcher portal API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # A text field the API refuses blank is documented with minLength 1.
    "ENFORCE_NON_BLANK_FIELDS": True,
    # The document lists staff endpoints too: the same guard as every other endpoint.
    "SERVE_PERMISSIONS": ["accounts_app.permissions.PortalAccess"],
    # The document lists each endpoint once, with its slash (portal/urls.py), and the server.
    "PREPROCESSING_HOOKS": ["portal.api_openapi.only_slashed_paths"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "portal.api_openapi.add_servers",
    ],
}

# --- Celery ---------------------------------------------------------------------------------------

# Unset: the embedded broker, a redis-server that runportal starts on a Unix socket in var/
# (kombu's filesystem transport crashed the worker under a launch/stop loop; the SQLAlchemy one
# polls once a second and loses what a killed worker held: docs/benchmarks.md, "Broker").
EMBEDDED_BROKER_SOCKET: Path | None = None
CELERY_BROKER_URL = env_secret("CELERY_BROKER_URL")
if not CELERY_BROKER_URL:
    EMBEDDED_BROKER_SOCKET = VAR_DIR / "broker" / "redis.sock"
    if len(str(EMBEDDED_BROKER_SOCKET)) > 107:  # a Unix socket's path: 108 bytes with its NUL
        raise ImproperlyConfigured(
            f"PORTAL_VAR_DIR is too long for the embedded broker's socket "
            f"({EMBEDDED_BROKER_SOCKET}): use a shorter path, or set CELERY_BROKER_URL."
        )
    CELERY_BROKER_URL = f"redis+socket://{EMBEDDED_BROKER_SOCKET}"
# Deadline tasks are scheduled hours ahead (eta); Redis must not redeliver them early. A task
# that a killed worker held comes back after this long; the sweeps re-send lost work sooner.
# A broker that hangs (its socket open, no answer) fails a command after socket_timeout instead
# of holding it for ever: a request's send waits that long at most (portal/broker.py), and a
# worker reconnects. Redis answers the workers' BRPOP within its 1 s wait, well inside it.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 12 * 3600,
    "socket_timeout": 2.0,
    "socket_connect_timeout": 2.0,
}
# A broker outage is waited out: workers and beat try to reconnect for as long as it lasts
# (Celery's default gives up after 100 tries, about 45 minutes, and the process exits).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Three queues, each with its own worker (runportal: worker-<queue>; deploy/base/worker.yaml:
# portal-worker-<queue>), so that a stop or a deadline never waits behind a burst of starts or a
# storage pass (docs/architecture.md, "Queues"):
# - control: stop, expire, admission and the expiry sweep. Short, and late means a session that
#   overruns its deadline or a user who waits for a stop.
# - spawn: starts, and the reconcile sweep. They wait on the back-end: a server coming up, an
#   image pull (up to SPAWN_TIMEOUT_SECONDS); reconcile polls every server, one call each, with
#   the back-end's timeouts and retries. It is a backstop (its beat entry expires), so waiting
#   behind starts costs little, while on control a slow cluster would delay every stop.
# - storage: the storage sweep and the per-user scans and cleanups: walks of the file system.
# The default is control: what no route names (Celery's own tasks) is short.
CELERY_TASK_QUEUES = tuple(
    Queue(name, Exchange(name), routing_key=name) for name in ("control", "spawn", "storage")
)
CELERY_TASK_DEFAULT_QUEUE = "control"
# A queue that is not declared above is an error, not a queue no worker consumes.
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_TASK_ROUTES = {
    "sessions_app.tasks.stop_session": {"queue": "control"},
    "sessions_app.tasks.expire_session": {"queue": "control"},
    "sessions_app.tasks.admit_sessions": {"queue": "control"},
    "sessions_app.tasks.sweep_expire_overdue": {"queue": "control"},
    "sessions_app.tasks.spawn_session": {"queue": "spawn"},
    "sessions_app.tasks.sweep_reconcile": {"queue": "spawn"},
    "storage_app.tasks.*": {"queue": "storage"},
}
# Threads of runportal's worker of each queue (a Deployment's --concurrency on Kubernetes). A
# spawn task holds its thread only while the back-end is asked (folders, the process or the pod
# created); readiness is the start watcher's (sessions_app/start_watch.py).
WORKER_QUEUE_CONCURRENCY = {
    "control": env_int("WORKER_CONCURRENCY_CONTROL", 8, minimum=1),
    "spawn": env_int("WORKER_CONCURRENCY_SPAWN", 16, minimum=1),
    "storage": env_int("WORKER_CONCURRENCY_STORAGE", 2, minimum=1),
}

SESSION_SWEEP_SECONDS = env_int("SESSION_SWEEP_SECONDS", 30, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "sessions-expire-overdue": {
        "task": "sessions_app.tasks.sweep_expire_overdue",
        "schedule": timedelta(seconds=SESSION_SWEEP_SECONDS),
        "options": {"expires": SESSION_SWEEP_SECONDS},
    },
    "sessions-admit": {
        "task": "sessions_app.tasks.admit_sessions",
        "schedule": timedelta(seconds=SESSION_SWEEP_SECONDS),
        "options": {"expires": SESSION_SWEEP_SECONDS},
    },
    "sessions-reconcile": {
        "task": "sessions_app.tasks.sweep_reconcile",
        "schedule": timedelta(seconds=SESSION_SWEEP_SECONDS * 2),
        "options": {"expires": SESSION_SWEEP_SECONDS * 2},
    },
}

# --- Metrics ------------------------------------------------------------------------------------

# /metrics (portal/metrics.py) answers requests from these addresses or networks (the socket's
# peer, never X-Forwarded-For), and staff's portal tokens with sessions_app.view_metrics from
# anywhere. Never list a reverse proxy's address here: every request it forwards would come
# from it. None by default: the loopback address would admit every process on the machine.
METRICS_ALLOWED_ADDRESSES = env_list("METRICS_ALLOWED_ADDRESSES", [])
for _entry in METRICS_ALLOWED_ADDRESSES:
    try:
        ipaddress.ip_network(_entry)
    except ValueError as exc:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_ADDRESSES: {exc}") from None
# The histograms and the counts of ended sessions cover sessions of this many past hours.
METRICS_WINDOW_HOURS = env_int("METRICS_WINDOW_HOURS", 24, minimum=1)

# --- Sessions and spawners ----------------------------------------------------------------------

SPAWNER = env_choice("SPAWNER", "local", ("local", "kubernetes"))
SPAWN_TIMEOUT_SECONDS = env_int("SPAWN_TIMEOUT_SECONDS", 120, minimum=5)
SPAWN_POLL_SECONDS = env_float("SPAWN_POLL_SECONDS", 0.05, minimum=0.01)
SESSION_STOP_GRACE_SECONDS = env_float("SESSION_STOP_GRACE_SECONDS", 5.0, minimum=0)
# Capacity (service rule 5): the pool of CPUs and memory that sessions may hold at once; beyond
# it, launches queue (sessions_app/admission.py). The local default is a share of this machine:
# its memory, and its CPUs four times over (local sessions share CPUs; memory is the limit).
SESSION_POOL_CPUS = env_int("SESSION_POOL_CPUS", 4 * (os.cpu_count() or 1), minimum=1)
SESSION_POOL_MEMORY_MB = env_int(
    "SESSION_POOL_MEMORY_MB",
    max(256, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20),
    minimum=256,
)
# A queued session's priority grows by one step per QUEUE_AGING_MINUTES waited; once one has
# waited QUEUE_RESERVE_AFTER_MINUTES, nothing behind it starts before it.
QUEUE_AGING_MINUTES = env_float("QUEUE_AGING_MINUTES", 10.0, minimum=0.1)
QUEUE_RESERVE_AFTER_MINUTES = env_float("QUEUE_RESERVE_AFTER_MINUTES", 30.0, minimum=0)
SESSION_WARNING_MINUTES = env_int("SESSION_WARNING_MINUTES", 15, minimum=0)
# Clients waiting for their session (the API's long poll, the session page's event stream)
# hold no thread, but each web process admits at most this many at once per person and per
# client address (sessions_app/waiting.py); more are answered 429 with Retry-After.
WAIT_MAX_PER_USER = env_int("WAIT_MAX_PER_USER", 10, minimum=1)
WAIT_MAX_PER_ADDRESS = env_int("WAIT_MAX_PER_ADDRESS", 200, minimum=1)
# How waiting clients learn that a session changed (sessions_app/events.py): "auto" takes
# PostgreSQL's NOTIFY on PostgreSQL, else Redis pub/sub on the broker; "off" re-reads every 2 s.
SESSION_EVENTS = env_choice("SESSION_EVENTS", "auto", ("auto", "postgres", "redis", "off"))
LOCAL_SPAWNER_RUNTIME_DIR = Path(
    env_str("LOCAL_SPAWNER_RUNTIME_DIR", str(VAR_DIR / "spawner"))
).resolve()
# The local sessions' software (sessions_app/spawners/software.py): the environment that
# images/session/build_local_env.py builds (`make run` does), or a ready one of the operator's.
LOCAL_SESSION_ENV = Path(env_str("LOCAL_SESSION_ENV", str(BASE_DIR / ".session-env"))).absolute()
# The portal's public address (scheme, host and port, no path): session URLs are
# <PORTAL_PUBLIC_URL>/user/<name>/lab, served by the router in front of the portal.
PORTAL_PUBLIC_URL = env_str("PORTAL_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# Local sessions' isolation (sessions_app/spawners/isolation.py): "auto" gives multi-user mode
# (an OS account per person, a bubblewrap sandbox, a packet filter) when the portal runs as
# root and single-user mode otherwise; "required" refuses sessions without it; "off" never.
LOCAL_ISOLATION = env_choice("LOCAL_ISOLATION", "auto", ("auto", "required", "off"))
# Each local server listens on <LOCAL_SPAWNER_SOCKET_DIR>/<session id>/jupyter.sock.
LOCAL_SPAWNER_SOCKET_DIR = Path(
    env_str(
        "LOCAL_SPAWNER_SOCKET_DIR",
        "/run/jupyter-portal" if os.geteuid() == 0 else str(VAR_DIR / "sockets"),
    )
).absolute()
# Sessions of portal account pk run as <prefix><pk> with uid = gid = LOCAL_SESSION_UID_MIN + pk.
LOCAL_SESSION_ACCOUNT_PREFIX = env_str("LOCAL_SESSION_ACCOUNT_PREFIX", "jlp-u")
LOCAL_SESSION_UID_MIN = env_int("LOCAL_SESSION_UID_MIN", 200_000, minimum=1000)
LOCAL_SESSION_UID_MAX = env_int("LOCAL_SESSION_UID_MAX", 299_999, minimum=1001)
if LOCAL_SESSION_UID_MAX <= LOCAL_SESSION_UID_MIN:
    raise ImproperlyConfigured("LOCAL_SESSION_UID_MAX must be above LOCAL_SESSION_UID_MIN")
# The group of the router's (nginx's) workers: it may open the sessions' sockets.
LOCAL_ROUTER_GROUP = env_str("LOCAL_ROUTER_GROUP", "www-data" if os.geteuid() == 0 else "")
LOCAL_SESSION_PIDS_MAX = env_int("LOCAL_SESSION_PIDS_MAX", 512, minimum=16)
# A local session's server log (root's, in LOCAL_SPAWNER_RUNTIME_DIR/logs) keeps at most this
# much of what the session writes, then one "[log truncated: ...]" line (log_copier.py).
LOCAL_SESSION_LOG_MAX_BYTES = env_int("LOCAL_SESSION_LOG_MAX_BYTES", 8 * 1024 * 1024, minimum=4096)
# Where local sessions may not connect (besides this machine's own addresses and port 22).
# Empty: the private, shared and link-local ranges the Kubernetes back-end's NetworkPolicy
# denies (sessions_app.spawners.isolation.DEFAULT_EGRESS_DENY).
LOCAL_SESSION_EGRESS_DENY_CIDRS = env_list("LOCAL_SESSION_EGRESS_DENY_CIDRS", [])
for _entry in LOCAL_SESSION_EGRESS_DENY_CIDRS:
    try:
        ipaddress.ip_network(_entry, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"LOCAL_SESSION_EGRESS_DENY_CIDRS: {_entry!r} is not a network"
        ) from None
# The router (nginx, portal/router.py) in front of the portal and the local sessions: when
# runportal runs as root, nginx's workers run as this account (with LOCAL_ROUTER_GROUP, which
# may open the sessions' sockets). Its configuration, temporary files and the web's socket are
# in LOCAL_ROUTER_RUN_DIR, which the workers must be able to reach (so not inside var/ as root).
LOCAL_ROUTER_USER = env_str("LOCAL_ROUTER_USER", "www-data")
# How long nginx keeps an allowed forward-auth answer (per caller and route): a suspension or
# a stop reaches ongoing HTTP requests that much later; 0 asks the portal every time.
LOCAL_ROUTER_AUTH_CACHE_SECONDS = env_int("LOCAL_ROUTER_AUTH_CACHE_SECONDS", 2, minimum=0)
# As root, one folder per installation (several portals, or a test's, may run on one machine).
_ROUTER_INSTANCE = hashlib.sha256(str(VAR_DIR).encode()).hexdigest()[:12]
LOCAL_ROUTER_RUN_DIR = Path(
    env_str(
        "LOCAL_ROUTER_RUN_DIR",
        f"/run/jupyter-portal-router/{_ROUTER_INSTANCE}"
        if os.geteuid() == 0
        else str(VAR_DIR / "router"),
    )
).absolute()

# The Kubernetes back-end (SPAWNER=kubernetes): one pod per session in KUBE_NAMESPACE, reached
# through a per-session Ingress under the portal's host (see docs/architecture.md, "Routing").
# Read here; checked beside the spawner when the app starts (spawners/kube_settings.py).
KUBE_CONFIG_FILE = env_str("KUBE_CONFIG_FILE")  # empty: the worker's in-cluster service account
KUBE_NAMESPACE = env_str("KUBE_NAMESPACE", "jupyter-sessions")
KUBE_PUBLIC_URL = env_str("KUBE_PUBLIC_URL").rstrip("/")
KUBE_INGRESS_CLASS = env_str("KUBE_INGRESS_CLASS", "nginx")
KUBE_AUTH_URL = env_str(
    "KUBE_AUTH_URL", "http://portal-web.jupyter-portal.svc.cluster.local/auth/session/"
)
KUBE_SCRATCH_CLAIM = env_str("KUBE_SCRATCH_CLAIM", "scratch")
KUBE_HOME_STORAGE_CLASS = env_str("KUBE_HOME_STORAGE_CLASS")
KUBE_HOME_SIZE = env_str("KUBE_HOME_SIZE", "1Gi")
KUBE_LIBRARY_IMAGE = env_str("KUBE_LIBRARY_IMAGE", "docker.io/alpine/git:v2.47.2")
KUBE_EGRESS_ALLOW_CIDRS = env_list("KUBE_EGRESS_ALLOW_CIDRS", [])
KUBE_ROUTER_NAMESPACE = env_str("KUBE_ROUTER_NAMESPACE", "ingress-nginx")
KUBE_ROUTER_POD_LABELS = env_str("KUBE_ROUTER_POD_LABELS", "app.kubernetes.io/name=ingress-nginx")
KUBE_UNSCHEDULABLE_SECONDS = env_int("KUBE_UNSCHEDULABLE_SECONDS", 90, minimum=1)
KUBE_REQUEST_TIMEOUT_SECONDS = env_float("KUBE_REQUEST_TIMEOUT_SECONDS", 10.0, minimum=0.1)
KUBE_RETRIES = env_int("KUBE_RETRIES", 4, minimum=0)


# --- Cache -------------------------------------------------------------------------------------


def _shared_cache(broker: str) -> dict[str, object]:
    """Redis on the Celery broker, so that every web process sees the same counters (request
    rates) and entries (OIDC_BEARER_CACHE_SECONDS); the embedded broker's socket as a redis-py
    unix:// URL. Another broker (memory://, in some benchmarks): a cache per process."""
    if broker.startswith("redis+socket://"):
        location = "unix://" + broker.removeprefix("redis+socket://")
    elif broker.startswith(("redis://", "rediss://")):
        location = broker
    else:
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": location,
        "KEY_PREFIX": "portal",
        # A broker that does not answer costs a request a second at most (the throttle then
        # lets it through), not a hang.
        "OPTIONS": {"socket_timeout": 1.0, "socket_connect_timeout": 1.0},
    }


CACHES = {"default": _shared_cache(CELERY_BROKER_URL)}

# --- Storage ------------------------------------------------------------------------------------

# Private storage: one home per user (the session's working directory; pip/conda installs go
# there), kept while the user starts a session at least every STORAGE_RETENTION_DAYS.
STORAGE_HOME_ROOT = Path(env_str("STORAGE_HOME_ROOT", str(VAR_DIR / "home"))).resolve()
STORAGE_PRIVATE_QUOTA_BYTES = env_int("STORAGE_PRIVATE_QUOTA_BYTES", 1024**3, minimum=1)
STORAGE_RETENTION_DAYS = env_int("STORAGE_RETENTION_DAYS", 31, minimum=1)
STORAGE_RETENTION_WARNING_DAYS = sorted(
    {int(day) for day in env_list("STORAGE_RETENTION_WARNING_DAYS", ["7", "1"]) if day.isdigit()},
    reverse=True,
)
# Scratch: temporary, per-user quota; over it, the user's largest (or oldest) files go until
# usage is under the low-water mark. Over the shared maximum, the least recently modified
# files across all users go until the whole is under its low-water mark.
STORAGE_SCRATCH_ROOT = Path(env_str("STORAGE_SCRATCH_ROOT", str(VAR_DIR / "scratch"))).resolve()
# A quota or maximum of 0 would remove every scratch file: the minimum is one byte.
STORAGE_SCRATCH_QUOTA_BYTES = env_int("STORAGE_SCRATCH_QUOTA_BYTES", 100 * 1024**3, minimum=1)
STORAGE_SCRATCH_LOW_WATER = env_float("STORAGE_SCRATCH_LOW_WATER", 0.9, minimum=0.0)
STORAGE_SCRATCH_POLICY = env_choice("STORAGE_SCRATCH_POLICY", "largest", ("largest", "oldest"))
STORAGE_SHARED_SCRATCH_MAX_BYTES = env_int(
    "STORAGE_SHARED_SCRATCH_MAX_BYTES", 10 * 1024**4, minimum=1
)
STORAGE_SHARED_SCRATCH_LOW_WATER = env_float("STORAGE_SHARED_SCRATCH_LOW_WATER", 0.9, minimum=0.0)
# Modification times further than this in the future count as an attempt to dodge the
# oldest-first cleanups; quota violations recurring within the suspension window count too.
STORAGE_FUTURE_MTIME_SLACK_SECONDS = env_int("STORAGE_FUTURE_MTIME_SLACK_SECONDS", 3600, minimum=0)
STORAGE_SWEEP_MINUTES = env_int("STORAGE_SWEEP_MINUTES", 15, minimum=1)
CELERY_BEAT_SCHEDULE["storage-sweep"] = {
    "task": "storage_app.tasks.sweep",
    "schedule": timedelta(minutes=STORAGE_SWEEP_MINUTES),
    # A pass still queued at the next tick is dropped: that tick's pass does the same work.
    "options": {"expires": STORAGE_SWEEP_MINUTES * 60},
}
# The read-only notebooks library cloned (shallow) into each session's home at spawn: a git
# URL; "builtin" (the default), the library that ships with the portal (images/notebooks-library,
# from a repository the portal keeps in VAR_DIR; works offline; storage_app/library_builtin.py),
# for local sessions only (Kubernetes pods cannot reach it and get none); empty or "none": no
# library.
_library_url = env_str("NOTEBOOKS_LIBRARY_URL", "builtin").strip()
NOTEBOOKS_LIBRARY_URL = "" if _library_url.lower() == "none" else _library_url
NOTEBOOKS_LIBRARY_BRANCH = env_str("NOTEBOOKS_LIBRARY_BRANCH")
NOTEBOOKS_LIBRARY_TIMEOUT_SECONDS = env_int("NOTEBOOKS_LIBRARY_TIMEOUT_SECONDS", 60, minimum=1)
for _name, _fraction in (
    ("STORAGE_SCRATCH_LOW_WATER", STORAGE_SCRATCH_LOW_WATER),
    ("STORAGE_SHARED_SCRATCH_LOW_WATER", STORAGE_SHARED_SCRATCH_LOW_WATER),
):
    if not 0 < _fraction <= 1:
        raise ImproperlyConfigured(f"{_name} must be a fraction in (0, 1], got {_fraction}")
# Homes and scratch in one tree would let a cleanup or a retention deletion of one area
# remove the other's files (a user named "scratch" would even get every user's scratch).
if (
    STORAGE_HOME_ROOT == STORAGE_SCRATCH_ROOT
    or STORAGE_HOME_ROOT in STORAGE_SCRATCH_ROOT.parents
    or STORAGE_SCRATCH_ROOT in STORAGE_HOME_ROOT.parents
):
    raise ImproperlyConfigured(
        "STORAGE_HOME_ROOT and STORAGE_SCRATCH_ROOT must be separate folders, neither inside "
        f"the other (got {STORAGE_HOME_ROOT} and {STORAGE_SCRATCH_ROOT})"
    )

# --- Suspension ---------------------------------------------------------------------------------

# Rules that suspend automatically (service rule 11); staff lift suspensions after investigating.
SUSPENSION_SCRATCH_VIOLATIONS = env_int("SUSPENSION_SCRATCH_VIOLATIONS", 3, minimum=1)
SUSPENSION_SCRATCH_WINDOW_HOURS = env_int("SUSPENSION_SCRATCH_WINDOW_HOURS", 24, minimum=1)
SUSPENSION_CIRCUMVENTION_EVENTS = env_int("SUSPENSION_CIRCUMVENTION_EVENTS", 1, minimum=1)

# E-mail to users (suspension, reinstatement). EMAIL_BACKEND is read above; these apply to the
# SMTP back-end (django.core.mail.backends.smtp.EmailBackend).
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "webmaster@localhost")
# Where a suspended user appeals: an e-mail address, shown as a mailto: link on the suspended
# page and written in the suspension mail. By default the address the portal's mail comes from.
SUSPENSION_APPEAL_CONTACT = (
    env_str("SUSPENSION_APPEAL_CONTACT") or email.utils.parseaddr(DEFAULT_FROM_EMAIL)[1]
)
try:
    validate_email(SUSPENSION_APPEAL_CONTACT)
except ValidationError:
    raise ImproperlyConfigured(
        "SUSPENSION_APPEAL_CONTACT must be an e-mail address (suspended users write to it), "
        f"got {SUSPENSION_APPEAL_CONTACT!r}"
    ) from None
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("set either EMAIL_USE_TLS (STARTTLS) or EMAIL_USE_SSL, not both")
# Mail is sent right after a suspension commits, in the request or task that made it: a mail
# server that does not answer must not hold that for long.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
