"""Reconciliation: where OMA, the carrier and Genstore disagree about a store's shipments, and fixing what can be.

Findings (one row each, for `reconcile --store D` and the admin page):

| kind | meaning | `--fix` |
|---|---|---|
| `shipment_without_fulfillment` | a shipment of a fulfillable order; no live fulfillment has its number | push it |
| `delivered_not_in_genstore` | delivered at the carrier; Genstore's fulfillment says something else | push the status |
| `unknown_tracking_number` | a live Genstore fulfillment carries a number no OMA shipment of the store has | (report) |
| `number_on_two_orders` | one number on two or more orders (Genstore fulfillments, OMA shipments) | (report) |
| `duplicate_fulfillment` | two or more live fulfillments of one order carry the same number | (report) |
| `fulfillment_of_voided_label` | a live fulfillment carries the number of a voided channel label | cancel it |

Genstore's side is the order mirror (sweeps, webhooks and our own pushes keep it). The command refreshes it with
an incremental sweep first; the admin page reads it as it is (an admin request never waits on Genstore).
Shipments whose push was skipped on purpose (cancelled, refunded or voided order, nothing that needs shipping, a
voided label never pushed) are not findings: OMA chose not to push them. A voided label whose fulfillment is live
is one (unless Genstore cancelled the order): the push cancels it, so one found here was missed (an older OMA
skipped those) or is still on its way. Shipments of source `genstore` (the merchant's own fulfillments) never are.

`reconcile_run` runs it for the nightly beat task and the command and keeps the result (ReconcileRun): report only,
fixes stay a merchant's action.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from django.utils import timezone

from oma.fulfillment.models import RECONCILE_RUNS_KEPT, FulfillmentPush, ReconcileRun
from oma.fulfillment.plan import NEVER_PUSHED_FINANCIAL_STATUSES
from oma.fulfillment.services.push import PushOutcome, PushResult, label_voided, shipment_push
from oma.fulfillment.services.unified_status import store_unified_status_refresh
from oma.genstore.client import GenstoreClient
from oma.genstore.fulfillment_status import DEAD_FULFILLMENT_STATUSES
from oma.orders.models import GenstoreFulfillment, Order, SyncRun
from oma.orders.services import orders_sweep
from oma.stores.models import Store
from tracking.models import Shipment
from tracking.numbers import normalize
from tracking.vocabulary import Status

logger = logging.getLogger(__name__)


# A run still unfinished this long after it started is dead (the task's time limit is below it).
RECONCILE_RUN_LIMIT = timedelta(hours=1)


class Finding(StrEnum):
    SHIPMENT_WITHOUT_FULFILLMENT = "shipment_without_fulfillment"
    DELIVERED_NOT_IN_GENSTORE = "delivered_not_in_genstore"
    UNKNOWN_TRACKING_NUMBER = "unknown_tracking_number"
    NUMBER_ON_TWO_ORDERS = "number_on_two_orders"
    DUPLICATE_FULFILLMENT = "duplicate_fulfillment"
    FULFILLMENT_OF_VOIDED_LABEL = "fulfillment_of_voided_label"


FINDING_TITLES: dict[str, str] = {
    Finding.SHIPMENT_WITHOUT_FULFILLMENT: "Shipments with no Genstore fulfillment",
    Finding.DELIVERED_NOT_IN_GENSTORE: "Delivered at the carrier, not in Genstore",
    Finding.UNKNOWN_TRACKING_NUMBER: "Genstore fulfillments with a tracking number OMA does not know",
    Finding.NUMBER_ON_TWO_ORDERS: "One tracking number on several orders",
    Finding.DUPLICATE_FULFILLMENT: "Duplicate fulfillments (same number twice on one order)",
    Finding.FULFILLMENT_OF_VOIDED_LABEL: "Live Genstore fulfillments of voided labels",
}

FIXABLE: frozenset[str] = frozenset({
    Finding.SHIPMENT_WITHOUT_FULFILLMENT, Finding.DELIVERED_NOT_IN_GENSTORE, Finding.FULFILLMENT_OF_VOIDED_LABEL,
})


@dataclass(frozen=True, slots=True)
class Disagreement:
    kind: Finding
    tracking_number: str
    order_ids: tuple[str, ...]  # Genstore orderIds involved
    detail: str
    shipment_id: int | None = None

    @property
    def fixable(self) -> bool:
        return self.kind in FIXABLE and self.shipment_id is not None

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": str(self.kind),
            "trackingNumber": self.tracking_number,
            "orderIds": list(self.order_ids),
            "detail": self.detail,
            "shipmentId": self.shipment_id,
            "fixable": self.fixable,
        }


@dataclass(slots=True)
class ReconcileReport:
    store: Store
    checked_at: datetime
    disagreements: list[Disagreement] = field(default_factory=list)
    refreshed: bool = False
    refresh_error: str = ""
    shipments_checked: int = 0
    fulfillments_checked: int = 0

    def count(self, kind: Finding) -> int:
        return sum(1 for d in self.disagreements if d.kind == kind)

    @property
    def counts(self) -> dict[str, int]:
        return {str(kind): self.count(kind) for kind in Finding}

    @property
    def fixable(self) -> list[Disagreement]:
        return [d for d in self.disagreements if d.fixable]


@dataclass(slots=True)
class FixResult:
    attempted: int = 0
    by_result: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    problems: list[str] = field(default_factory=list)


def store_reconcile(*, store: Store, refresh: bool = False) -> ReconcileReport:
    """Every disagreement for one store. `refresh` first sweeps Genstore (incremental) so its side is current."""
    report = ReconcileReport(store=store, checked_at=timezone.now())
    if refresh:
        run = orders_sweep(store=store, kind=SyncRun.Kind.INCREMENTAL)
        report.refreshed = run.state == SyncRun.State.SUCCEEDED
        if not report.refreshed:
            report.refresh_error = run.error_message or f"sweep {run.state}"

    orders = {
        pk: (order_id, cancelled, financial)
        for pk, order_id, cancelled, financial in Order.objects.filter(store=store).values_list(
            "pk", "order_id", "cancelled_at", "financial_status"
        )
    }
    # Genstore's live fulfillments, by (order pk, number) and by number.
    live: dict[tuple[int, str], list[GenstoreFulfillment]] = defaultdict(list)
    orders_by_number: dict[str, set[int]] = defaultdict(set)
    fulfillments = GenstoreFulfillment.objects.filter(store=store).exclude(status__in=DEAD_FULFILLMENT_STATUSES)
    for fulfillment in fulfillments.only("pk", "order_id", "fulfill_id", "tracking_number", "shipment_status"):
        report.fulfillments_checked += 1
        number = normalize(fulfillment.tracking_number)
        if not number:
            continue
        live[(fulfillment.order_id, number)].append(fulfillment)
        orders_by_number[number].add(fulfillment.order_id)

    skipped = set(
        FulfillmentPush.objects.filter(store=store, state=FulfillmentPush.State.SKIPPED).values_list(
            "shipment_id", "order_id"
        )
    )
    push_state = {
        (shipment_id, order_id): (state, reason)
        for shipment_id, order_id, state, reason in FulfillmentPush.objects.filter(store=store).values_list(
            "shipment_id", "order_id", "state", "state_reason"
        )
    }
    tracked: set[str] = set()
    shipments = Shipment.objects.filter(store=store).only("pk", "order_id", "tracking_number", "status", "source")
    for shipment in shipments.iterator(chunk_size=2000):
        report.shipments_checked += 1
        number = normalize(shipment.tracking_number)
        tracked.add(number)
        if shipment.order_id is None:
            continue
        orders_by_number[number].add(shipment.order_id)
        order_id, cancelled, financial = orders[shipment.order_id]
        if not cancelled and label_voided(shipment) and (shipment.order_id, number) in live:
            shown = ", ".join(f.fulfill_id for f in live[(shipment.order_id, number)])
            state, reason = push_state.get((shipment.pk, shipment.order_id), ("", ""))
            push_text = f"push {state}" + (f": {reason}" if reason else "") if state else "never pushed"
            report.disagreements.append(
                Disagreement(
                    Finding.FULFILLMENT_OF_VOIDED_LABEL, shipment.tracking_number, (order_id,),
                    f"the label was voided; Genstore fulfillment {shown} is live; {push_text}", shipment.pk,
                )
            )
        if cancelled or financial in NEVER_PUSHED_FINANCIAL_STATUSES or shipment.status == Status.CANCELLED:
            continue
        if (shipment.pk, shipment.order_id) in skipped:
            continue
        found = live.get((shipment.order_id, number), [])
        if not found:
            state, reason = push_state.get((shipment.pk, shipment.order_id), ("", ""))
            push_text = f"push {state}" + (f": {reason}" if reason else "") if state else "never pushed"
            carrier = " (delivered at the carrier)" if shipment.status == Status.DELIVERED else ""
            report.disagreements.append(
                Disagreement(
                    Finding.SHIPMENT_WITHOUT_FULFILLMENT, shipment.tracking_number, (order_id,),
                    f"no Genstore fulfillment with this number{carrier}; {push_text}", shipment.pk,
                )
            )
        elif shipment.status == Status.DELIVERED and not any(f.shipment_status == "delivered" for f in found):
            shown = ", ".join(f"{f.fulfill_id}: {f.shipment_status or 'no shipmentStatus'}" for f in found)
            report.disagreements.append(
                Disagreement(
                    Finding.DELIVERED_NOT_IN_GENSTORE, shipment.tracking_number, (order_id,),
                    f"delivered at the carrier; Genstore says {shown}", shipment.pk,
                )
            )

    for (order_pk, number), found in sorted(live.items(), key=lambda item: (item[0][1], item[0][0])):
        order_id = orders[order_pk][0]
        if number not in tracked:
            report.disagreements.append(
                Disagreement(
                    Finding.UNKNOWN_TRACKING_NUMBER, found[0].tracking_number, (order_id,),
                    f"Genstore fulfillment {found[0].fulfill_id}: no OMA shipment has this number",
                )
            )
        if len(found) > 1:
            report.disagreements.append(
                Disagreement(
                    Finding.DUPLICATE_FULFILLMENT, found[0].tracking_number, (order_id,),
                    f"{len(found)} live fulfillments with this number: "
                    + ", ".join(f.fulfill_id for f in found),
                )
            )
    for number, order_pks in sorted(orders_by_number.items()):
        if len(order_pks) > 1:
            ids = tuple(sorted(orders[pk][0] for pk in order_pks))
            report.disagreements.append(
                Disagreement(Finding.NUMBER_ON_TWO_ORDERS, number, ids, f"on {len(ids)} orders: {', '.join(ids)}")
            )
    return report


def reconcile_fix(
    *,
    report: ReconcileReport,
    client: GenstoreClient | None = None,
    progress: Callable[[Disagreement, PushOutcome], None] | None = None,
) -> FixResult:
    """Push, in the foreground, what the report found missing (forced: re-checked against Genstore)."""
    result = FixResult()
    for disagreement in report.fixable:
        assert disagreement.shipment_id is not None
        result.attempted += 1
        try:
            outcome = shipment_push(shipment_id=disagreement.shipment_id, client=client, force=True)
        except Exception as exc:  # one shipment's trouble never stops the others
            logger.exception("reconcile fix of shipment %s failed", disagreement.shipment_id)
            result.by_result["error"] += 1
            result.problems.append(f"{disagreement.tracking_number}: {type(exc).__name__}: {exc}")
            continue
        result.by_result[str(outcome.result)] += 1
        if outcome.result in (PushResult.FAILED, PushResult.RETRY, PushResult.SKIPPED):
            result.problems.append(f"{disagreement.tracking_number}: {outcome.result}: {outcome.detail}")
        if progress:
            progress(disagreement, outcome)
    store_unified_status_refresh(store=report.store)
    return result


def reconcile_run(
    *, store: Store, trigger: str = ReconcileRun.Trigger.NIGHTLY, refresh: bool = True
) -> tuple[ReconcileRun, ReconcileReport | None]:
    """Reconcile one store and keep the result (report only: nothing is fixed). The run's row is written before
    the work starts, so a run whose worker died shows as unfinished; a later run of the store closes it (once it is
    older than RECONCILE_RUN_LIMIT), and prunes the store's history to the last RECONCILE_RUNS_KEPT runs."""
    now = timezone.now()
    ReconcileRun.objects.filter(
        store=store, finished_at__isnull=True, started_at__lt=now - RECONCILE_RUN_LIMIT
    ).update(finished_at=now, error="did not finish (its worker stopped)")
    run = ReconcileRun.objects.create(store=store, trigger=trigger, started_at=now)
    report: ReconcileReport | None = None
    try:
        report = store_reconcile(store=store, refresh=refresh)
    except Exception as exc:
        logger.exception("reconciliation of %s failed", store.domain)
        run.error = f"{type(exc).__name__}: {exc}"[:2000]
    else:
        run.counts = {kind: count for kind, count in report.counts.items() if count}
        run.findings = len(report.disagreements)
        run.shipments_checked = report.shipments_checked
        run.fulfillments_checked = report.fulfillments_checked
        run.refreshed = report.refreshed
        run.refresh_error = report.refresh_error[:2000]
    run.finished_at = timezone.now()
    run.save()
    kept = ReconcileRun.objects.filter(store=store).order_by("-started_at", "-pk").values_list("pk", flat=True)
    ReconcileRun.objects.filter(store=store).exclude(pk__in=list(kept[:RECONCILE_RUNS_KEPT])).delete()
    return run, report
