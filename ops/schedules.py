"""The Temporal Schedules that run the reconciliation workflows, created or updated in place."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from core.config import Settings
from workflows.reconciliation import (
    EventsReconciliationInput,
    EventsReconciliationWorkflow,
    SubscriptionSweepWorkflow,
    SweepInput,
)

EVENTS_SCHEDULE_ID = "billing-reconcile-stripe-events"
SWEEP_SCHEDULE_ID = "billing-sweep-subscriptions"


def billing_schedules(settings: Settings) -> dict[str, Schedule]:
    """Schedule id -> schedule. A run still going when the next is due makes it skip (the
    cursor makes the next one pick up where it ended), and after Temporal was down only one
    missed run is made up."""
    events_every = timedelta(minutes=settings.reconcile_events_every_minutes)
    sweep_every = timedelta(minutes=settings.sweep_every_minutes)
    return {
        EVENTS_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(
                EventsReconciliationWorkflow.run,
                EventsReconciliationInput(),
                id=EVENTS_SCHEDULE_ID,
                task_queue=settings.task_queue,
                static_summary="Replay Stripe events that webhooks did not deliver",
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=events_every)]),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=events_every),
        ),
        SWEEP_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(
                SubscriptionSweepWorkflow.run,
                SweepInput(),
                id=SWEEP_SCHEDULE_ID,
                task_queue=settings.task_queue,
                static_summary="Resync accounts whose subscription differs from Stripe",
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=sweep_every)]),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=sweep_every),
        ),
    }


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create the schedules, or bring existing ones up to date (idempotent). An operator's
    pause, with its note, survives the update."""
    for schedule_id, schedule in billing_schedules(settings).items():
        try:
            await client.create_schedule(schedule_id, schedule)
        except ScheduleAlreadyRunningError:
            await client.get_schedule_handle(schedule_id).update(_replacing_with(schedule))


def _replacing_with(schedule: Schedule) -> Callable[[ScheduleUpdateInput], ScheduleUpdate]:
    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        state = current.description.schedule.state
        return ScheduleUpdate(schedule=dataclasses.replace(schedule, state=state))

    return update
