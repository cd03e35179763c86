"""Settings for the fleet onboarding portal, 12-factor through django-environ.

Every variable has a default that needs no external service (SQLite, a filesystem Celery
transport, generated development secrets), except in production
(``PORTAL_PRODUCTION=true``), where missing secrets stop the portal with a sentence.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from .secrets_file import load_or_create_dev_secrets

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)  # optional, never required

DATA_DIR = Path(env.str("PORTAL_DATA_DIR", default=str(BASE_DIR / "data")))
PRODUCTION = env.bool("PORTAL_PRODUCTION", default=False)
# Off unless a developer sets DEBUG=1 (the demo sets it for the processes it starts).
DEBUG = env.bool("DEBUG", default=False)

if PRODUCTION:
    _missing = [
        name
        for name in (
            "SECRET_KEY",
            "FIELD_ENCRYPTION_KEY",
            "DATABASE_URL",
            "ALLOWED_HOSTS",
            "CELERY_BROKER_URL",
        )
        if not env.str(name, default="")
    ]
    if _missing:
        raise ImproperlyConfigured(
            "Production settings (PORTAL_PRODUCTION=true) need these environment variables "
            "set: " + ", ".join(_missing) + "."
        )
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be off in production (PORTAL_PRODUCTION=true).")
    _dev_secrets: dict[str, str] = {}
else:
    _dev_secrets = load_or_create_dev_secrets(DATA_DIR / "secrets.env")

SECRET_KEY = env.str("SECRET_KEY", default=_dev_secrets.get("SECRET_KEY", ""))
# One Fernet key, or a comma-separated list (the first encrypts, all decrypt: rotation).
_field_keys = env.list(
    "FIELD_ENCRYPTION_KEY", default=[_dev_secrets.get("FIELD_ENCRYPTION_KEY", "")]
)
FIELD_ENCRYPTION_KEY: str | list[str] = _field_keys[0] if len(_field_keys) == 1 else _field_keys


def _check_fernet_keys(keys: list[str]) -> None:
    from cryptography.fernet import Fernet

    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEY entry {position} is not a Fernet key (32 url-safe "
                'base64-encoded bytes); generate one with `python -c "from cryptography.fernet '
                'import Fernet; print(Fernet.generate_key().decode())"`.'
            ) from None


_check_fernet_keys(_field_keys)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "django_celery_beat",
    "encrypted_model_fields",
    "portal",
    "portal.cockpit",
    "provisioning",
    "signing",
    "devices",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
SITE_ID = 1

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "portal" / "templates"],
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

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'portal.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat, agents' API calls) share the file: wait for locks
    # instead of failing, and use WAL so readers do not block the writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        }
    )
    # A file (not :memory:) so that a real Celery worker process can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-portal.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    if DATABASES["default"]["ENGINE"].endswith("postgresql"):
        # Django's own queries use client-side binding and are never prepared; the agents'
        # hot reads (portal/hot_reads.py) ask psycopg to prepare theirs, which it does only
        # with a threshold set (Django's default, None, turns preparing off).
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 1_000_000)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(DATA_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Celery --------------------------------------------------------------------------------
# Default: kombu's filesystem transport, which needs no server yet lets a separate worker and
# beat process share work on one machine. Set CELERY_BROKER_URL=redis://… in production.
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# The queues are declared so that a plain `celery -A portal worker` (no -Q) consumes all of
# them; `-Q signing` still splits a worker off for one workload.
CELERY_TASK_QUEUES = tuple(
    Queue(_name, Exchange(_name), routing_key=_name) for _name in ("default", "signing", "fleet")
)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_DEFAULT_EXCHANGE = "default"
CELERY_TASK_DEFAULT_ROUTING_KEY = "default"
CELERY_TASK_ROUTES = {
    "signing.tasks.*": {"queue": "signing"},
    "provisioning.tasks.fleet_*": {"queue": "fleet"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Write each periodic task's last run to the database as it is sent (not every 3 minutes):
# the admin index reads the heartbeat's last run to tell whether beat is alive.
CELERY_BEAT_SYNC_EVERY = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Reuse a worker's connection across tasks (Celery closes it around every task otherwise);
# portal/celery.py applies CONN_MAX_AGE / CONN_HEALTH_CHECKS per task instead.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)

# --- Signing ---------------------------------------------------------------------------------
# Per station: new onboarding requests per minute, and requests waiting for approval at once
# (both answered 429 with Retry-After when exceeded; docs/signing.md).
SIGNING_RATE_LIMIT_PER_MINUTE = env.int("SIGNING_RATE_LIMIT_PER_MINUTE", default=60)
SIGNING_MAX_PENDING_PER_STATION = env.int("SIGNING_MAX_PENDING_PER_STATION", default=50)
SIGNING_PENDING_RETRY_AFTER = 300  # seconds a station is told to wait when its cap is reached

# --- AWS -----------------------------------------------------------------------------------
# Points every boto3 client at the local AWS stand-in or a moto server when set.
AWS_ENDPOINT_URL = env.str("AWS_ENDPOINT_URL", default="") or None
AWS_RETRY_MODE = env.str("AWS_RETRY_MODE", default="standard")  # or "adaptive"
AWS_MAX_ATTEMPTS = env.int("AWS_MAX_ATTEMPTS", default=5)
AWS_CALL_LOG_RETENTION_DAYS = env.int("AWS_CALL_LOG_RETENTION_DAYS", default=30)
# The outbox of AWS actions: calls per second across all workers, attempts before an action
# is marked failed, and when a RUNNING action whose worker died is taken up again.
AWS_ACTION_RATE = env.float("AWS_ACTION_RATE", default=10.0)
AWS_ACTION_MAX_ATTEMPTS = env.int("AWS_ACTION_MAX_ATTEMPTS", default=8)
AWS_ACTION_STALE_SECONDS = env.int("AWS_ACTION_STALE_SECONDS", default=300)
# A certificate retired after a proven renewal stays in AWS (INACTIVE, detached) this long
# before it is deleted; the seconds override (tests, demos) wins when set.
AWS_RETIRED_CERTIFICATE_GRACE_DAYS = env.int("AWS_RETIRED_CERTIFICATE_GRACE_DAYS", default=7)
AWS_RETIRED_CERTIFICATE_GRACE_SECONDS = env.int(
    "AWS_RETIRED_CERTIFICATE_GRACE_SECONDS", default=None
)
# How often a confirm looks again at a certificate still PENDING_ACTIVATION (or not yet in
# AWS) after a device's first connection, before it settles with the reason.
AWS_CONFIRM_ATTEMPTS = env.int("AWS_CONFIRM_ATTEMPTS", default=4)
# The fleet audit's pace (AWS calls per second; blank: AWS_ACTION_RATE).
FLEET_AUDIT_RATE = env.float("FLEET_AUDIT_RATE", default=None)
# A revoked certificate's thing is moved into this thing group (created when missing); empty:
# no quarantine group.
AWS_QUARANTINE_THING_GROUP = env.str("AWS_QUARANTINE_THING_GROUP", default="")

# --- Commands' secrets (never argv) --------------------------------------------------------
CA_PASSWORD = env.str("CA_PASSWORD", default="") or None
DEVICE_CERT_PASSWORD = env.str("DEVICE_CERT_PASSWORD", default="") or None

# --- CA keys in an HSM (key backend "pkcs11"); the PIN is never stored, logged or in argv --
PKCS11_MODULE = env.str("PKCS11_MODULE", default="")  # e.g. /usr/lib/softhsm/libsofthsm2.so
PKCS11_TOKEN_LABEL = env.str("PKCS11_TOKEN_LABEL", default="")  # token for new CA keys
PKCS11_PIN = env.str("PKCS11_PIN", default="")

# --- Station enrolment and renewal --------------------------------------------------------
ENROLLMENT_CODE_TTL_DAYS = env.int("ENROLLMENT_CODE_TTL_DAYS", default=7)
# Failed code exchanges allowed per client address / in all per ENROLLMENT_RATE_WINDOW s.
ENROLLMENT_RATE_PER_ADDRESS = env.int("ENROLLMENT_RATE_PER_ADDRESS", default=10)
ENROLLMENT_RATE_GLOBAL = env.int("ENROLLMENT_RATE_GLOBAL", default=300)
ENROLLMENT_RATE_WINDOW = env.int("ENROLLMENT_RATE_WINDOW", default=600)
# How far a renewal proof's timestamp may be from the portal's clock, in seconds.
RENEWAL_PROOF_MAX_SKEW = env.int("RENEWAL_PROOF_MAX_SKEW", default=300)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "botocore": {"level": "WARNING"},
        "django.db.backends": {"level": "WARNING"},
    },
}

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # container health checks speak plain HTTP
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

# --- Stations, agent protocol and fleet install (fleet helper) ------------------------------
# A station is "online" when its agent reported within this many seconds, "stale" after that,
# "never seen" when it never reported. Keep it a few poll intervals wide.
STATION_ONLINE_SECONDS = env.int("STATION_ONLINE_SECONDS", default=120)
AGENT_POLL_INTERVAL = env.int("AGENT_POLL_INTERVAL", default=30)
AGENT_HEARTBEAT_INTERVAL = env.int("AGENT_HEARTBEAT_INTERVAL", default=30)
AGENT_MAX_BODY_BYTES = env.int("AGENT_MAX_BODY_BYTES", default=256 * 1024)
FLEET_INSTALL_DEFAULT_CONCURRENCY = env.int("FLEET_INSTALL_DEFAULT_CONCURRENCY", default=50)
FLEET_INSTALL_DEFAULT_TIMEOUT_HOURS = env.int("FLEET_INSTALL_DEFAULT_TIMEOUT_HOURS", default=72)

# --- Alerts and metrics (docs/operations.md) --------------------------------------------------
# Alert emails go through Django's mail settings; the console backend prints them when unset.
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if env.str("EMAIL_HOST", default="")
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="fleet-portal@localhost")
# GET /metrics answers only with "Authorization: Bearer <METRICS_TOKEN>"; 404 while unset.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# The agent's poll and report write "last seen" at most this often when nothing else changed.
STATION_SEEN_WRITE_SECONDS = env.int("STATION_SEEN_WRITE_SECONDS", default=60)
