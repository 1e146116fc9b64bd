"""reconcile --store D [--fix]: where OMA, the carrier and Genstore disagree, and (with --fix) push what is missing
and cancel the fulfillments of voided labels. Its result is kept as the store's latest reconciliation (the
dashboard shows it, like the nightly one's)."""

from __future__ import annotations

import json

from django.core.management.base import CommandError, CommandParser

from oma.core.cli import PipeSafeCommand
from oma.fulfillment.models import ReconcileRun
from oma.fulfillment.reconciliation import Finding, ReconcileReport, reconcile_fix, reconcile_run, store_reconcile
from oma.stores.cli import genstore_reachable, store_for_cli


class Command(PipeSafeCommand):
    help = (
        "List where OMA, the carrier and Genstore disagree for a store: shipments with no Genstore fulfillment, "
        "delivered at the carrier but not in Genstore, Genstore fulfillments with numbers OMA does not know, "
        "numbers on two orders, duplicate fulfillments, live fulfillments of voided labels. --fix pushes what is "
        "missing and cancels the fulfillments of voided labels."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", required=True, help="store domain, e.g. shop1.genmystore.com")
        parser.add_argument(
            "--fix", action="store_true",
            help="push the missing fulfillments and statuses; cancel the fulfillments of voided labels",
        )
        parser.add_argument(
            "--no-refresh", action="store_true",
            help="compare with the order mirror as it is (default: an incremental sweep first)",
        )
        parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
        parser.add_argument("--limit", type=int, default=50, help="rows shown per kind in text output (default 50)")

    def handle(self, *args: object, **options: object) -> None:
        store = store_for_cli(str(options["store"]))
        if options["fix"] or not options["no_refresh"]:
            genstore_reachable(store)
        run, found = reconcile_run(store=store, trigger=ReconcileRun.Trigger.COMMAND, refresh=not options["no_refresh"])
        if found is None:
            raise CommandError(f"reconciliation of {store.domain} failed: {run.error}")
        report = found
        fix = None
        after = None
        if options["fix"]:
            fix = reconcile_fix(report=report)
            after = store_reconcile(store=store, refresh=False)
        if options["json"]:
            payload: dict[str, object] = {"store": store.domain, **self._as_json(report)}
            if fix is not None and after is not None:
                payload["fix"] = {"attempted": fix.attempted, "results": dict(fix.by_result), "problems": fix.problems}
                payload["after"] = self._as_json(after)
            self.stdout.write(json.dumps(payload, indent=2))
            return
        self._print(report, limit=int(str(options["limit"])))
        if fix is not None and after is not None:
            results = ", ".join(f"{count} {name}" for name, count in sorted(fix.by_result.items())) or "nothing"
            self.stdout.write(f"fix: {fix.attempted} pushes attempted: {results}")
            for problem in fix.problems[:20]:
                self.stderr.write(f"  {problem}")
            self.stdout.write("after the fix: " + self._summary(after))

    @staticmethod
    def _as_json(report: ReconcileReport) -> dict[str, object]:
        return {
            "checkedAt": report.checked_at.isoformat(),
            "refreshed": report.refreshed,
            "refreshError": report.refresh_error or None,
            "shipmentsChecked": report.shipments_checked,
            "fulfillmentsChecked": report.fulfillments_checked,
            "counts": report.counts,
            "disagreements": [d.as_dict() for d in report.disagreements],
        }

    @staticmethod
    def _summary(report: ReconcileReport) -> str:
        counts = ", ".join(f"{count} {kind}" for kind, count in report.counts.items() if count)
        return (
            f"{report.store.domain}: {report.shipments_checked} shipments, {report.fulfillments_checked} live "
            f"Genstore fulfillments checked: {counts or 'no disagreement'}"
        )

    def _print(self, report: ReconcileReport, *, limit: int) -> None:
        if report.refresh_error:
            self.stderr.write(f"Genstore could not be re-read ({report.refresh_error}); compared with the mirror")
        for kind in Finding:
            rows = [d for d in report.disagreements if d.kind == kind]
            if not rows:
                continue
            self.stdout.write(f"{kind} ({len(rows)}{', fixable with --fix' if rows[0].fixable else ''}):")
            for row in rows[:limit]:
                self.stdout.write(f"  {row.tracking_number:<28} order {', '.join(row.order_ids):<16} {row.detail}")
            if len(rows) > limit:
                self.stdout.write(f"  ... and {len(rows) - limit} more (--json lists all)")
        self.stdout.write(self._summary(report))
