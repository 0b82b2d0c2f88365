"""The e2e stack on a database of its own (the checks and the events reconciliation look at
every account in it), and the customer moves the fault tests make in Stripe."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from db.engine import make_engine, make_session_factory, migrate
from tests.e2e.stack import Stack, running_stack
from tests.faults.checks import Accounts, assert_converged
from tests.fixtures_db import fresh_database


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[tuple[str, sessionmaker[Session]]]:
    with fresh_database(tmp_path) as url:
        migrate(url)
        engine = make_engine(url)
        try:
            yield url, make_session_factory(engine)
        finally:
            engine.dispose()


@pytest.fixture
async def stack(
    workflow_env: WorkflowEnvironment, own_database: tuple[str, sessionmaker[Session]]
) -> AsyncIterator[Stack]:
    url, sessions = own_database
    async with running_stack(workflow_env, url, sessions) as running:
        yield running


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
