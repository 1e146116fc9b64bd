"""Test settings: the real settings with the databases and brokers the machine has."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("OMA_ENCRYPTION_KEYS", "u6HqWmtyJ5bOVyI1Q4JkQqoWW9cXfC5nCUEO1GJwbQ0=")
os.environ.setdefault("DEBUG", "0")

from tests.services import HAVE_POSTGRES, HAVE_REDIS, POSTGRES_URL, REDIS_URL, SHARED_REDIS_URL

os.environ.setdefault("DATABASE_URL", POSTGRES_URL if HAVE_POSTGRES else "sqlite:///:memory:")
# An xdist worker inherits the environment its controller set below (the first Redis database): it takes its own.
# Anything else already set (a test's subprocess pointed at a private redis-server) stays.
if os.environ.get("REDIS_URL") == SHARED_REDIS_URL:
    os.environ["REDIS_URL"] = REDIS_URL
if os.environ.get("CELERY_BROKER_URL") == SHARED_REDIS_URL:
    os.environ["CELERY_BROKER_URL"] = REDIS_URL
if HAVE_REDIS:
    os.environ.setdefault("REDIS_URL", REDIS_URL)
os.environ.setdefault("CELERY_BROKER_URL", REDIS_URL if HAVE_REDIS else "memory://")

from oma.settings import *  # noqa: F403
from oma.settings import DATABASES

DATABASES["default"]["CONN_MAX_AGE"] = 0
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    # Several test runs may share one PostgreSQL server (developers, CI): each gets its own test database.
    DATABASES["default"]["TEST"] = {"NAME": f"test_oma_{os.environ.get('OMA_TEST_DB_SUFFIX') or os.getpid()}"}
    # A commit need not wait for its WAL to reach the disk (0.2 ms a commit instead of 6 on the 2-vCPU machine): test
    # data is thrown away, and a clean stop of the server (the fault battery's private one too) still writes every
    # commit. Per connection, so the shared server's settings are untouched; subprocesses load this file too.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c synchronous_commit=off"
    # Django's PostgreSQL backend with a cheaper flush after each transactional test (tests/pgbackend/base.py).
    DATABASES["default"]["ENGINE"] = "tests.pgbackend"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {}
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("OMA_TEST_SQLITE_FILE", "")} if os.environ.get(
        "OMA_TEST_SQLITE_FILE"
    ) else {}
SECURE_SSL_REDIRECT = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
GENSTORE_MAX_RETRIES = 6
