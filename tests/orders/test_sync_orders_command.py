"""`sync_orders` for an operator: --since in the forms people type, clear errors, exit statuses that say what
happened (0 done, 1 failed or wrong arguments, 75 skipped because another sweep runs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from oma.orders.management.commands.sync_orders import EXIT_FAILED, EXIT_SKIPPED, parse_since
from oma.orders.models import SyncRun
from oma.stores.models import Store
from oma.stores.services import store_sweep_lease_acquire
from tests.genstore_sandbox import connect

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01T08:00:00Z", datetime(2026, 11, 1, 8, 0, tzinfo=UTC)),
        ("2026-11-01T08:00Z", datetime(2026, 11, 1, 8, 0, tzinfo=UTC)),
        ("2026-11-01T10:00:00+02:00", datetime(2026, 11, 1, 8, 0, tzinfo=UTC)),
        ("2026-11-01T08:00:00", datetime(2026, 11, 1, 8, 0, tzinfo=UTC)),  # no offset: UTC
        ("2026-11-01", datetime(2026, 11, 1, 0, 0, tzinfo=UTC)),
        (" 6h ", NOW - timedelta(hours=6)),
        ("90m", NOW - timedelta(minutes=90)),
        ("2d", NOW - timedelta(days=2)),
        ("1W", NOW - timedelta(weeks=1)),
        ("1.5h", NOW - timedelta(minutes=90)),
    ],
)
def test_since_takes_iso_times_and_how_long_ago(text, expected):
    assert parse_since(text, now=NOW) == expected


@pytest.mark.parametrize(("text", "says"), [("yesterday", "ISO 8601"), ("", "ISO 8601"), ("2026-12-01", "future")])
def test_since_that_makes_no_sense_is_refused_plainly(text, says):
    with pytest.raises(CommandError, match=says):
        parse_since(text, now=NOW)


@pytest.mark.django_db
def test_an_unknown_store_is_named_with_the_stores_there_are():
    Store.objects.create(domain="known.genmystore.com", access_token="t", client_secret="s")
    with pytest.raises(CommandError, match=r"known\.genmystore\.com") as error:
        call_command("sync_orders", store="nope.genmystore.com")
    assert error.value.returncode == EXIT_FAILED


@pytest.mark.django_db
def test_export_of_an_unknown_store_names_the_stores_there_are():
    with pytest.raises(CommandError, match="no stores yet: connect one with connect_store"):
        call_command("export_orders", store="nope.genmystore.com")
    Store.objects.create(domain="known.genmystore.com", access_token="t", client_secret="s")
    with pytest.raises(CommandError, match=r"known stores: known\.genmystore\.com"):
        call_command("export_orders", store="nope.genmystore.com")
    call_command("export_orders", store="https://Known.genmystore.com/", stdout=StringIO())  # a pasted URL


@pytest.mark.django_db
def test_an_inactive_store_or_no_store_at_all_is_an_error():
    with pytest.raises(CommandError, match="no active store"):
        call_command("sync_orders")
    Store.objects.create(domain="off.genmystore.com", access_token="t", client_secret="s", is_active=False)
    with pytest.raises(CommandError, match="inactive"):
        call_command("sync_orders", store="off.genmystore.com")


@pytest.mark.django_db
def test_full_and_since_together_are_refused():
    with pytest.raises(CommandError, match="exclude"):
        call_command("sync_orders", full=True, since="2h")


@pytest.mark.django_db(transaction=True)
def test_exit_statuses_say_done_failed_or_skipped(genstore_sandbox, redis_client):
    store = connect(genstore_sandbox, rate_limit=(1000, 1000.0))
    out = StringIO()
    call_command("sync_orders", store=f"HTTPS://{store.domain.upper()}/admin", full=True, stdout=out)  # pasted URL
    assert "full sweep succeeded: pages=2 seen=300 created=300" in out.getvalue()

    out = StringIO()
    call_command("sync_orders", store=store.domain, since="2026-11-01T00:00:00Z", stdout=out)
    assert "incremental sweep succeeded" in out.getvalue() and "since=2026-11-01T00:00:00+00:00" in out.getvalue()

    token = store_sweep_lease_acquire(store=store, ttl=timedelta(minutes=5))
    assert token
    with pytest.raises(CommandError, match="try again later") as skipped:
        call_command("sync_orders", store=store.domain, stdout=StringIO())
    assert skipped.value.returncode == EXIT_SKIPPED
    Store.objects.filter(pk=store.pk).update(sweep_lease_until=None, sweep_lease_token="")

    store.refresh_from_db()
    store.access_token = "revoked"
    store.save()
    out = StringIO()
    with pytest.raises(CommandError, match="safe to run again") as failed:
        call_command("sync_orders", store=store.domain, stdout=out)
    assert failed.value.returncode == EXIT_FAILED
    assert "sweep failed" in out.getvalue() and "401" in out.getvalue()
    assert SyncRun.objects.filter(store=store, state=SyncRun.State.FAILED).count() == 1
