"""The e2e stack on a database of its own: reconciliation, sweep and backfill look at every
account and cursor in the database, so a shared one would mix in other tests' accounts."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from tests.e2e.stack import Stack


@pytest.fixture
def stack(isolated_stack: Stack) -> Stack:
    return isolated_stack


def new_account() -> str:
    return f"acct_{uuid4().hex[:10]}"


def subscribe(stack: Stack, account_id: str, lookup_key: str, seats: int = 1) -> dict[str, Any]:
    """A paying customer of `account_id` (named in both metadata, as our checkout does)."""
    customer = stack.new_customer(account_id)
    stack.attach_card(customer)
    subscription = stack.stripe.v1.subscriptions.create(
        params={
            "customer": customer,
            "items": [{"price": stack.price_id(lookup_key), "quantity": seats}],
            "metadata": {"account_id": account_id},
        }
    )
    return subscription.to_dict()


def set_dropping(stack: Stack, rate: float) -> None:
    """Webhook deliveries the simulator drops from now on (they stay listed in /v1/events)."""
    stack.sim.settings.faults.drop_rate = rate
