"""Test settings for processes (Celery workers) that send customer emails: the URLs with the unsubscribe view."""

from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.notifications.urls"
