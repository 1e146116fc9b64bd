"""The delivery log in admin: filters, raw payload, the replay action, and store scoping for staff."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User

from oma.stores.models import StoreMembership
from tests.webhooks.payloads import OTHER_SECRET, OTHER_SHOP, order_json
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db
URL = "/admin/webhooks/webhookdelivery/"
State = WebhookDelivery.State


@pytest.fixture
def log(store, other_store, post_webhook):
    post_webhook(order_json("1001"), webhook_id="wh-a")
    post_webhook(order_json("1002"), topic="orders/create", webhook_id="wh-b")
    post_webhook({"product": {"id": "9"}}, topic="products/update", webhook_id="wh-c")
    post_webhook(order_json("2001"), shop=OTHER_SHOP, secret=OTHER_SECRET, webhook_id="wh-d")
    WebhookDelivery.objects.filter(webhook_id="wh-b").update(state=State.FAILED, last_error="GenstoreServerError: 503")


def _listed(response) -> set[str]:
    return {row.webhook_id for row in response.context["cl"].result_list}


def test_changelist_filters_by_store_topic_and_state(admin_client, store, log):
    assert _listed(admin_client.get(URL)) == {"wh-a", "wh-b", "wh-c", "wh-d"}
    assert _listed(admin_client.get(URL, {"store": store.pk})) == {"wh-a", "wh-b", "wh-c"}
    assert _listed(admin_client.get(URL, {"topic": "orders/create"})) == {"wh-b"}
    assert _listed(admin_client.get(URL, {"state": State.FAILED})) == {"wh-b"}
    assert _listed(admin_client.get(URL, {"state": State.IGNORED})) == {"wh-c"}
    assert _listed(admin_client.get(URL, {"q": "1002"})) == {"wh-b"}  # search by order id
    assert _listed(admin_client.get(URL, {"q": "wh-d"})) == {"wh-d"}  # or by delivery id
    page = admin_client.get(URL, {"state": State.FAILED}).content.decode()
    assert "GenstoreServerError: 503" in page


def test_change_page_shows_the_raw_payload_and_headers(admin_client, log):
    delivery = WebhookDelivery.objects.get(webhook_id="wh-a")
    page = admin_client.get(f"{URL}{delivery.pk}/change/").content.decode()
    assert "&quot;orderId&quot;: &quot;1001&quot;" in page
    assert "X-Genstore-Hmac-Sha256" in page


def test_replay_action_processes_the_selected_deliveries_again(
    admin_client, log, eager_celery, django_capture_on_commit_callbacks
):
    failed = WebhookDelivery.objects.get(webhook_id="wh-b")
    ignored = WebhookDelivery.objects.get(webhook_id="wh-c")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            URL, {"action": "replay", "_selected_action": [failed.pk, ignored.pk]}, follow=True
        )
    assert "1 delivery queued for processing again. 1 skipped" in response.content.decode()
    failed.refresh_from_db()
    assert (failed.state, failed.replay_count, failed.outcome) == (State.PROCESSED, 1, "order 1002 created")
    assert WebhookDelivery.objects.get(webhook_id="wh-c").state == State.IGNORED


def test_staff_see_only_their_stores_deliveries(client, store, log):
    staff = User.objects.create_user("merchant", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    StoreMembership.objects.create(user=staff, store=store)
    client.force_login(staff)
    response = client.get(URL)
    assert _listed(response) == {"wh-a", "wh-b", "wh-c"}
    assert OTHER_SHOP not in response.content.decode()  # not even in the store filter
    foreign = WebhookDelivery.objects.get(webhook_id="wh-d")
    assert client.get(f"{URL}{foreign.pk}/change/").status_code == 302  # "doesn't exist" -> admin index
    # A replay posted for another store's delivery touches nothing.
    client.post(URL, {"action": "replay", "_selected_action": [foreign.pk]})
    assert WebhookDelivery.objects.get(pk=foreign.pk).replay_count == 0
