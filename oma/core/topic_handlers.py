"""One handler per webhook topic, registered by the app that owns the data (in its AppConfig.ready).

The receiver (webhooks/) stores, claims and retries deliveries and knows no topic: it asks `handler_for(topic)` or
`batch_for(topic)` and calls what the owning app registered. A handler gets plain values (ids, the topic, the
JSON payload) and loads what it needs through its own models; core imports no app. Handlers are idempotent (the
same delivery processed twice changes nothing the second time) and return a short outcome for the delivery log,
free of personal data.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, Protocol


class PermanentProcessingError(Exception):
    """Processing cannot succeed by trying again (unusable payload, erased store): fail at once, replayable."""


@dataclass(frozen=True)
class TopicDelivery:
    """What a handler is given of one stored, authentic delivery."""

    delivery_id: int
    store_id: int
    topic: str
    webhook_id: str
    payload: dict[str, Any]  # the delivery's JSON object


TopicHandler = Callable[[TopicDelivery], str]


class TopicBatch(Protocol):
    """The deliveries of one store on a batched topic (orders/*), handled together in two steps.

    `read` runs outside any transaction, once per delivery (it may call an API; raising fails that delivery
    alone); `apply` runs inside the transaction that marks the deliveries processed, with the ids of those still
    claimed, and returns each one's outcome. `close` releases what `read` opened.
    """

    def read(self, delivery: TopicDelivery) -> None: ...

    def apply(self, delivery_ids: Collection[int]) -> dict[int, str]: ...

    def close(self) -> None: ...


TopicBatchFactory = Callable[[int], TopicBatch]  # store id -> a batch for that store

_handlers: dict[str, TopicHandler] = {}
_batches: dict[str, TopicBatchFactory] = {}


def register(topic: str, handler: TopicHandler) -> None:
    """Register the handler of `topic`; registering the same one again is a no-op, another one is an error."""
    known = _handlers.get(topic)
    if known is not None and known is not handler:
        raise ValueError(f"topic {topic!r} already has a handler: {known!r}")
    if topic in _batches:
        raise ValueError(f"topic {topic!r} is handled in batches")
    _handlers[topic] = handler


def register_batch(topics: Iterable[str], factory: TopicBatchFactory) -> None:
    """Register a batch handler for `topics` (deliveries of one store on these topics are handled together)."""
    for topic in topics:
        known = _batches.get(topic)
        if (known is not None and known is not factory) or topic in _handlers:
            raise ValueError(f"topic {topic!r} already has a handler")
        _batches[topic] = factory


def handler_for(topic: str) -> TopicHandler | None:
    return _handlers.get(topic)


def batch_for(topic: str) -> TopicBatchFactory | None:
    return _batches.get(topic)


def handled_topics() -> list[str]:
    """Every topic some app handles, sorted."""
    return sorted({*_handlers, *_batches})
