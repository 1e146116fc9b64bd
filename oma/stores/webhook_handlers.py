"""The stores app's webhook topics: app/uninstalled and app/scopesUpdate (registered in StoresConfig.ready)."""

from __future__ import annotations

from oma.core.topic_handlers import PermanentProcessingError, TopicDelivery, register
from oma.genstore.parsing import parse_scopes_update
from oma.genstore.topics import APP_SCOPES_UPDATE, APP_UNINSTALLED
from oma.stores.models import Store
from oma.stores.services import store_deactivate


def process_app_uninstalled(delivery: TopicDelivery) -> str:
    store = Store.objects.get(pk=delivery.store_id)
    if not store.is_active:
        return "store already inactive"
    store_deactivate(store=store, reason="Genstore sent app/uninstalled")
    return "store deactivated (no more sweeps, polls or pushes; data kept)"


def process_scopes_update(delivery: TopicDelivery) -> str:
    """app/scopesUpdate: record the scopes the app now holds."""
    scopes = parse_scopes_update(delivery.payload)
    if scopes is None:
        raise PermanentProcessingError("scopesUpdate payload names no current scopes")
    Store.objects.filter(pk=delivery.store_id).update(scopes=scopes)
    return f"scopes recorded: {', '.join(scopes) or 'none'}"


def register_webhook_handlers() -> None:
    register(APP_UNINSTALLED, process_app_uninstalled)
    register(APP_SCOPES_UPDATE, process_scopes_update)
