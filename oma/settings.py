"""OMA settings: one env-driven module (django-environ). Tests override in tests/settings.py.

Every setting has an embedded default so that `make run` works with nothing installed but Python:
SQLite for the database and kombu's filesystem transport as the Celery broker.
"""

from __future__ import annotations

import base64
import hashlib
from email.utils import parseaddr
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from oma.ops.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
# A merchant's own translations of OMA's texts (customer e-mails): locale/<lang>/LC_MESSAGES/django.po.
LOCALE_PATHS = [BASE_DIR / "locale"]
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="dev-insecure-change-me" if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see .env.example)")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Fernet keys, comma-separated: the first encrypts, all decrypt (rotation: put the new key first).
# In DEBUG without keys, a key derived from SECRET_KEY keeps `make run` zero-config; production must set them.
OMA_ENCRYPTION_KEYS: list[str] = env.list("OMA_ENCRYPTION_KEYS", default=[])
if not OMA_ENCRYPTION_KEYS and DEBUG:
    OMA_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()]

INSTALLED_APPS = [
    "oma.merchant.admin_apps.OmaAdminConfig",  # django.contrib.admin with the tenant-scoped site (oma.core.tenancy)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "oma.core",
    "oma.stores",
    "oma.orders",
    "oma.fulfillment",
    "oma.sandbox",
    "tracking",
    "webhooks",
    "oma.channels",
    "oma.merchant",
    "oma.notifications",
    "oma.events",
    "oma.ops",
]

# Merchants group members get view/add/change/delete on store-scoped models, within their stores only.
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "oma.core.tenancy.MerchantPermissionBackend",
]
# Django's password forms, createsuperuser, changepassword and add_merchant_user check new passwords with these.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},  # 8 characters
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

MIDDLEWARE = [
    # First: answers the container's own liveness probe (loopback only) before any Host check (oma.ops.liveness).
    "oma.ops.liveness.LoopbackLivenessMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # admin static files under gunicorn, no extra server
    "oma.ops.middleware.OpsMiddleware",  # request id and store in the log context; webhook answer counters
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "oma.urls"
WSGI_APPLICATION = "oma.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "oma" / "templates"],
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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'oma.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat) share the file: wait for locks instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 30, "transaction_mode": "IMMEDIATE"})
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql"):
    # A database host that vanished fails a request (and /healthz) within seconds instead of hanging on TCP.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", 5))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(VAR_DIR / "static"))
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# Production hardening, driven by DEBUG so that `check --deploy` passes with only DEBUG=0 and SECRET_KEY set.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^healthz/live$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
X_FRAME_OPTIONS = "DENY"

# --- Redis and Celery -------------------------------------------------------------------------------
# REDIS_URL: the shared rate limiter and locks; unset, they fall back to in-process state.
REDIS_URL: str = env.str("REDIS_URL", default="")
CELERY_BROKER_URL: str = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
    # Longer than any countdown we use (we never count down more than 30 min; long waits live in the DB).
    "visibility_timeout": 3600,
    "socket_timeout": 5,
    "socket_connect_timeout": 3,
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        {
            "data_folder_in": str(_broker_dir / "out"),
            "data_folder_out": str(_broker_dir / "out"),
            "processed_folder": str(_broker_dir / "processed"),
            "store_processed": False,
            # kombu's default is ./control, in whatever directory the process started from.
            "control_folder": str(_broker_dir / "control"),
        }
    )
    # The folders must exist before the first publish, whichever process (web, worker, manage.py) comes first.
    for _folder in ("out", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True  # every task is idempotent: a redelivery is harmless
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # a killed worker re-queues its task instead of losing it
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# HTTP budget per attempt (~20 s) < soft limit < hard limit < visibility timeout.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 30
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# django-celery-beat's DatabaseScheduler behind a lease: a second beat stands by instead of doubling the schedule.
CELERY_BEAT_SCHEDULER = "oma.ops.beat:LeasedDatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# Queues per workload: a long task of one kind (a CSV import: up to 55 minutes; a ShipStation poll: 10) never holds
# the worker slots another kind needs. Production runs a worker per group of queues (README, "The production
# shape"); `make run` and the test workers consume them all. Every OMA task is routed here by name (beat's entries
# too, since they are sent by name); tests/ops/test_queues.py fails for a task that is not.
# `celery` stays the default queue, for anything unrouted (Celery's own tasks), and carries the heartbeat: a
# deployment with no worker on it shows up on /healthz as a stale worker instead of silently piling tasks up.
OMA_CELERY_QUEUES: tuple[str, ...] = ("celery", "webhooks", "pushes", "polls", "sweeps", "imports")
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = {name: {"exchange": name, "routing_key": name} for name in OMA_CELERY_QUEUES}
_TASKS_BY_QUEUE: dict[str, tuple[str, ...]] = {
    "celery": ("ops.heartbeat",),
    # Webhook processing and its outbox (which also prunes old deliveries): seconds each, latency matters most.
    "webhooks": ("webhooks.process_deliveries", "webhooks.dispatch_outbox"),
    # Writes to Genstore and what queues them: fulfillment pushes, orders created for external channels, and
    # matching tracking records to orders that just arrived (its outcome is a push).
    "pushes": (
        "fulfillment.push_shipment", "fulfillment.push_due", "fulfillment.push_pending",
        "channels.create_external_orders", "channels.enqueue_external_order_drains", "channels.match_waiting",
        # Messages to customers and other tools: short HTTP or SMTP calls, each with a timeout.
        "notifications.send_due", "notifications.enqueue_due", "events.deliver_due", "events.enqueue_due",
    ),
    # Reading other systems on a schedule: carriers, ShipStation, and the matching net a channel poll ends with.
    "polls": ("tracking.poll_due", "channels.poll_all", "channels.poll_channel", "channels.match_waiting_all"),
    # Long reads and housekeeping: order sweeps and their deferred change hooks, re-syncs, digests, learned
    # delivery times, re-queueing stalled imports, the nightly reconciliation (it re-reads Genstore first).
    "sweeps": (
        "orders.sweep_all_stores", "orders.sweep_store", "orders.changed_run_hooks", "merchant.resync_orders",
        "merchant.send_alert_digests", "merchant.learn_transit_times", "channels.enqueue_stalled_csv_imports",
        "fulfillment.reconcile_all_stores", "fulfillment.reconcile_store", "fulfillment.catch_up_genstore_fulfillments",
    ),
    # Files imported by a worker: tracking CSVs (up to 100,000 rows), order files.
    "imports": ("channels.import_queued_csv", "channels.import_queued_orders"),
}
CELERY_TASK_ROUTES = {task: {"queue": queue} for queue, tasks in _TASKS_BY_QUEUE.items() for task in tasks}

# Cache: the tracking page's per-client rate limit. Shared through Redis when there is one.
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "oma"}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "oma"}
    )
}

# --- Merchant tools: tracking page, alert digests, estimated delivery ---------------------------------
# Email: EMAIL_URL says where mail goes (django-environ: smtp+tls://user:password@host:587, smtp+ssl://...:465,
# smtp://host:25, consolemail:// (the default, also when empty), filemail:////absolute/path (four slashes),
# dummymail://); percent-encode `@ : /` in the user and password. EMAIL_BACKEND, when set, replaces only the
# backend class that EMAIL_URL's scheme names (host, port, login and TLS still come from EMAIL_URL).
_email = env.email_url_config(env.str("EMAIL_URL", default="") or "consolemail://")
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default=_email["EMAIL_BACKEND"])
EMAIL_HOST = _email.get("EMAIL_HOST") or "localhost"
EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS", False))
EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL", False))
EMAIL_PORT = _email.get("EMAIL_PORT") or (465 if EMAIL_USE_SSL else 587 if EMAIL_USE_TLS else 25)
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD") or ""
if _email.get("EMAIL_FILE_PATH"):
    EMAIL_FILE_PATH = _email["EMAIL_FILE_PATH"]
# Seconds an SMTP server may take to answer: a hung server fails the digest task, which sends again next run.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="OMA <oma@localhost>")
# The sender of the error mails to ADMINS.
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
# Who gets a mail for each server error (see LOGGING): comma-separated "Name <address>" or bare addresses.
ADMINS = [parseaddr(entry) for entry in env.list("ADMINS", default=[])]
if any("@" not in address for _, address in ADMINS):
    raise ImproperlyConfigured('ADMINS: comma-separated "Name <address>" or addresses (no commas in names)')
# OMA's public address, e.g. https://oma.example.com: links in emails, the webhook address admin shows, and the
# branded tracking link pushed to Genstore as trackingUrl (unset: pushes keep the carrier's link).
OMA_PUBLIC_URL = env.str("OMA_PUBLIC_URL", default="")
OMA_TRACK_LOOKUPS_PER_WINDOW = env.int("OMA_TRACK_LOOKUPS_PER_WINDOW", default=10)
OMA_TRACK_WINDOW_SECONDS = env.int("OMA_TRACK_WINDOW_SECONDS", default=600)
# Reverse proxies in front of OMA that append to X-Forwarded-For (1 behind the usual TLS proxy): the tracking
# lookup's rate limit counts the client they saw, not the proxy. 0 (the default) trusts no X-Forwarded-For.
OMA_TRUSTED_PROXY_COUNT = env.int("OMA_TRUSTED_PROXY_COUNT", default=0)
# Hosts (fnmatch patterns) every merchant may point a store's, carrier account's or channel's base URL at, besides
# that integration's own API hosts (oma.core.outbound): sandboxes, staging servers. Superusers may use any URL.
OMA_MERCHANT_API_HOSTS: list[str] = env.list("OMA_MERCHANT_API_HOSTS", default=[])
OMA_EDD_MIN_SAMPLES = env.int("OMA_EDD_MIN_SAMPLES", default=10)
OMA_EDD_HISTORY_DAYS = env.int("OMA_EDD_HISTORY_DAYS", default=180)
# A tracking CSV uploaded in admin with more rows than this is imported by a worker, not inside the request
# (about 130 rows a second on a small machine: 2,000 rows keep the page's answer within about 15 s).
OMA_CSV_QUEUE_ABOVE_ROWS = env.int("OMA_CSV_QUEUE_ABOVE_ROWS", default=2000)
OMA_EXTERNAL_ORDER_DRAINS = env.int("OMA_EXTERNAL_ORDER_DRAINS", default=4)  # per store at once (1..64)
# Channel polling (ShipStation): how far back a poll reads, how often, how many orders at most, and how long a
# voided label still withdraws its shipment.
CHANNELS_POLL_LOOKBACK_DAYS = env.int("CHANNELS_POLL_LOOKBACK_DAYS", default=30)
CHANNELS_POLL_INTERVAL_MINUTES = env.int("CHANNELS_POLL_INTERVAL_MINUTES", default=30)
CHANNELS_POLL_MAX_ORDERS = env.int("CHANNELS_POLL_MAX_ORDERS", default=2000)
CHANNELS_VOID_WINDOW_DAYS = env.int("CHANNELS_VOID_WINDOW_DAYS", default=7)

# --- Tracking (carrier polling) --------------------------------------------------------------------
# A shipment with no carrier event for this many days stops being polled (status expired).
TRACKING_MAX_AGE_DAYS = env.int("TRACKING_MAX_AGE_DAYS", default=60)
TRACKING_CONNECT_TIMEOUT = env.float("TRACKING_CONNECT_TIMEOUT", default=3.05)
TRACKING_READ_TIMEOUT = env.float("TRACKING_READ_TIMEOUT", default=10.0)
TRACKING_MAX_ATTEMPTS = env.int("TRACKING_MAX_ATTEMPTS", default=3)  # per carrier call, transient failures only
# A poll run never sleeps longer than this for a carrier's rate limit: the rest stays due for the next run.
TRACKING_RATE_LIMIT_MAX_WAIT_SECONDS = env.float("TRACKING_RATE_LIMIT_MAX_WAIT_SECONDS", default=5.0)
TRACKING_POLL_TIME_BUDGET_SECONDS = env.float("TRACKING_POLL_TIME_BUDGET_SECONDS", default=240.0)  # < soft limit
TRACKING_POLL_CONCURRENCY = env.int("TRACKING_POLL_CONCURRENCY", default=4)  # carrier accounts polled at once
TRACKING_CLAIM_CHUNK = env.int("TRACKING_CLAIM_CHUNK", default=480)  # shipments claimed at a time per account
TRACKING_CLAIM_LEASE_SECONDS = env.int("TRACKING_CLAIM_LEASE_SECONDS", default=600)
TRACKING_BACKOFF_BASE_SECONDS = env.int("TRACKING_BACKOFF_BASE_SECONDS", default=60)  # failing carrier account
TRACKING_BACKOFF_MAX_SECONDS = env.int("TRACKING_BACKOFF_MAX_SECONDS", default=3600)

# --- Webhooks (receiver, outbox, retention) --------------------------------------------------------

# Largest body accepted; bigger deliveries get 413 before anything else is looked at.
OMA_WEBHOOK_MAX_BODY_BYTES = env.int("OMA_WEBHOOK_MAX_BODY_BYTES", default=1024 * 1024)
# Deliveries (and customer data exports) older than this are pruned by the outbox task.
OMA_WEBHOOK_RETENTION_DAYS = env.int("OMA_WEBHOOK_RETENTION_DAYS", default=30)
# Processing attempts before a delivery is marked failed (backoff doubles from the base, capped).
OMA_WEBHOOK_MAX_ATTEMPTS = env.int("OMA_WEBHOOK_MAX_ATTEMPTS", default=8)
OMA_WEBHOOK_RETRY_BASE_SECONDS = env.int("OMA_WEBHOOK_RETRY_BASE_SECONDS", default=30)
# Below half the broker's visibility timeout (3600 s): a longer countdown would be redelivered early.
OMA_WEBHOOK_RETRY_MAX_SECONDS = env.int("OMA_WEBHOOK_RETRY_MAX_SECONDS", default=1800)
# An unfinished delivery is handed to the broker again this long after its last dispatch.
OMA_WEBHOOK_REDISPATCH_SECONDS = env.int("OMA_WEBHOOK_REDISPATCH_SECONDS", default=300)
# A processing attempt that has not finished after this long is presumed dead (above the task's hard limit).
OMA_WEBHOOK_LEASE_SECONDS = env.int("OMA_WEBHOOK_LEASE_SECONDS", default=300)
# How long a web process reuses a store's row (id, secrets) between deliveries; 0 reads it every time.
OMA_WEBHOOK_STORE_CACHE_SECONDS = env.int("OMA_WEBHOOK_STORE_CACHE_SECONDS", default=10)
# True: the web process publishes from a background thread (requests never wait for the broker); False: inline.
OMA_WEBHOOK_BACKGROUND_PUBLISH = env.bool("OMA_WEBHOOK_BACKGROUND_PUBLISH", default=True)
# Outbox: rows claimed per batch, and rows pruned per run.
OMA_WEBHOOK_DISPATCH_BATCH = env.int("OMA_WEBHOOK_DISPATCH_BATCH", default=500)
OMA_WEBHOOK_PRUNE_BATCH = env.int("OMA_WEBHOOK_PRUNE_BATCH", default=2000)

# --- Genstore ---------------------------------------------------------------------------------------
GENSTORE_DEFAULT_API_VERSION = env.str("GENSTORE_DEFAULT_API_VERSION", default="202412")
GENSTORE_CONNECT_TIMEOUT = env.float("GENSTORE_CONNECT_TIMEOUT", default=5.0)
GENSTORE_READ_TIMEOUT = env.float("GENSTORE_READ_TIMEOUT", default=30.0)
GENSTORE_MAX_RETRIES = env.int("GENSTORE_MAX_RETRIES", default=8)
# Incremental sweeps re-read this many minutes before the last good sweep started (clock skew, late commits).
OMA_SWEEP_OVERLAP_MINUTES = env.int("OMA_SWEEP_OVERLAP_MINUTES", default=10)
OMA_SWEEP_PAGE_SIZE = env.int("OMA_SWEEP_PAGE_SIZE", default=250)

# --- Logging and operations -------------------------------------------------------------------------
# Every handler redacts secrets and customer e-mails/phones and adds store/order ids (oma.ops.logging).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")  # plain | json (one object per line)
LOG_FILE = env.str("LOG_FILE", default="")  # also write to this file (reopened after logrotate moves it)
# With ADMINS set and DEBUG off, each server error (a 500) is also mailed to them, redacted like the logs.
LOGGING = logging_config(
    level=LOG_LEVEL, log_format=LOG_FORMAT, log_file=LOG_FILE, mail_admins=bool(ADMINS) and not DEBUG
)
OMA_BEAT_LEASE_SECONDS = env.float("OMA_BEAT_LEASE_SECONDS", default=30.0)  # a dead beat's standby waits this long
OMA_BEAT_STALE_SECONDS = env.float("OMA_BEAT_STALE_SECONDS", default=60.0)  # /healthz: beat's lease renewal
OMA_WORKER_STALE_SECONDS = env.float("OMA_WORKER_STALE_SECONDS", default=150.0)  # /healthz: the heartbeat task
OMA_METRICS_TOKEN = env.str("OMA_METRICS_TOKEN", default="")  # set: /metrics wants "Authorization: Bearer <it>"
# With DEBUG off and no token, /metrics answers 401 (it names every tenant's store) unless this is set.
OMA_METRICS_PUBLIC = env.bool("OMA_METRICS_PUBLIC", default=False)
OMA_METRICS_CACHE_SECONDS = env.float("OMA_METRICS_CACHE_SECONDS", default=5.0)
# The webhook processing lag gauges look at deliveries received in this last window.
OMA_METRICS_LAG_WINDOW_SECONDS = env.int("OMA_METRICS_LAG_WINDOW_SECONDS", default=600)

# --- Error reporting (optional) -----------------------------------------------------------------------
# SENTRY_DSN set: errors of the web processes and Celery tasks (and error log lines) go to Sentry, each event
# passed through the log redaction first (oma.ops.errors). sentry-sdk is only imported then.
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="development" if DEBUG else "production")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)  # 0..1 of requests and tasks traced
if SENTRY_DSN:
    from oma.ops.errors import sentry_init  # importing sentry-sdk costs about 0.3 s: only when it reports

    sentry_init(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT, traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE)
