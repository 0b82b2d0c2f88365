"""One long-running workflow per account: Stripe events in, entitlements and notices out.

The workflow never trusts the event that arrived last. Each burst of events is only a reason to
re-fetch the account's current subscription from Stripe and feed that snapshot to the pure
lifecycle rules, so duplicated or reordered deliveries converge on the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.account_store import (
        AccountStoreActivities,
        LinkCustomerInput,
        OperatorActionRecord,
        ReceivedEvent,
        RecordEventsInput,
        StoredAccountState,
        WriteEntitlementsInput,
    )
    from activities.stripe_sync import (
        FetchSubscriptionInput,
        StripeSyncActivities,
        SubscriptionFetch,
    )
    from domain.lifecycle import (
        InvalidTransition,
        Lifecycle,
        LifecycleInput,
        SubscriptionObserved,
        TimePassed,
        next_deadline,
        transition,
    )
    from domain.operator_actions import (
        OperatorRequest,
        check_operator_request,
        lifecycle_input_for,
    )

WORKFLOW_ID_PREFIX = "billing-account-"
# Stripe retries a delivery for up to 3 days; this many ids covers far more than that per account.
SEEN_EVENT_WINDOW = 1000

BILLING_STATE = SearchAttributeKey.for_keyword("BillingState")
BILLING_PLAN = SearchAttributeKey.for_keyword("BillingPlan")
STRIPE_CUSTOMER_ID = SearchAttributeKey.for_keyword("StripeCustomerId")
ACCOUNT_ID = SearchAttributeKey.for_keyword("AccountId")
GRACE_ENDS_AT = SearchAttributeKey.for_datetime("GraceEndsAt")
SEARCH_ATTRIBUTES: Sequence[SearchAttributeKey] = (
    BILLING_STATE,
    BILLING_PLAN,
    STRIPE_CUSTOMER_ID,
    ACCOUNT_ID,
    GRACE_ENDS_AT,
)

# Stripe or the database being down is waited out; only bad data gives up.
PATIENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
ACTIVITY_TIMEOUT = timedelta(seconds=30)


def workflow_id_for(account_id: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{account_id}"


@dataclass
class StripeEventSignal:
    event_id: str
    event_type: str
    created: int
    customer_id: str | None = None


@dataclass
class AccountState:
    """Everything that must survive continue-as-new."""

    customer_id: str | None = None
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    entitlement_version: int = 0
    seen_event_ids: list[str] = field(default_factory=list)
    # Set when the newest Stripe truth could not be applied (bad data); operators resync.
    sync_error: str | None = None


@dataclass
class OperatorResult:
    action: str
    state: AccountState


@dataclass
class AccountWorkflowInput:
    account_id: str
    state: AccountState | None = None
    pending_events: list[StripeEventSignal] = field(default_factory=list)
    # Test-only knob: continue-as-new after this many events so that path is exercised.
    continue_as_new_after_events: int | None = None


@workflow.defn
class AccountBillingWorkflow:
    @workflow.init
    def __init__(self, input: AccountWorkflowInput) -> None:
        self._account_id = input.account_id
        self._state = input.state or AccountState()
        self._seen = dict.fromkeys(self._state.seen_event_ids)
        self._pending: list[StripeEventSignal] = list(input.pending_events)
        # Ask Stripe even without a new event (a rebuilt run, an operator's resync).
        self._resync_requested = False
        # Counts finished Stripe syncs, so a resync can wait for one that started after it.
        self._syncs_done = 0
        self._syncing = False
        self._events_this_run = 0
        self._continue_as_new_after = input.continue_as_new_after_events
        # Applying a transition awaits the entitlement write; without the lock an operator
        # update and the main loop could both start from the same lifecycle and one change
        # would silently overwrite the other.
        self._apply_lock = asyncio.Lock()

    @workflow.signal(name="stripe_event")
    def stripe_event(self, event: StripeEventSignal) -> None:
        if event.event_id in self._seen or any(p.event_id == event.event_id for p in self._pending):
            return
        self._pending.append(event)

    @workflow.update(name="operator_action")
    async def operator_action(self, request: OperatorRequest) -> OperatorResult:
        before = self._state.lifecycle
        lifecycle_input = lifecycle_input_for(request)
        if lifecycle_input is None:  # resync
            await self._resync_now()
        else:
            try:
                await self._apply(lifecycle_input, cause=f"operator:{request.action}")
            except InvalidTransition as err:  # the state moved since validation
                raise ApplicationError(str(err), type="InvalidTransition") from err
        update = workflow.current_update_info()
        assert update is not None  # this is an update handler
        await workflow.execute_activity_method(
            AccountStoreActivities.record_operator_action,
            OperatorActionRecord(
                update_id=update.id,
                account_id=self._account_id,
                request=request,
                before=before,
                after=self._state.lifecycle,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=PATIENT_RETRY,
        )
        return OperatorResult(action=request.action, state=self.state())

    @operator_action.validator
    def _check_operator_action(self, request: OperatorRequest) -> None:
        # Refused here, a bad request never reaches the history.
        check_operator_request(request)
        lifecycle_input = lifecycle_input_for(request)
        if lifecycle_input is not None:
            transition(self._state.lifecycle, lifecycle_input, workflow.now())

    @workflow.query(name="state")
    def state(self) -> AccountState:
        return replace(self._state, seen_event_ids=list(self._seen))

    @workflow.run
    async def run(self, input: AccountWorkflowInput) -> None:
        if input.state is None:
            await self._rebuild_from_database()
        while True:
            await self._wait_for_work()
            if self._pending or self._resync_requested:
                await self._sync_with_stripe()
            await self._apply(TimePassed(), cause="time_passed")
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    AccountWorkflowInput(
                        account_id=self._account_id,
                        state=self.state(),
                        pending_events=self._pending,
                        continue_as_new_after_events=self._continue_as_new_after,
                    )
                )

    async def _rebuild_from_database(self) -> None:
        """A first run, or a new run after an operator terminated the old one."""
        stored: StoredAccountState = await workflow.execute_activity_method(
            AccountStoreActivities.load_account_state,
            self._account_id,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=PATIENT_RETRY,
        )
        self._state.customer_id = stored.customer_id
        self._state.entitlement_version = stored.entitlement_version
        if stored.lifecycle is not None:
            self._state.lifecycle = stored.lifecycle
        # Whatever happened while no run existed is only known to Stripe: ask it.
        self._resync_requested = stored.customer_id is not None
        self._upsert_search_attributes()

    async def _wait_for_work(self) -> None:
        deadline = next_deadline(self._state.lifecycle)
        timeout = None
        if deadline is not None:
            timeout = max(deadline - workflow.now(), timedelta(0))
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: (
                    bool(self._pending)
                    or self._resync_requested
                    or self._should_continue_as_new()
                    # An operator update moved the deadline: re-arm the timer.
                    or next_deadline(self._state.lifecycle) != deadline
                ),
                timeout=timeout,
            )

    def _should_continue_as_new(self) -> bool:
        if workflow.info().is_continue_as_new_suggested():
            return True
        limit = self._continue_as_new_after
        return limit is not None and self._events_this_run >= limit

    async def _sync_with_stripe(self) -> None:
        # Everything that arrived so far is answered by one fetch; later arrivals wait for
        # the next pass of the loop.
        events, self._pending = self._pending, []
        self._resync_requested = False
        self._syncing = True
        try:
            await self._fetch_and_apply(events)
        finally:
            self._syncing = False
            self._syncs_done += 1

    async def _resync_now(self) -> None:
        """Ask Stripe now, and return once that answer has been applied."""
        target = self._syncs_done + 1 + (1 if self._syncing else 0)
        self._resync_requested = True
        await workflow.wait_condition(lambda: self._syncs_done >= target)

    async def _fetch_and_apply(self, events: list[StripeEventSignal]) -> None:
        await self._learn_customer(events)
        if self._state.customer_id is not None:
            try:
                fetched: SubscriptionFetch = await workflow.execute_activity_method(
                    StripeSyncActivities.fetch_current_subscription,
                    FetchSubscriptionInput(customer_id=self._state.customer_id),
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=PATIENT_RETRY,
                )
            except ActivityError as err:
                self._state.sync_error = str(err.cause or err)
                workflow.logger.error("cannot apply Stripe state: %s", self._state.sync_error)
            else:
                self._state.sync_error = None
                observed = SubscriptionObserved(fetched.subscription, fetched.grace_days)
                await self._apply(observed, cause=_cause(events))
        if events:
            await workflow.execute_activity_method(
                AccountStoreActivities.record_stripe_events,
                RecordEventsInput(
                    account_id=self._account_id,
                    events=[ReceivedEvent(e.event_id, e.event_type, e.created) for e in events],
                ),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=PATIENT_RETRY,
            )
        for event in events:
            self._remember(event.event_id)
        self._events_this_run += len(events)

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
        await workflow.execute_activity_method(
            AccountStoreActivities.link_customer,
            LinkCustomerInput(account_id=self._account_id, customer_id=customer_id),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=PATIENT_RETRY,
        )
        self._state.customer_id = customer_id

    async def _apply(self, event: LifecycleInput, cause: str) -> None:
        async with self._apply_lock:
            result = transition(self._state.lifecycle, event, workflow.now())
            if not result.changed:
                return
            version = self._state.entitlement_version + 1
            await workflow.execute_activity_method(
                AccountStoreActivities.write_entitlements,
                WriteEntitlementsInput(
                    account_id=self._account_id,
                    version=version,
                    lifecycle=result.after,
                    cause=cause,
                    notices=[str(n) for n in result.notices],
                ),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=PATIENT_RETRY,
            )
            self._state.lifecycle = result.after
            self._state.entitlement_version = version
            self._upsert_search_attributes()

    def _remember(self, event_id: str) -> None:
        self._seen[event_id] = None
        while len(self._seen) > SEEN_EVENT_WINDOW:
            del self._seen[next(iter(self._seen))]

    def _upsert_search_attributes(self) -> None:
        lifecycle = self._state.lifecycle
        sub = lifecycle.subscription
        updates: list[SearchAttributeUpdate] = [
            BILLING_STATE.value_set(str(lifecycle.state)),
            BILLING_PLAN.value_set(sub.plan if sub else "free"),
            ACCOUNT_ID.value_set(self._account_id),
        ]
        if self._state.customer_id:
            updates.append(STRIPE_CUSTOMER_ID.value_set(self._state.customer_id))
        if lifecycle.grace_ends_at is not None:
            updates.append(GRACE_ENDS_AT.value_set(lifecycle.grace_ends_at))
        elif workflow.info().typed_search_attributes.get(GRACE_ENDS_AT) is not None:
            # Unsetting one never set stores a value the SDK cannot decode on describe().
            updates.append(GRACE_ENDS_AT.value_unset())
        workflow.upsert_search_attributes(updates)


def _cause(events: list[StripeEventSignal]) -> str:
    return "stripe:" + ",".join(e.event_id for e in events) if events else "resync"
