"""The e2e stack on a database of its own (the checks and the events reconciliation look at
every account in it), and the customer moves the fault tests make in Stripe."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import uuid4

import pytest

from tests.e2e.stack import Stack
from tests.faults.checks import Accounts, assert_converged


@pytest.fixture
def stack(isolated_stack: Stack) -> Stack:
    return isolated_stack


def new_account() -> str:
    return f"acct_{uuid4().hex[:10]}"


def subscribe(
    stack: Stack, account_id: str, lookup_key: str, *, seats: int = 1, clock: str | None = None
) -> tuple[str, dict[str, Any]]:
    """A paying customer for `account_id` (named in both metadata, as our checkout does)."""
    customer = stack.new_customer(account_id, clock=clock)
    stack.attach_card(customer)
    subscription = stack.stripe.v1.subscriptions.create(
        params={
            "customer": customer,
            "items": [{"price": stack.price_id(lookup_key), "quantity": seats}],
            "metadata": {"account_id": account_id},
        }
    )
    return customer, subscription.to_dict()


def change_price(stack: Stack, subscription: dict[str, Any], lookup_key: str, seats: int) -> None:
    [item] = subscription["items"]["data"]
    stack.stripe.v1.subscriptions.update(
        subscription["id"],
        params={
            "items": [{"id": item["id"], "price": stack.price_id(lookup_key), "quantity": seats}],
            "proration_behavior": "always_invoice",
        },
    )


async def assert_stack_converged(stack: Stack, accounts: Accounts, within: float = 60) -> None:
    """Entitlements equal Stripe, every email once, no event lost (see `checks`)."""
    await stack.deliveries_done()

    async def temporal_now() -> datetime:
        return await stack.env.get_current_time()

    await assert_converged(
        stack.sessions,
        stack.stripe,
        lambda: stack.smtp.messages,
        accounts,
        temporal_now,
        within=within,
    )
