"""What every fault test proves at the end, stated once.

1. Entitlements equal Stripe's truth: the stored lifecycle is what the pure rules say about
   the subscription Stripe lists for the customer now (`deciding_subscription`, then
   `state_for_subscription`).
2. Every email exactly once: each outbox key the service sent reached the SMTP server once,
   and nothing reached it that the outbox does not hold as sent. A test that kills the sender
   after the SMTP server took a message and before the outbox says `sent` names those keys:
   they may arrive twice (docs/reliability.md, "Email delivery: at least once").
3. No event lost: every handled event Stripe lists for the customer was taken in by its
   account (`stripe_events`).

Each check returns the problems it found (empty: all good), so a test can poll it until the
system settles and then show exactly what is still wrong.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db import repository
from db.models import EmailDelivery, StripeEvent
from db.outbox import DeliveryStatus
from domain.catalog import default_catalog
from domain.lifecycle import BillingState, SubscriptionSnapshot, state_for_subscription
from domain.stripe_events import HANDLED_EVENT_TYPES
from domain.subscriptions import deciding_subscription, snapshot_from_stripe
from notifications.message import KEY_HEADER
from tests.conftest import wait_for
from tests.smtp_server import ReceivedMessage

# account id -> Stripe customer id
Accounts = Mapping[str, str]


def stripe_truth(
    client: stripe.StripeClient, customer_id: str
) -> tuple[BillingState, SubscriptionSnapshot | None]:
    """The state and subscription the account must end in, from Stripe alone."""
    listing = client.v1.subscriptions.list(
        params={
            "customer": customer_id,
            "status": "all",
            "limit": 100,
            "expand": ["data.latest_invoice"],
        }
    )
    subscriptions = (s.to_dict() for s in listing.auto_paging_iter())
    current = deciding_subscription(subscriptions, default_catalog()).deciding
    snapshot = None if current is None else snapshot_from_stripe(current, default_catalog())
    return state_for_subscription(snapshot), snapshot


def entitlement_drifts(
    sessions: sessionmaker[Session], client: stripe.StripeClient, accounts: Accounts, now: datetime
) -> list[str]:
    """Accounts whose stored lifecycle differs from Stripe's truth. `now` is the workflows'
    time: an unpaid account past its grace end is rightly `restricted` where Stripe only
    says `past_due`."""
    drifts = []
    for account_id, customer_id in accounts.items():
        expected_state, expected_subscription = stripe_truth(client, customer_id)
        with sessions() as session:
            stored = repository.stored_lifecycle(session, account_id)
        stored_state = BillingState.FREE if stored is None else stored.state
        stored_subscription = None if stored is None else stored.subscription
        grace_over = (
            stored is not None and stored.grace_ends_at is not None and stored.grace_ends_at <= now
        )
        state_right = stored_state == expected_state or (
            expected_state is BillingState.PAST_DUE
            and stored_state is BillingState.RESTRICTED
            and grace_over
        )
        if expected_state is BillingState.FREE:
            subscription_right = stored_subscription is None
        else:
            subscription_right = stored_subscription == expected_subscription
        if not (state_right and subscription_right):
            drifts.append(
                f"{account_id}: stored {stored_state} {stored_subscription}, "
                f"Stripe says {expected_state} {expected_subscription}"
            )
    return drifts


def email_problems(
    sessions: sessionmaker[Session],
    received: Sequence[ReceivedMessage],
    accounts: Accounts,
    may_arrive_twice: Collection[str] = (),
) -> list[str]:
    """Emails sent twice (beyond `may_arrive_twice`), sent without an outbox row, or still
    unsettled in the outbox."""
    with sessions() as session:
        rows = session.scalars(
            select(EmailDelivery).where(EmailDelivery.account_id.in_(list(accounts)))
        ).all()
    outbox = {row.key: row.status for row in rows}
    addresses = {f"{account_id}@example.com" for account_id in accounts}
    keys_received = Counter(
        str(message.message[KEY_HEADER])
        for message in received
        if addresses.intersection(message.rcpt_tos)
    )
    problems = [
        f"{key} received {count} times"
        for key, count in keys_received.items()
        if count > (2 if key in may_arrive_twice else 1)
    ]
    for key, status in outbox.items():
        if status == DeliveryStatus.PENDING.value:
            problems.append(f"{key} still pending")
        elif status == DeliveryStatus.SENT.value and keys_received[key] == 0:
            problems.append(f"{key} marked sent but never received")
    problems += [
        f"{key} received but the outbox says {outbox.get(key)}"
        for key in keys_received
        if outbox.get(key) != DeliveryStatus.SENT.value
    ]
    return problems


def listed_events(client: stripe.StripeClient) -> list[dict[str, Any]]:
    """Every handled event Stripe lists, newest first."""
    listing = client.v1.events.list(params={"types": sorted(HANDLED_EVENT_TYPES), "limit": 100})
    return [event.to_dict() for event in listing.auto_paging_iter()]


def lost_events(
    sessions: sessionmaker[Session], client: stripe.StripeClient, accounts: Accounts
) -> list[str]:
    """Events Stripe lists for the accounts' customers that no account took in."""
    customers = set(accounts.values())
    expected = {
        event["id"]: event["type"]
        for event in listed_events(client)
        if _customer_of(event["data"]["object"]) in customers
    }
    with sessions() as session:
        taken_in = set(
            session.scalars(
                select(StripeEvent.event_id).where(StripeEvent.account_id.in_(list(accounts)))
            )
        )
    return [
        f"{event_id} ({kind})" for event_id, kind in expected.items() if event_id not in taken_in
    ]


def _customer_of(obj: Mapping[str, Any]) -> str | None:
    if obj.get("object") == "customer":
        return str(obj["id"])
    customer = obj.get("customer")
    return customer if isinstance(customer, str) else None


async def wall_clock() -> datetime:
    """`now` for stacks whose Stripe runs on real time (no test clock)."""
    return datetime.now(UTC)


async def assert_converged(
    sessions: sessionmaker[Session],
    client: stripe.StripeClient,
    received: Callable[[], Sequence[ReceivedMessage]],
    accounts: Accounts,
    now: Callable[[], Awaitable[datetime]],
    *,
    within: float = 60,
    may_arrive_twice: Collection[str] = (),
) -> None:
    """Wait until all three checks pass for `accounts`; fail with what is still wrong."""
    problems: list[str] = []

    async def all_right() -> bool:
        nonlocal problems
        problems = await asyncio.to_thread(
            lambda: [
                *lost_events(sessions, client, accounts),
                *email_problems(sessions, received(), accounts, may_arrive_twice),
            ]
        )
        if not problems:
            moment = await now()
            problems = await asyncio.to_thread(
                entitlement_drifts, sessions, client, accounts, moment
            )
        return not problems

    try:
        await wait_for(all_right, within=within, what="the accounts to match Stripe")
    except AssertionError:
        shown = "\n  ".join(problems[:20])
        raise AssertionError(f"{len(problems)} problems after {within}s:\n  {shown}") from None
