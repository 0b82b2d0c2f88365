"""The event's fetch and write in one activity (issue 28) stores what the two steps would."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from temporalio.testing import ActivityEnvironment

from activities.account_store import ReceivedEvent, RecordEventsInput, WriteEntitlementsInput
from activities.account_sync import AccountSyncActivities, SyncAccountInput
from activities.stripe_sync import FetchSubscriptionInput, SubscriptionFetch
from domain.lifecycle import Lifecycle, SubscriptionObserved, SubscriptionSnapshot, transition

NOW = datetime(2026, 12, 6, tzinfo=UTC)
EVENTS = [ReceivedEvent("evt_1", "customer.subscription.updated", 1)]


def snapshot(status: str = "active", seats: int = 1) -> SubscriptionSnapshot:
    return SubscriptionSnapshot(
        subscription_id="sub_1",
        customer_id="cus_1",
        status=status,
        plan="team",
        interval="month",
        seats=seats,
        current_period_end=datetime(2027, 1, 1, tzinfo=UTC),
    )


class Store:
    def __init__(self, fetched: SubscriptionSnapshot | Exception) -> None:
        self.fetched = fetched
        self.writes: list[WriteEntitlementsInput] = []
        self.records: list[RecordEventsInput] = []

    async def fetch(self, request: FetchSubscriptionInput) -> SubscriptionFetch:
        assert request.customer_id == "cus_1"
        if isinstance(self.fetched, Exception):
            raise self.fetched
        return SubscriptionFetch(subscription=self.fetched, grace_days=7)

    def write(self, request: WriteEntitlementsInput) -> bool:
        self.writes.append(request)
        return True

    def record(self, request: RecordEventsInput) -> int:
        self.records.append(request)
        return len(request.events)

    async def sync(self, lifecycle: Lifecycle) -> tuple[bool, SubscriptionFetch]:
        activities = AccountSyncActivities(self.fetch, self.write, self.record)
        synced = await ActivityEnvironment().run(
            activities.fetch_and_store_subscription,
            SyncAccountInput(
                account_id="acct_1",
                customer_id="cus_1",
                lifecycle=lifecycle,
                now=NOW,
                version=4,
                cause="stripe:evt_1",
                events=EVENTS,
            ),
        )
        return synced.written, synced.fetch


def active(seats: int) -> Lifecycle:
    return transition(Lifecycle(), SubscriptionObserved(snapshot(seats=seats), 7), NOW).after


async def test_a_change_is_written_at_the_version_with_its_events() -> None:
    store = Store(snapshot(seats=4))
    written, fetched = await store.sync(active(seats=3))

    expected = transition(active(seats=3), SubscriptionObserved(snapshot(seats=4), 7), NOW)
    assert written and fetched.subscription == snapshot(seats=4)
    [write] = store.writes
    assert (write.version, write.lifecycle, write.events) == (4, expected.after, EVENTS)
    assert write.notices == [str(n) for n in expected.notices]
    assert store.records == []


async def test_nothing_changed_records_the_events_only() -> None:
    store = Store(snapshot(seats=3))
    written, _ = await store.sync(active(seats=3))

    assert not written and store.writes == []
    assert [r.events for r in store.records] == [EVENTS]


async def test_a_status_the_lifecycle_does_not_know_records_the_events_only() -> None:
    store = Store(snapshot(status="a_status_from_the_future"))
    written, fetched = await store.sync(active(seats=3))

    # The workflow reports it from the same fetch (its own transition raises the same way).
    assert not written and fetched.subscription is not None
    assert store.writes == [] and [r.events for r in store.records] == [EVENTS]


async def test_a_failed_fetch_writes_nothing() -> None:
    store = Store(ConnectionError("Stripe is unreachable"))
    with pytest.raises(ConnectionError):
        await store.sync(active(seats=3))
    assert store.writes == [] and store.records == []
