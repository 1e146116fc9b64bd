"""Issue 13, item 8 (ops part): with DEBUG=0 /metrics is closed unless its token is given (or the operator opens
it with OMA_METRICS_PUBLIC=1), and anonymous /healthz says only whether OMA is healthy and which part is not.

The operator's details (beat host and pid, error texts, every tenant's store domain) go to a caller holding the
metrics token or signed in as a superuser; merchant staff accounts and everyone else get the short answer.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from oma.ops import metrics
from oma.ops.beat import lease_acquire_or_renew
from oma.ops.tasks import heartbeat
from oma.orders.models import SyncRun
from tests.admin.factories import StoreFactory

pytestmark = pytest.mark.django_db

TOKEN = "scrape-token-0123456789abcdef"
BEAT_HOLDER = "beat-host-7:pid-4242"
TENANT_DOMAIN = "secret-tenant.genmystore.com"


@pytest.fixture(autouse=True)
def production(settings) -> Iterator[None]:
    """DEBUG off, no Redis needed (in-memory broker and counters), a fresh scrape every time."""
    settings.DEBUG = False
    settings.OMA_METRICS_TOKEN = ""
    settings.OMA_METRICS_PUBLIC = False
    settings.REDIS_URL = ""
    settings.CELERY_BROKER_URL = "memory://"
    metrics._cache = None
    metrics.counters.reset()
    yield
    metrics._cache = None
    metrics.counters.reset()


@pytest.fixture
def tenant() -> None:
    """A store with a successful sweep: /metrics names its domain in the sweep gauges."""
    store = StoreFactory(domain=TENANT_DOMAIN)
    SyncRun.objects.create(store=store, kind="incremental", state="succeeded",
                           started_at=timezone.now() - timedelta(minutes=5), created=1)


@pytest.fixture
def beat_only() -> None:
    """Beat holds its lease (its host and pid are the lease's holder); no worker ever ran the heartbeat task."""
    assert lease_acquire_or_renew(holder=BEAT_HOLDER, seconds=30)


def _unauthenticated_answers(client: Client) -> list[tuple[int, bytes]]:
    return [
        (response.status_code, response.content)
        for response in (
            client.get("/metrics"),
            client.get("/metrics", headers={"Authorization": "Bearer wrong-token"}),
            client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}),
            client.get("/metrics", headers={"Authorization": "Bearer "}),
            client.get("/metrics", headers={"Authorization": "Bearer ẞ-not-ascii"}),
        )
    ]


def test_metrics_without_a_configured_token_answer_401_and_name_no_tenant(client, tenant) -> None:
    answers = _unauthenticated_answers(client)
    assert {status for status, _ in answers} == {401}
    assert not any(TENANT_DOMAIN.encode() in body for _, body in answers)
    assert client.get("/metrics")["WWW-Authenticate"] == "Bearer"


def test_metrics_unauthenticated_callers_get_one_401_answer_whether_a_token_is_configured_or_not(
    client, settings
) -> None:
    without_token = _unauthenticated_answers(client)
    settings.OMA_METRICS_TOKEN = TOKEN
    with_token = _unauthenticated_answers(client)
    assert len(set(without_token + with_token)) == 1, set(without_token + with_token)


def test_metrics_answer_the_scraper_that_sends_the_token(client, settings, tenant) -> None:
    settings.OMA_METRICS_TOKEN = TOKEN
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert TENANT_DOMAIN in response.content.decode()


def test_metrics_are_public_only_when_the_operator_sets_oma_metrics_public(client, settings, tenant) -> None:
    settings.OMA_METRICS_PUBLIC = True
    response = client.get("/metrics")
    assert response.status_code == 200 and TENANT_DOMAIN in response.content.decode()
    # A configured token still wins: the operator asked for it.
    settings.OMA_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401


def test_metrics_stay_open_for_local_development_with_debug_on(client, settings) -> None:
    settings.DEBUG = True
    assert client.get("/metrics").status_code == 200


def test_anonymous_healthz_gets_the_status_and_the_failing_parts_name_only(client, beat_only) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "failing", "failing": ["worker"]}
    body = response.content.decode()
    assert BEAT_HOLDER not in body and "pid" not in body and "heartbeat" not in body


def test_anonymous_healthz_when_healthy_says_ok_and_nothing_else(client, beat_only) -> None:
    heartbeat()  # a worker ran the heartbeat task: its host and pid are stored in the heartbeat row
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "failing": []}
    assert socket.gethostname() not in response.content.decode()


def test_a_broker_error_text_is_not_shown_to_anonymous_callers(client, settings, beat_only) -> None:
    heartbeat()
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens: the error names the address
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "failing", "failing": ["broker"]}
    assert "127.0.0.1" not in response.content.decode()


def test_healthz_details_go_to_the_metrics_token_holder(client, settings, beat_only) -> None:
    settings.OMA_METRICS_TOKEN = TOKEN
    response = client.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 503
    assert BEAT_HOLDER in response.json()["checks"]["beat"]["detail"]
    wrong = client.get("/healthz", headers={"Authorization": "Bearer wrong-token"})
    assert wrong.status_code == 503 and wrong.json() == {"status": "failing", "failing": ["worker"]}


def test_healthz_details_go_to_a_superuser_and_not_to_merchant_staff(client, beat_only) -> None:
    User = get_user_model()
    staff = User.objects.create_user("merchant-staff", password="pw-staff-1", is_staff=True)
    client.force_login(staff)
    assert client.get("/healthz").json() == {"status": "failing", "failing": ["worker"]}
    assert client.get("/metrics").status_code == 401

    operator = User.objects.create_superuser("operator", password="pw-operator-1")
    client.force_login(operator)
    response = client.get("/healthz")
    assert BEAT_HOLDER in response.json()["checks"]["beat"]["detail"]
    assert client.get("/metrics").status_code == 200


def test_the_healthcheck_command_still_prints_every_detail(capsys, beat_only) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="failing: worker"):
        call_command("healthcheck")
    assert BEAT_HOLDER in capsys.readouterr().out
