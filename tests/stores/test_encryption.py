import pytest
from cryptography.fernet import Fernet
from django.db import connection

from oma.stores.models import Store

pytestmark = pytest.mark.django_db


def _raw_row(store_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM stores_store WHERE id = %s", [store_id])
        return " ".join(str(value) for value in cursor.fetchone())


def test_token_and_secrets_are_not_stored_in_plaintext():
    store = Store.objects.create(
        domain="enc.genmystore.com",
        access_token="tok_plain_123456",
        client_secret="sec_plain_abcdef",
        previous_client_secret="old_plain_zyxwvu",
    )
    raw = _raw_row(store.id)
    for secret in ("tok_plain_123456", "sec_plain_abcdef", "old_plain_zyxwvu"):
        assert secret not in raw
    reloaded = Store.objects.get(pk=store.pk)
    assert reloaded.access_token == "tok_plain_123456"
    assert reloaded.previous_client_secret == "old_plain_zyxwvu"


def test_rows_still_decrypt_after_a_new_key_is_put_in_front(settings):
    store = Store.objects.create(domain="rot.genmystore.com", access_token="tok_rotate", client_secret="s")
    old_keys = list(settings.OMA_ENCRYPTION_KEYS)
    settings.OMA_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *old_keys]
    assert Store.objects.get(pk=store.pk).access_token == "tok_rotate"

    from django.core.management import call_command

    call_command("rotate_encryption_keys", verbosity=0)
    # After re-encryption only the new key is needed.
    settings.OMA_ENCRYPTION_KEYS = settings.OMA_ENCRYPTION_KEYS[:1]
    assert Store.objects.get(pk=store.pk).access_token == "tok_rotate"
