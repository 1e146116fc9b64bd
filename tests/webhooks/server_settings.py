"""Settings for the web servers and workers the webhook acceptance tests start: the test settings, with
persistent database connections (thousands of requests and tasks would otherwise each open one)."""

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

DATABASES["default"]["CONN_MAX_AGE"] = 300
