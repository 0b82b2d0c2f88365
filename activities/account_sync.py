"""An event's whole step in one activity: fetch the subscription, store what it changes.

The account workflow decides from the fetched subscription with a pure function
(`domain.lifecycle.transition`) of its lifecycle and the time; given both, this activity
makes the same decision, stores it, and returns the fetch, so the workflow applies the same
transition itself without a second local activity (issue 28). The stored result is the one
the two steps would store: same transition, same version, the events recorded in the same
transaction. Anything that fails here is left to those two steps (see the workflow's
`_fetch_and_apply`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from temporalio import activity

from activities.account_store import ReceivedEvent, RecordEventsInput, WriteEntitlementsInput
from activities.failures import classify_failures
from activities.stripe_sync import FetchSubscriptionInput, SubscriptionFetch
from domain.lifecycle import InvalidTransition, Lifecycle, SubscriptionObserved, transition


@dataclass
class SyncAccountInput:
    account_id: str
    customer_id: str
    # The workflow's lifecycle and time: the transition is computed from these, here and in
    # the workflow alike.
    lifecycle: Lifecycle
    now: datetime
    # The version a write takes (the workflow's stored version + 1).
    version: int
    cause: str
    # Recorded as handled in the write's transaction, or on their own if nothing changes.
    events: list[ReceivedEvent] = field(default_factory=list)


@dataclass
class SyncedAccount:
    fetch: SubscriptionFetch
    # The new lifecycle is stored at the input's version (False: nothing changed, or the
    # subscription's status is one the lifecycle does not know; the events are recorded).
    written: bool


class AccountSyncActivities:
    """Built on the worker's own fetch, write and record (`worker.build_activities`)."""

    def __init__(
        self,
        fetch: Callable[[FetchSubscriptionInput], Awaitable[SubscriptionFetch]],
        write: Callable[[WriteEntitlementsInput], bool],
        record: Callable[[RecordEventsInput], int],
    ) -> None:
        self._fetch = fetch
        self._write = write
        self._record = record

    @activity.defn
    @classify_failures
    async def fetch_and_store_subscription(self, request: SyncAccountInput) -> SyncedAccount:
        fetched = await self._fetch(FetchSubscriptionInput(customer_id=request.customer_id))
        observed = SubscriptionObserved(fetched.subscription, fetched.grace_days)
        try:
            result = transition(request.lifecycle, observed, request.now)
        except InvalidTransition:
            result = None  # the workflow reports it, from the same fetch
        if result is not None and result.changed:
            write = WriteEntitlementsInput(
                account_id=request.account_id,
                version=request.version,
                lifecycle=result.after,
                cause=request.cause,
                notices=[str(n) for n in result.notices],
                events=request.events,
            )
            # SQLAlchemy blocks: on a thread, as the worker runs its sync activities.
            await asyncio.to_thread(self._write, write)
            return SyncedAccount(fetch=fetched, written=True)
        if request.events:
            record = RecordEventsInput(account_id=request.account_id, events=request.events)
            await asyncio.to_thread(self._record, record)
        return SyncedAccount(fetch=fetched, written=False)
