"""Connector registry: kind -> connector. A new platform is one module here plus one line below."""

from __future__ import annotations

from oma.channels.connectors.base import Connector
from oma.channels.connectors.csv import CONNECTOR as CSV_CONNECTOR
from oma.channels.connectors.shipstation import CONNECTOR as SHIPSTATION_CONNECTOR
from oma.channels.connectors.webhook import CONNECTOR as WEBHOOK_CONNECTOR

REGISTRY: dict[str, Connector] = {
    connector.kind: connector for connector in (CSV_CONNECTOR, WEBHOOK_CONNECTOR, SHIPSTATION_CONNECTOR)
}


def connector_for(kind: str) -> Connector:
    try:
        return REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown channel kind {kind!r}; known: {', '.join(sorted(REGISTRY))}") from None
