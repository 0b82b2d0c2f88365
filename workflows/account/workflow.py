"""One long-running workflow per account: Stripe events in, entitlements and notices out.

The workflow never trusts the event that arrived last. Each burst of events is only a reason to
re-fetch the account's current subscription from Stripe and feed that snapshot to the pure
lifecycle rules, so duplicated or reordered deliveries converge on the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import TimeoutError as ActivityTimeout
from temporalio.types import MethodAsyncSingleParam, MethodSyncSingleParam

with workflow.unsafe.imports_passed_through():
    from activities.account_store import (
        VERSION_TAKEN,
        AccountStoreActivities,
        LinkCustomerInput,
        OperatorActionRecord,
        QueueEmailsInput,
        ReceivedEvent,
        RecordEventsInput,
        StoredAccountState,
        WriteEntitlementsInput,
    )
    from activities.notifications import (
        EMAIL_FIRST_RETRY,
        EMAIL_GIVE_UP_AFTER,
        EMAIL_MAX_RETRY,
        EMAIL_TIMEOUT,
        NotificationActivities,
        SendEmailInput,
    )
    from activities.stripe_changes import (
        CancellationInput,
        ChangeSubscriptionInput,
        StripeChangeActivities,
        SubscriptionCallInput,
    )
    from activities.stripe_sync import (
        FetchSubscriptionInput,
        StripeSyncActivities,
        SubscriptionFetch,
    )
    from domain.lifecycle import (
        SCHEDULABLE_STATES,
        UNPAID_STATES,
        BillingState,
        CancelPlanChange,
        InvalidTransition,
        LifecycleInput,
        Notice,
        PendingChange,
        SchedulePlanChange,
        SubscriptionObserved,
        TimePassed,
        due_plan_change,
        next_deadline,
        transition,
    )
    from domain.notices import (
        FINAL_REMINDER,
        PAYMENT_REMINDER,
        Email,
        due_ladder_steps,
        event_email,
        ladder_email,
        next_ladder_step_at,
        notice_email,
    )
    from domain.operator_actions import (
        OperatorRequest,
        check_operator_request,
        lifecycle_input_for,
    )
    from domain.plan_changes import ChangeKind, PlanChange
    from domain.retry import backoff

from workflows.account.messages import (
    AccountState,
    AccountWorkflowInput,
    CancelRequest,
    KeepPlanRequest,
    OperatorResult,
    PlanChangeResult,
    ResumeRequest,
    StripeEventSignal,
    UnsentEmail,
    UpdatedAccount,
)
from workflows.account.visibility import publish_for_operators
from workflows.retry import PATIENT_RETRY, SINGLE_ATTEMPT

# An activity's argument and result, for the typed activity helpers (`_quick`, ...).
ParamT = TypeVar("ParamT")
ResultT = TypeVar("ResultT")

# Stripe retries a delivery for up to 3 days; this many ids covers far more than that per account.
SEEN_EVENT_WINDOW = 1000

# Stripe or the database being down is retried with backoff (PATIENT_RETRY), within a budget:
# a step of the account that runs out of it is recorded as the account's sync error and tried
# again later, so no single call can hold the account (and every update waiting on it) for long.
ACTIVITY_TIMEOUT = timedelta(seconds=30)
# What one step of the main loop (a fetch, a write) may spend retrying.
STEP_BUDGET = timedelta(minutes=10)
# What a Stripe change an update waits on may spend retrying: the caller is waiting.
UPDATE_STRIPE_BUDGET = timedelta(minutes=2)
# After a failed step, the account tries again after 1 minute, doubling up to an hour.
RETRY_FIRST_DELAY = timedelta(minutes=1)
RETRY_MAX_DELAY = timedelta(hours=1)
# Emails that only make sense while the account is still unpaid when they go out.
DUNNING_REMINDER_KINDS = frozenset(
    {str(Notice.PAYMENT_FAILED), str(Notice.ACCESS_RESTRICTED), PAYMENT_REMINDER, FINAL_REMINDER}
)
# Marks runs that try the per-event steps as local activities first (see `_quick`); older
# histories replay with them as regular activities.
QUICK_STEPS_LOCAL_FIRST = "quick-steps-local-first"
# Marks runs whose failed steps wait for their retry time (see `_backing_off`); older
# histories replay with every wake-up trying the step again.
FAILED_STEP_WAITS_FOR_ITS_RETRY = "failed-step-waits-for-its-retry"
# Marks runs that continue as new past HISTORY_EVENTS_PER_RUN; older histories replay
# continuing only when the server suggests it.
CONTINUES_PAST_HISTORY_LIMIT = "continues-past-history-limit"
# Marks runs that queue their emails in the outbox, for the email sender, a process of its
# own (activities/notifications.py): neither the account's task nor Temporal waits on SMTP.
# Older histories replay sending each email as an activity of one attempt, retried on the
# account's own timer (10 s, doubling up to 10 minutes, for three days).
EMAILS_THROUGH_OUTBOX = "emails-through-outbox"
# A run continues as new past this many history events, whatever the server suggests (the
# time-skipping test server never does): a worker that lost the run from its cache replays
# the whole history in one workflow task, which must fit well inside the task timeout. A long
# outage with events arriving grew one run to ~4,000 events, whose replay took over a second
# on a busy machine (seed 3735 of the simulation).
HISTORY_EVENTS_PER_RUN = 1_000
# A downgrade is made in Stripe this long before the period ends, so the renewal invoice
# Stripe drafts at the boundary already bills the new price (no proration either way). Its
# Stripe call gets the same budget: later, the renewal has billed the old price anyway.
DOWNGRADE_LEAD = timedelta(minutes=5)


@workflow.defn
class AccountBillingWorkflow:
    @workflow.init
    def __init__(self, input: AccountWorkflowInput) -> None:
        self._account_id = input.account_id
        self._state = input.state or AccountState()
        self._seen = dict.fromkeys(self._state.seen_event_ids)
        self._pending: list[StripeEventSignal] = list(input.pending_events)
        # An event arrived since the last pass: news that may end a backoff (see
        # `_backing_off`); events a failed step put back are not.
        self._event_arrived = bool(self._pending)
        self._failed_step_waits = False  # set by `run`
        self._emails_through_outbox = False  # set by `run`
        self._history_limit: int | None = None  # set by `run`
        # False until a first run has rebuilt its state from the database: updates wait.
        self._ready = input.state is not None
        # Ask Stripe even without a new event (a rebuilt run, a retry after a failure).
        self._resync_requested = False
        self._events_this_run = 0
        self._continue_as_new_after = input.continue_as_new_after_events
        # Moving the lifecycle awaits Stripe and the entitlement write; without the lock an
        # update and the main loop could both start from the same lifecycle and one change
        # would silently overwrite the other. Whoever holds it only awaits activities, never
        # the main loop or a handler, so waiting for it cannot close a cycle.
        self._lock = asyncio.Lock()
        # Emails with an attempt under way, by key (runs without the outbox).
        self._emails_in_flight: dict[str, UnsentEmail] = {}

    @workflow.signal(name="stripe_event")
    def stripe_event(self, event: StripeEventSignal) -> None:
        if event.event_id in self._seen or any(p.event_id == event.event_id for p in self._pending):
            return
        self._pending.append(event)
        self._event_arrived = True

    @workflow.signal(name="stripe_events")
    def stripe_events(self, events: list[StripeEventSignal]) -> None:
        """Several of the account's events in one signal: the events reconciliation replays a
        page's worth per account at once, where one signal-with-start each cost a round trip
        apiece, one after the other (`activities/reconciliation.py`)."""
        for event in events:
            self.stripe_event(event)

    @workflow.update(name="change_plan")
    async def change_plan(self, change: PlanChange) -> PlanChangeResult:
        await self._when_ready(self._check_change_plan, change)
        subscription = self._state.lifecycle.subscription
        assert subscription is not None  # checked by the validator
        if change.kind is ChangeKind.DOWNGRADE:
            effective_at = (subscription.current_period_end or workflow.now()) - DOWNGRADE_LEAD
            await self._apply_or_refuse(
                SchedulePlanChange(PendingChange(change.purchase, effective_at)),
                cause="customer:downgrade",
            )
            return PlanChangeResult(kind=change.kind, applied=True, account=self._state.summary())
        await self._cancel_pending_change(cause="customer:upgrade")
        outcome = await self._change_in_stripe(
            StripeChangeActivities.change_subscription,
            ChangeSubscriptionInput(
                subscription_id=subscription.subscription_id,
                purchase=change.purchase,
                proration_behavior="always_invoice",
                idempotency_key=self._idempotency_key(),
            ),
        )
        return PlanChangeResult(
            kind=change.kind,
            applied=outcome.applied,
            account=self._state.summary(),
            open_invoice_url=outcome.open_invoice_url,
        )

    @change_plan.validator
    def _check_change_plan(self, change: PlanChange) -> None:
        if not self._ready:
            return  # checked by the handler once the state is rebuilt
        lifecycle = self._state.lifecycle
        if lifecycle.state not in SCHEDULABLE_STATES or lifecycle.subscription is None:
            raise ValueError(f"the plan cannot be changed while the account is {lifecycle.state}")

    @workflow.update(name="cancel_plan_change")
    async def cancel_plan_change(self, request: KeepPlanRequest | None = None) -> UpdatedAccount:
        await self._when_ready(self._check_cancel_plan_change, request)
        await self._apply_or_refuse(CancelPlanChange(), cause="customer:keep_plan")
        return self._state.summary()

    @cancel_plan_change.validator
    def _check_cancel_plan_change(self, request: KeepPlanRequest | None = None) -> None:
        if not self._ready:
            return  # checked by the handler once the state is rebuilt
        if self._state.lifecycle.pending_change is None:
            raise ValueError("no plan change is scheduled")

    @workflow.update(name="cancel_subscription")
    async def cancel_subscription(self, request: CancelRequest) -> UpdatedAccount:
        await self._when_ready(self._check_cancel_subscription, request)
        subscription = self._state.lifecycle.subscription
        assert subscription is not None  # checked by the validator
        if request.at_period_end:
            await self._change_in_stripe(
                StripeChangeActivities.set_cancel_at_period_end,
                CancellationInput(subscription.subscription_id, self._idempotency_key(), True),
            )
        else:
            await self._change_in_stripe(
                StripeChangeActivities.cancel_subscription_now,
                SubscriptionCallInput(subscription.subscription_id, self._idempotency_key()),
            )
        return self._state.summary()

    @cancel_subscription.validator
    def _check_cancel_subscription(self, request: CancelRequest) -> None:
        if not self._ready:
            return  # checked by the handler once the state is rebuilt
        lifecycle = self._state.lifecycle
        if lifecycle.subscription is None:
            raise ValueError("the account has no subscription to cancel")
        if request.at_period_end and lifecycle.state not in SCHEDULABLE_STATES:
            raise ValueError(f"cannot cancel at period end while the account is {lifecycle.state}")

    @workflow.update(name="resume_subscription")
    async def resume_subscription(self, request: ResumeRequest | None = None) -> UpdatedAccount:
        await self._when_ready(self._check_resume_subscription, request)
        lifecycle = self._state.lifecycle
        assert lifecycle.subscription is not None  # checked by the validator
        subscription_id = lifecycle.subscription.subscription_id
        if lifecycle.state is BillingState.CANCELING:
            await self._change_in_stripe(
                StripeChangeActivities.set_cancel_at_period_end,
                CancellationInput(subscription_id, self._idempotency_key(), False),
            )
        else:
            await self._change_in_stripe(
                StripeChangeActivities.resume_paused_subscription,
                SubscriptionCallInput(subscription_id, self._idempotency_key()),
            )
        return self._state.summary()

    @resume_subscription.validator
    def _check_resume_subscription(self, request: ResumeRequest | None = None) -> None:
        if not self._ready:
            return  # checked by the handler once the state is rebuilt
        state = self._state.lifecycle.state
        if state not in (BillingState.CANCELING, BillingState.PAUSED):
            raise ValueError(f"nothing to resume: the account is {state}")

    @workflow.update(name="operator_action")
    async def operator_action(self, request: OperatorRequest) -> OperatorResult:
        await self._when_ready(self._check_operator_action, request)
        before = self._state.lifecycle
        lifecycle_input = lifecycle_input_for(request)
        if lifecycle_input is not None:
            await self._apply_or_refuse(lifecycle_input, cause=f"operator:{request.action}")
        else:
            await self._stripe_operator_action(request.action)
        update = workflow.current_update_info()
        assert update is not None  # this is an update handler
        await self._quick(
            AccountStoreActivities.record_operator_action,
            OperatorActionRecord(
                update_id=update.id,
                account_id=self._account_id,
                request=request,
                before=before,
                after=self._state.lifecycle,
            ),
        )
        return OperatorResult(action=request.action, account=self._state.summary())

    @operator_action.validator
    def _check_operator_action(self, request: OperatorRequest) -> None:
        # Refused here, a bad request never reaches the history.
        check_operator_request(request)
        if not self._ready:
            return  # the rest is checked by the handler once the state is rebuilt
        lifecycle_input = lifecycle_input_for(request)
        if lifecycle_input is not None:
            transition(self._state.lifecycle, lifecycle_input, workflow.now())
        elif request.action != "resync" and self._state.lifecycle.subscription is None:
            raise ValueError(f"{request.action} needs a subscription; the account has none")

    async def _stripe_operator_action(self, action: str) -> None:
        subscription = self._state.lifecycle.subscription
        if action == "cancel_now" and subscription is not None:
            await self._change_in_stripe(
                StripeChangeActivities.cancel_subscription_now,
                SubscriptionCallInput(subscription.subscription_id, self._idempotency_key()),
            )
        elif action == "retry_invoice" and subscription is not None:
            await self._change_in_stripe(
                StripeChangeActivities.pay_open_invoice,
                SubscriptionCallInput(subscription.subscription_id, self._idempotency_key()),
            )
        else:  # resync
            await self._sync_with_stripe()

    @workflow.query(name="state")
    def state(self) -> AccountState:
        return replace(self._state, seen_event_ids=list(self._seen))

    @workflow.run
    async def run(self, input: AccountWorkflowInput) -> None:
        self._failed_step_waits = workflow.patched(FAILED_STEP_WAITS_FOR_ITS_RETRY)
        self._emails_through_outbox = workflow.patched(EMAILS_THROUGH_OUTBOX)
        if self._emails_through_outbox:
            # Emails an earlier run was retrying itself: the sender takes them over.
            self._state.emails_to_queue += [e.request for e in self._state.emails_to_retry]
            self._state.emails_to_retry = []
        if workflow.patched(CONTINUES_PAST_HISTORY_LIMIT):
            self._history_limit = input.continue_as_new_past_history_length or (
                HISTORY_EVENTS_PER_RUN
            )
        if input.state is None:
            await self._rebuild_from_database()
        while True:
            await self._wait_for_work()
            await self._follow_stripe_and_clock()
            # Checked with no await before the continue-as-new: no handler can start in
            # between. Until then the loop keeps serving events and timers, so a handler
            # waiting on the account's progress never waits on this. An email attempt under
            # way is let finish (its retries are the account's own timers, in its state): a
            # closed run never leaves an attempt behind to race the next run's.
            if self._ready_to_continue_as_new():
                workflow.continue_as_new(
                    AccountWorkflowInput(
                        account_id=self._account_id,
                        state=self.state(),
                        pending_events=self._pending,
                        continue_as_new_after_events=self._continue_as_new_after,
                        continue_as_new_past_history_length=(
                            input.continue_as_new_past_history_length
                        ),
                    ),
                    # Only the attributes that hold a value: an unset one copied into the next
                    # run stays a null the client cannot decode on describe() (seen on the
                    # time-skipping server, seeds 313 and 685 of the simulation).
                    search_attributes=workflow.info().typed_search_attributes,
                )

    def _ready_to_continue_as_new(self) -> bool:
        return (
            self._should_continue_as_new()
            and workflow.all_handlers_finished()
            and not self._emails_in_flight
        )

    async def _follow_stripe_and_clock(self) -> None:
        """One pass of the loop: apply what Stripe says now, let time pass, make a due plan
        change, send due reminders. A failure is recorded, and the pass is tried again later."""
        if self._event_arrived or not self._backing_off():
            self._event_arrived = False
            await self._take_steps()
        self._send_due_reminders()
        if self._emails_to_queue_now():
            await self._queue_emails()
        self._retry_due_emails()

    def _backing_off(self) -> bool:
        """A failed step is tried again at `retry_at`, or sooner when a new event arrives;
        until then the account's steps wait, or every wake-up (an email retry, the events a
        failed write put back) would spend a whole step budget again at once."""
        return (
            self._failed_step_waits
            and self._state.retry_at is not None
            and self._state.retry_at > workflow.now()
        )

    async def _take_steps(self) -> None:
        if self._state.retry_at is not None:  # the retry is due, or an event may be news
            self._state.retry_at = None
            self._resync_requested = True
        try:
            if self._pending or self._resync_requested:
                await self._sync_with_stripe()
            if self._state.retry_at is not None:
                return  # the sync failed: the clock's steps wait for its retry
            await self._apply(TimePassed(), cause="time_passed")
            if (due := due_plan_change(self._state.lifecycle, workflow.now())) is not None:
                await self._make_scheduled_change(due)
        except ActivityError as err:
            self._record_failure("the account's step failed", err)
        else:
            if self._state.sync_error is None:
                self._state.failed_attempts = 0

    async def _rebuild_from_database(self) -> None:
        """A first run, or a new run after an operator terminated the old one. Until the
        database answers, nothing else can happen; the events arriving meanwhile wait in the
        run (never lost with a failed run)."""
        while True:
            try:
                stored: StoredAccountState = await self._quick(
                    AccountStoreActivities.load_account_state,
                    self._account_id,
                )
            except ActivityError as err:
                self._record_failure("cannot read the account from the database", err)
                assert self._state.retry_at is not None
                await workflow.sleep(self._state.retry_at - workflow.now())
            else:
                break
        self._clear_sync_error()
        self._state.customer_id = stored.customer_id
        self._state.entitlement_version = stored.entitlement_version
        if stored.lifecycle is not None:
            self._state.lifecycle = stored.lifecycle
        # Whatever happened while no run existed is only known to Stripe: ask it.
        self._resync_requested = stored.customer_id is not None
        self._ready = True
        self._publish_for_operators()

    def _next_wake_up(self) -> datetime | None:
        state = self._state
        deadlines: list[datetime | None]
        if state.retry_at is not None:
            # Past deadlines wait for the retry too, or a failing step would spin.
            deadlines = [state.retry_at]
        else:
            deadlines = [
                next_deadline(state.lifecycle),
                next_ladder_step_at(state.lifecycle, state.dunning_policy, set(state.ladder_sent)),
            ]
        deadlines += [email.next_attempt_at for email in state.emails_to_retry]
        return min((d for d in deadlines if d is not None), default=None)

    async def _wait_for_work(self) -> None:
        deadline = self._next_wake_up()
        timeout = None
        if deadline is not None:
            timeout = max(deadline - workflow.now(), timedelta(0))
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: (
                    self._event_arrived
                    or ((bool(self._pending) or self._resync_requested) and not self._backing_off())
                    or self._emails_to_queue_now()
                    or self._ready_to_continue_as_new()
                    # An operator update moved the deadline: re-arm the timer.
                    or self._next_wake_up() != deadline
                ),
                timeout=timeout,
            )

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        history_limit = self._history_limit
        if history_limit is not None and info.get_current_history_length() >= history_limit:
            return True
        limit = self._continue_as_new_after
        return limit is not None and self._events_this_run >= limit

    async def _sync_with_stripe(self) -> None:
        """Fetch the account's subscription from Stripe now and apply it, under the lock.
        Update handlers call this themselves after changing Stripe, so that no handler waits
        on the main loop. A failed fetch is recorded as the sync error (the events are still
        taken in); a failed database write puts the events back for the retry."""
        async with self._lock:
            # Everything that arrived so far is answered by one fetch.
            events, self._pending = self._pending, []
            self._resync_requested = False
            try:
                await self._fetch_and_apply(events)
            except ActivityError as err:
                self._pending[:0] = [e for e in events if e.event_id not in self._seen]
                self._record_failure("cannot store the account's Stripe state", err)

    async def _make_scheduled_change(self, change: PendingChange) -> None:
        subscription = self._state.lifecycle.subscription
        assert subscription is not None  # a pending change lapses with the subscription
        try:
            await workflow.execute_activity_method(
                StripeChangeActivities.change_subscription,
                ChangeSubscriptionInput(
                    subscription_id=subscription.subscription_id,
                    purchase=change.purchase,
                    proration_behavior="none",
                    idempotency_key=(
                        f"{workflow.info().workflow_id}/scheduled/{change.effective_at.isoformat()}"
                    ),
                ),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                schedule_to_close_timeout=DOWNGRADE_LEAD,
                retry_policy=PATIENT_RETRY,
            )
        except ActivityError as err:
            # Refused, or Stripe out past the renewal: the customer renews on the old plan.
            self._note_sync_error("the scheduled plan change was not made", err)
            await self._cancel_pending_change(cause="scheduled_change_refused", only=change)
            return
        # Stripe now shows the new plan; the sync applies it and clears the pending change.
        await self._sync_with_stripe()

    async def _fetch_and_apply(self, events: list[StripeEventSignal]) -> None:
        """Called with the lock held."""
        received = [ReceivedEvent(e.event_id, e.event_type, e.created) for e in events]
        recorded = False
        await self._learn_customer(events)
        if self._state.customer_id is None:
            # An operator may have linked the customer since (unroutable events, resync).
            stored: StoredAccountState = await self._quick(
                AccountStoreActivities.load_account_state, self._account_id
            )
            self._state.customer_id = stored.customer_id
        fetch_failure: Exception | None = None
        if self._state.customer_id is not None:
            try:
                fetched: SubscriptionFetch = await self._quick(
                    StripeSyncActivities.fetch_current_subscription,
                    FetchSubscriptionInput(customer_id=self._state.customer_id),
                )
            except ActivityError as err:
                fetch_failure = err
            else:
                self._state.dunning_policy = fetched.dunning
                observed = SubscriptionObserved(fetched.subscription, fetched.grace_days)
                # Recorded by the entitlement write, in its transaction (in runs recorded
                # before that, apart).
                together = bool(received) and workflow.patched(QUICK_STEPS_LOCAL_FIRST)
                try:
                    recorded = await self._transition(
                        observed, cause=_cause(events), received=received if together else None
                    )
                except InvalidTransition as err:  # a status this service does not know
                    fetch_failure = err
                else:
                    self._state.retry_at = None
                    if others := fetched.other_live_plan_subscriptions:
                        self._show_sync_error(
                            "TwoLivePlans",
                            f"the customer also has the live plan subscription(s) "
                            f"{', '.join(others)}; access follows the one chosen by "
                            "domain.subscriptions.deciding_subscription: cancel or refund the "
                            "others in the Stripe Dashboard",
                        )
                    else:
                        self._clear_sync_error()
                for event in events:
                    email = event_email(
                        self._account_id, event.event_type, event.event_id, self._state.lifecycle
                    )
                    if email is not None:
                        self._send(email)
        if received and not recorded:
            await self._quick(
                AccountStoreActivities.record_stripe_events,
                RecordEventsInput(account_id=self._account_id, events=received),
            )
        for event in events:
            self._remember(event.event_id)
        self._events_this_run += len(events)
        if fetch_failure is not None:
            self._record_failure("cannot read the subscription from Stripe", fetch_failure)

    async def _learn_customer(self, events: list[StripeEventSignal]) -> None:
        customer_id = next((e.customer_id for e in events if e.customer_id), None)
        if customer_id is None or customer_id == self._state.customer_id:
            return
        if self._state.customer_id is not None:
            workflow.logger.warning(
                "event names customer %s, account is linked to %s; keeping the link",
                customer_id,
                self._state.customer_id,
            )
            return
        try:
            await self._quick(
                AccountStoreActivities.link_customer,
                LinkCustomerInput(account_id=self._account_id, customer_id=customer_id),
            )
        except ActivityError as err:
            if not _is_final(err):
                raise
            # The customer belongs to another account (metadata naming this one): the
            # events are taken in, the link stays as it is, and operators decide.
            self._note_sync_error(f"cannot link customer {customer_id}", err)
            return
        self._state.customer_id = customer_id

    async def _cancel_pending_change(self, cause: str, only: PendingChange | None = None) -> None:
        """Cancel the scheduled plan change, if there still is one (and it is `only`, when
        given). Checked under the lock: another handler may have cancelled it while this one
        waited for the lock, and cancelling nothing is an InvalidTransition, which in a
        handler fails the workflow task on every retry (the simulation, seed 2964: two
        upgrades at once froze the account)."""
        async with self._lock:
            pending = self._state.lifecycle.pending_change
            if pending is not None and (only is None or pending == only):
                await self._transition(CancelPlanChange(), cause)

    async def _apply(self, event: LifecycleInput, cause: str) -> None:
        """Move the lifecycle by `event` under the lock."""
        async with self._lock:
            await self._transition(event, cause)

    async def _transition(
        self, event: LifecycleInput, cause: str, received: list[ReceivedEvent] | None = None
    ) -> bool:
        """Move the lifecycle and store the new entitlements, if the input changes anything;
        returns whether `received` events were recorded along with them. Called with the
        lock held."""
        result = transition(self._state.lifecycle, event, workflow.now())
        if not result.changed:
            return False
        version = self._state.entitlement_version + 1

        def notice_emails(version: int) -> list[Email]:
            return [
                notice_email(self._account_id, notice, result.before, result.after, version)
                for notice in result.notices
            ]

        while True:
            try:
                await self._quick(
                    AccountStoreActivities.write_entitlements,
                    WriteEntitlementsInput(
                        account_id=self._account_id,
                        version=version,
                        lifecycle=result.after,
                        cause=cause,
                        notices=[str(n) for n in result.notices],
                        events=received or [],
                        # Queued with the change that calls for them, in its transaction.
                        emails=(
                            [self._email_request(e) for e in notice_emails(version)]
                            if self._emails_through_outbox
                            else []
                        ),
                    ),
                )
                break
            except ActivityError as err:
                taken = _version_taken(err)
                if taken is None:
                    # The write may have landed before its answer was lost. With the outbox,
                    # the next write tries the same version again: the same lifecycle is a
                    # repeat whose emails (same keys) are queued once; another one is told the
                    # version is taken. Earlier runs' next write takes a newer version.
                    if not self._emails_through_outbox:
                        self._state.entitlement_version = version
                    raise
                # A write of this version landed from a workflow task that was then lost
                # (a worker crash), and this one was redone from newer Stripe data.
                workflow.logger.warning("entitlement %s; writing after it", err.cause)
                version = taken + 1
        self._state.lifecycle = result.after
        self._state.entitlement_version = version
        self._publish_for_operators()
        if result.after.grace_started_at != result.before.grace_started_at:
            self._state.ladder_sent = []
        if not self._emails_through_outbox:
            for email in notice_emails(version):
                self._send(email)
        return bool(received)

    def _note_sync_error(self, what: str, err: Exception) -> None:
        """Show operators that the account could not follow Stripe, and why."""
        cause = _root_cause(err)
        self._show_sync_error(_failure_kind(cause), f"{what}: {cause}")

    def _show_sync_error(self, kind: str, message: str) -> None:
        self._state.sync_error, self._state.sync_error_kind = message, kind
        workflow.logger.error("account %s: %s", self._account_id, message)
        self._publish_for_operators()

    def _record_failure(self, what: str, err: Exception) -> None:
        """`_note_sync_error`, and try again later, backing off up to an hour."""
        self._note_sync_error(what, err)
        delay = backoff(RETRY_FIRST_DELAY, self._state.failed_attempts, RETRY_MAX_DELAY)
        self._state.failed_attempts += 1
        self._state.retry_at = workflow.now() + delay

    def _clear_sync_error(self) -> None:
        if self._state.sync_error is None and self._state.retry_at is None:
            return
        self._state.sync_error = self._state.sync_error_kind = self._state.retry_at = None
        self._publish_for_operators()

    def _send_due_reminders(self) -> None:
        state = self._state
        sent = set(state.ladder_sent)
        for step in due_ladder_steps(state.lifecycle, state.dunning_policy, sent, workflow.now()):
            self._send(ladder_email(self._account_id, step, state.lifecycle))
            state.ladder_sent.append(step.step)

    def _email_request(self, email: Email) -> SendEmailInput:
        return SendEmailInput(
            key=email.key,
            account_id=self._account_id,
            customer_id=self._state.customer_id,
            kind=email.kind,
            context=email.context,
            only_in_states=(sorted(UNPAID_STATES) if email.kind in DUNNING_REMINDER_KINDS else []),
        )

    def _send(self, email: Email) -> None:
        """Queue the email (the main loop writes it to the outbox), or, in runs without the
        outbox, start sending without waiting: SMTP must never hold up the account."""
        request = self._email_request(email)
        if self._emails_through_outbox:
            if all(e.key != request.key for e in self._state.emails_to_queue):
                self._state.emails_to_queue.append(request)
            return
        already = {e.request.key for e in self._state.emails_to_retry}
        if request.key not in already and request.key not in self._emails_in_flight:
            self._attempt_email(UnsentEmail(request, workflow.now() + EMAIL_GIVE_UP_AFTER))

    def _emails_to_queue_now(self) -> bool:
        return bool(self._state.emails_to_queue) and not self._backing_off()

    async def _queue_emails(self) -> None:
        """Write the emails waiting in the state to the outbox. Only the main loop calls this,
        and a handler never waits on it; a failure keeps them for the account's retry."""
        emails, self._state.emails_to_queue = self._state.emails_to_queue, []
        try:
            await self._quick(
                AccountStoreActivities.queue_emails, QueueEmailsInput(self._account_id, emails)
            )
        except ActivityError as err:
            self._state.emails_to_queue[:0] = emails
            self._record_failure("cannot queue the account's emails", err)

    def _attempt_email(self, email: UnsentEmail) -> None:
        key = email.request.key
        email.attempts += 1
        task = workflow.start_activity_method(
            NotificationActivities.send_email,
            email.request,
            start_to_close_timeout=EMAIL_TIMEOUT,
            retry_policy=SINGLE_ATTEMPT,
        )
        self._emails_in_flight[key] = email
        task.add_done_callback(lambda done: self._email_attempt_done(email, done))

    def _email_attempt_done(self, email: UnsentEmail, task: asyncio.Future[Any]) -> None:
        self._emails_in_flight.pop(email.request.key, None)
        error = None if task.cancelled() else task.exception()
        if error is None:
            return
        delay = backoff(EMAIL_FIRST_RETRY, email.attempts - 1, EMAIL_MAX_RETRY)
        retry_at = workflow.now() + delay
        if (isinstance(error, ActivityError) and _is_final(error)) or retry_at > email.give_up_at:
            # Refused (a bad template) or given up: the outbox row says why.
            workflow.logger.error("email %s not sent: %s", email.request.key, error)
            return
        email.next_attempt_at = retry_at
        self._state.emails_to_retry.append(email)

    def _retry_due_emails(self) -> None:
        now = workflow.now()
        due = [
            e
            for e in self._state.emails_to_retry
            if e.next_attempt_at is not None and e.next_attempt_at <= now
        ]
        self._state.emails_to_retry = [e for e in self._state.emails_to_retry if e not in due]
        for email in due:
            self._attempt_email(email)

    async def _when_ready(self, check: Callable[..., None], *args: Any) -> None:
        """Wait for a first run's rebuild, then check the request against the real state: a
        validator that ran before the rebuild saw an empty account and let it through."""
        await workflow.wait_condition(lambda: self._ready)
        try:
            check(*args)
        except ValueError as err:
            raise ApplicationError(str(err), type="InvalidRequest") from err

    async def _apply_or_refuse(self, event: LifecycleInput, cause: str) -> None:
        """`_apply` for update handlers: a transition the state no longer allows (it moved
        since the validator ran) fails the update, not the workflow task."""
        try:
            await self._apply(event, cause)
        except InvalidTransition as err:
            raise ApplicationError(str(err), type="InvalidTransition") from err

    async def _change_in_stripe(
        self, activity: MethodSyncSingleParam[Any, ParamT, ResultT], argument: ParamT
    ) -> ResultT:
        """A Stripe change an update waits on, then the sync that applies what Stripe shows
        now (by the handler itself: see `_sync_with_stripe`). The change is retried within
        UPDATE_STRIPE_BUDGET; then the update fails with the failure's class (Stripe's refusal,
        or the outage)."""
        try:
            result = await workflow.execute_activity_method(
                activity,
                argument,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                schedule_to_close_timeout=UPDATE_STRIPE_BUDGET,
                retry_policy=PATIENT_RETRY,
            )
        except ActivityError as err:
            if not _is_final(err):
                # The change may have reached Stripe before its answer was lost: look.
                self._resync_requested = True
            cause = _root_cause(err)
            raise ApplicationError(
                f"Stripe did not make the change: {cause}", type=_failure_kind(cause)
            ) from err
        await self._sync_with_stripe()
        return result

    @overload
    async def _call(
        self, activity: MethodAsyncSingleParam[Any, ParamT, ResultT], argument: ParamT
    ) -> ResultT: ...
    @overload
    async def _call(
        self, activity: MethodSyncSingleParam[Any, ParamT, ResultT], argument: ParamT
    ) -> ResultT: ...
    async def _call(self, activity: Callable[[Any, Any], Any], argument: Any) -> Any:
        return await workflow.execute_activity_method(
            activity,
            argument,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            schedule_to_close_timeout=STEP_BUDGET,
            retry_policy=PATIENT_RETRY,
        )

    @overload
    async def _quick(
        self, activity: MethodAsyncSingleParam[Any, ParamT, ResultT], argument: ParamT
    ) -> ResultT: ...
    @overload
    async def _quick(
        self, activity: MethodSyncSingleParam[Any, ParamT, ResultT], argument: ParamT
    ) -> ResultT: ...
    async def _quick(self, activity: Callable[[Any, Any], Any], argument: Any) -> Any:
        """Our database and the Stripe fetch, on every event: first as a local activity
        inside the workflow task, which costs the server no round trip. If that attempt fails
        (Stripe or the database in trouble, or bad data) the same idempotent activity runs as
        a regular one: patient backoff, shown pending with its last failure in the Web UI."""
        if not workflow.patched(QUICK_STEPS_LOCAL_FIRST):
            return await self._call(activity, argument)  # runs recorded before the change
        try:
            return await workflow.execute_local_activity_method(
                activity,
                argument,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=SINGLE_ATTEMPT,
            )
        except FailureError as err:
            # However it failed (error, timeout; a local attempt's error may arrive unwrapped),
            # the regular activity decides, and fails the usual way (ActivityError) if it must.
            workflow.logger.warning("local attempt failed, retrying as an activity: %s", err)
        return await self._call(activity, argument)

    def _idempotency_key(self) -> str:
        """Stripe idempotency key for the running update: same update, same key."""
        update = workflow.current_update_info()
        assert update is not None
        return f"{workflow.info().workflow_id}/{update.id}"

    def _remember(self, event_id: str) -> None:
        self._seen[event_id] = None
        while len(self._seen) > SEEN_EVENT_WINDOW:
            del self._seen[next(iter(self._seen))]

    def _publish_for_operators(self) -> None:
        publish_for_operators(
            self._account_id, self._state, every_time=not workflow.patched(QUICK_STEPS_LOCAL_FIRST)
        )


def _cause(events: list[StripeEventSignal]) -> str:
    return "stripe:" + ",".join(e.event_id for e in events) if events else "resync"


def _root_cause(err: Exception) -> BaseException:
    """What failed: the activity's own error, or the timeout that ended its retries (whose
    cause is the last attempt's error)."""
    return (err.cause or err) if isinstance(err, ActivityError) else err


def _is_final(err: ActivityError) -> bool:
    """Refused or bad data: the same call would fail the same way again."""
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.non_retryable


def _failure_kind(cause: BaseException) -> str:
    if isinstance(cause, ApplicationError) and cause.type:
        return cause.type
    if isinstance(cause, ActivityTimeout):
        return "Unavailable"  # retried within its budget, still failing
    return type(cause).__name__


def _version_taken(err: ActivityError) -> int | None:
    """The stored version, when the write failed because its version holds another lifecycle."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == VERSION_TAKEN and cause.details:
        return int(cause.details[0])
    return None
