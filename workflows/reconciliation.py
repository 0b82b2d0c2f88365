"""Scheduled catch-up with Stripe, for the deliveries webhooks never made.

`EventsReconciliationWorkflow` replays the events Stripe lists after a stored cursor;
`SubscriptionSweepWorkflow` compares every Stripe subscription with the stored lifecycle and
asks the accounts that differ to resync. Each run is bounded and simply finishes: the
schedule (`ops.schedules`) starts the next one, and the cursor says where it resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.reconciliation import (
        EventsPageInput,
        EventsPageResult,
        ReconciliationActivities,
        ResyncInput,
        SweepFindings,
    )

# Stripe, Temporal or the database being down is waited out (PATIENT_RETRY); the schedule
# skips its next starts while this run waits.
from workflows.retry import PATIENT_RETRY

PAGE_TIMEOUT = timedelta(minutes=2)
# Listing every subscription takes a request per 100; it heartbeats per page.
SWEEP_LIST_TIMEOUT = timedelta(minutes=30)
SWEEP_HEARTBEAT_TIMEOUT = timedelta(minutes=2)
# A resync waits for the account to re-fetch from Stripe and write its entitlements. One
# account is retried for at most RESYNC_BUDGET, then listed as failed for the next run: an
# account that cannot answer must not hold up this sweep, nor (skipped overlaps) every later one.
RESYNC_TIMEOUT = timedelta(minutes=2)
RESYNC_BUDGET = timedelta(minutes=15)


@dataclass
class EventsReconciliationInput:
    # Bounds one run's history; a longer backlog is finished by the following runs.
    max_pages: int = 20
    page_size: int = 100


@dataclass
class EventsReconciliationResult:
    pages: int = 0
    events_listed: int = 0
    # Events Stripe listed that the service did not hold: sent to their accounts now.
    events_redelivered: int = 0
    events_unroutable: int = 0
    account_ids: list[str] = field(default_factory=list)
    # False when `max_pages` ran out before the newest event.
    caught_up: bool = True


@dataclass
class SweepInput:
    # Bounds one run's history; the next run finds the rest again.
    max_resyncs: int = 500


@dataclass
class SweepResult:
    subscriptions_checked: int = 0
    accounts_resynced: list[str] = field(default_factory=list)
    customers_without_account: list[str] = field(default_factory=list)
    # Refused for good (the customer is linked to another account), or not answering within
    # RESYNC_BUDGET: operators decide, or the next run tries again.
    accounts_failed: list[str] = field(default_factory=list)
    # Drifted accounts beyond `max_resyncs`, left for the next run.
    accounts_left: int = 0
    customers_missing_in_stripe: int = 0
    # Set when the sweep resynced nothing because Stripe does not know too many of our
    # customers: an alert for operators, not a cancellation (docs/runbook.md).
    stopped_because: str | None = None


@workflow.defn
class EventsReconciliationWorkflow:
    @workflow.run
    async def run(self, input: EventsReconciliationInput) -> EventsReconciliationResult:
        result = EventsReconciliationResult()
        accounts: set[str] = set()
        has_more = True
        while has_more and result.pages < input.max_pages:
            page: EventsPageResult = await workflow.execute_activity_method(
                ReconciliationActivities.reconcile_events_page,
                EventsPageInput(page_size=input.page_size),
                start_to_close_timeout=PAGE_TIMEOUT,
                retry_policy=PATIENT_RETRY,
            )
            result.pages += 1
            result.events_listed += page.listed
            result.events_redelivered += page.redelivered
            result.events_unroutable += page.unroutable
            accounts.update(page.account_ids)
            has_more = page.has_more
        result.account_ids = sorted(accounts)
        result.caught_up = not has_more
        workflow.logger.info(
            "events reconciliation: %d listed, %d redelivered to %s, %d unroutable%s",
            result.events_listed,
            result.events_redelivered,
            result.account_ids,
            result.events_unroutable,
            "" if result.caught_up else " (more left for the next run)",
        )
        return result


@workflow.defn
class SubscriptionSweepWorkflow:
    @workflow.run
    async def run(self, input: SweepInput) -> SweepResult:
        findings: SweepFindings = await workflow.execute_activity_method(
            ReconciliationActivities.find_drifted_accounts,
            start_to_close_timeout=SWEEP_LIST_TIMEOUT,
            heartbeat_timeout=SWEEP_HEARTBEAT_TIMEOUT,
            retry_policy=PATIENT_RETRY,
        )
        now_fixing = findings.drifted[: input.max_resyncs]
        result = SweepResult(
            subscriptions_checked=findings.subscriptions_checked,
            customers_without_account=findings.customers_without_account,
            accounts_left=len(findings.drifted) - len(now_fixing),
            customers_missing_in_stripe=findings.customers_missing_in_stripe,
            stopped_because=findings.stopped_because,
        )
        if result.stopped_because is not None:
            workflow.logger.error("subscription sweep stopped: %s", result.stopped_because)
            return result
        run_id = workflow.info().run_id
        for drifted in now_fixing:
            try:
                await workflow.execute_activity_method(
                    ReconciliationActivities.resync_account,
                    ResyncInput(
                        account_id=drifted.account_id,
                        customer_id=drifted.customer_id,
                        reason=f"sweep: {drifted.reason}",
                        update_id=f"sweep/{run_id}/{drifted.account_id}",
                    ),
                    start_to_close_timeout=RESYNC_TIMEOUT,
                    schedule_to_close_timeout=RESYNC_BUDGET,
                    retry_policy=PATIENT_RETRY,
                )
            except ActivityError as err:
                workflow.logger.error("sweep cannot resync %s: %s", drifted.account_id, err.cause)
                result.accounts_failed.append(drifted.account_id)
                continue
            workflow.logger.info("sweep resynced %s: %s", drifted.account_id, drifted.reason)
            result.accounts_resynced.append(drifted.account_id)
        workflow.logger.info(
            "subscription sweep: %d subscriptions checked, resynced %s, failed %s, "
            "%d customers without an account, %d left for the next run",
            result.subscriptions_checked,
            result.accounts_resynced,
            result.accounts_failed,
            len(result.customers_without_account),
            result.accounts_left,
        )
        return result
