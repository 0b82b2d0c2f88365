"""A seeded random run: many accounts through random lifecycles on Stripe test clocks, with
every delivery fault the simulator has, then one events reconciliation for what was dropped.

Each round, every account takes a random customer action in Stripe (subscribe with a good or a
failing card, break or fix the card, change plan or seats, cancel at period end, resume,
cancel now) and then the clocks move (across a renewal, or a few days of Stripe's retries).
Deliveries are duplicated, shuffled in bursts and dropped meanwhile. At the end every account
must equal Stripe, every email must have gone out once and every event must be taken in.

`FAULTS_RANDOM_ACCOUNTS` (default 80) and `FAULTS_RANDOM_SEED` change the run; a failure
names the seed, so it can be replayed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import stripe

from domain.stripe_events import HANDLED_EVENT_TYPES
from tests.conftest import wait_for
from tests.e2e.stack import Stack
from tests.faults.conftest import assert_stack_converged, change_price, new_account
from workflows.reconciliation import (
    EventsReconciliationInput,
    EventsReconciliationResult,
    EventsReconciliationWorkflow,
)

logger = logging.getLogger(__name__)

# The simulator delivers webhooks one at a time (about 20 a second through the whole stack):
# 80 accounts keep this run near a minute; a larger count takes proportionally longer.
ACCOUNTS = int(os.environ.get("FAULTS_RANDOM_ACCOUNTS", "80"))
SEED = int(os.environ.get("FAULTS_RANDOM_SEED", "20261124"))
ACCOUNTS_PER_CLOCK = 20
DAY = 86_400
HOUR = 3_600
# Across a renewal (Stripe drafts it at the period end and charges an hour later), then a few
# days into Stripe's retries, then across the next renewal, then into its retries again.
CLOCK_STEPS = (31 * DAY + 2 * HOUR, 3 * DAY, 31 * DAY + 2 * HOUR, 2 * DAY)
PRICES = ("pro_monthly", "team_monthly_per_seat")
GOOD_CARD, FAILING_CARD = "pm_card_visa", "pm_card_chargeCustomerFail"


@dataclass
class Customer:
    account_id: str
    customer_id: str
    clock: str
    subscription: dict[str, Any] | None = None
    actions: list[str] = field(default_factory=list)


class RandomCustomers:
    def __init__(self, stack: Stack, rng: random.Random) -> None:
        self._stack = stack
        self._rng = rng
        self._prices = {key: stack.price_id(key) for key in PRICES}

    def create(self, clock: str) -> Customer:
        account_id = new_account()
        customer_id = self._stack.new_customer(account_id, clock=clock)
        return Customer(account_id, customer_id, clock)

    def act(self, customer: Customer) -> None:
        """One random move the customer could make in the portal; Stripe refusing it (a
        change to an incomplete subscription, say) is part of the game."""
        live = self._live_subscription(customer)
        if live is None:
            choices = ["subscribe", "subscribe", "subscribe_failing", "wait"]
        else:
            choices = ["wait", "break_card", "fix_card", "change_plan", "cancel_at_period_end"]
            choices += ["resume", "cancel_now"]
        action = self._rng.choice(choices)
        customer.actions.append(action)
        try:
            self._perform(customer, action, live)
        except stripe.InvalidRequestError as refused:
            customer.actions.append(f"refused: {refused.user_message}")

    def _perform(self, customer: Customer, action: str, live: dict[str, Any] | None) -> None:
        stripe_client = self._stack.stripe
        if action in ("subscribe", "subscribe_failing"):
            self._stack.attach_card(
                customer.customer_id, GOOD_CARD if action == "subscribe" else FAILING_CARD
            )
            lookup_key = self._rng.choice(PRICES)
            subscription = stripe_client.v1.subscriptions.create(
                params={
                    "customer": customer.customer_id,
                    "items": [{"price": self._prices[lookup_key], "quantity": self._seats()}],
                    "metadata": {"account_id": customer.account_id},
                    "payment_behavior": "allow_incomplete",
                }
            )
            customer.subscription = subscription.to_dict()
        elif action == "break_card":
            self._stack.attach_card(customer.customer_id, FAILING_CARD)
        elif action == "fix_card":
            self._stack.attach_card(customer.customer_id, GOOD_CARD)
        elif live is None or action == "wait":
            return
        elif action == "change_plan":
            change_price(self._stack, live, self._rng.choice(PRICES), self._seats())
        elif action in ("cancel_at_period_end", "resume"):
            stripe_client.v1.subscriptions.update(
                live["id"], params={"cancel_at_period_end": action == "cancel_at_period_end"}
            )
        elif action == "cancel_now":
            stripe_client.v1.subscriptions.cancel(live["id"])

    def _seats(self) -> int:
        return self._rng.randint(1, 5)

    def _live_subscription(self, customer: Customer) -> dict[str, Any] | None:
        if customer.subscription is None:
            return None
        current = self._stack.stripe.v1.subscriptions.retrieve(customer.subscription["id"])
        customer.subscription = current.to_dict()
        live = current.status not in ("canceled", "incomplete_expired")
        return customer.subscription if live else None


async def advance(stack: Stack, clock: str, frozen_time: int) -> None:
    """Move a test clock without waiting for its webhooks: they pile up with everyone's."""
    clocks = stack.stripe.v1.test_helpers.test_clocks
    await asyncio.to_thread(clocks.advance, clock, {"frozen_time": frozen_time})

    async def ready() -> bool:
        return (await asyncio.to_thread(clocks.retrieve, clock)).status == "ready"

    await wait_for(ready, within=60, what=f"test clock {clock} ready")


def only_handled_events(stack: Stack) -> None:
    """The endpoint subscribes to the events the service handles, as a production one does."""
    [endpoint] = stack.stripe.v1.webhook_endpoints.list().data
    stack.stripe.v1.webhook_endpoints.update(
        endpoint.id, params={"enabled_events": sorted(HANDLED_EVENT_TYPES)}
    )


async def reconcile_until_caught_up(stack: Stack) -> list[EventsReconciliationResult]:
    results: list[EventsReconciliationResult] = []
    while not results or not results[-1].caught_up:
        result: EventsReconciliationResult = await stack.env.client.execute_workflow(
            EventsReconciliationWorkflow.run,
            EventsReconciliationInput(),
            id=f"reconcile-{uuid4()}",
            task_queue=stack.settings.task_queue,
        )
        results.append(result)
    return results


async def test_random_lifecycles_under_random_delivery_faults(stack: Stack) -> None:
    rng = random.Random(SEED)
    faults = stack.sim.settings.faults
    faults.seed = SEED
    faults.duplicate_rate, faults.drop_rate = 0.2, 0.05
    faults.reorder_window, faults.reorder_hold_seconds = 6, 0.05
    stack.sim.reseed_faults()
    only_handled_events(stack)
    started = time.monotonic()

    now = int(time.time())
    clocks = [stack.new_clock(now) for _ in range(-(-ACCOUNTS // ACCOUNTS_PER_CLOCK))]
    customers_made = RandomCustomers(stack, rng)
    customers = [customers_made.create(clocks[i % len(clocks)]) for i in range(ACCOUNTS)]
    for step in CLOCK_STEPS:
        for customer in customers:
            await asyncio.to_thread(customers_made.act, customer)
        now += step
        await asyncio.gather(*(advance(stack, clock, now) for clock in clocks))
    await asyncio.to_thread(stack.sim.wait_idle, 60 + 2 * ACCOUNTS)
    driven = time.monotonic()

    faults.duplicate_rate = faults.drop_rate = 0.0
    faults.reorder_window = 0
    reconciliations = await reconcile_until_caught_up(stack)
    accounts = {c.account_id: c.customer_id for c in customers}
    try:
        await assert_stack_converged(stack, accounts, within=60 + ACCOUNTS)
    except AssertionError as err:
        raise AssertionError(f"seed {SEED}, {ACCOUNTS} accounts: {err}") from None

    deliveries = stack.sim.deliveries
    copies = Counter(r.event_id for r in deliveries if r.status == 200)
    logger.info(
        "random run, seed %d: %d accounts, %d actions %s; %d deliveries of %d events "
        "(%d duplicated); %d dropped events redelivered by %d reconciliation runs; %d emails; "
        "drove Stripe for %.1f s, all equal to Stripe %.1f s after the last delivery",
        SEED,
        ACCOUNTS,
        sum(len(c.actions) for c in customers),
        dict(Counter(a for c in customers for a in c.actions if not a.startswith("refused"))),
        len(deliveries),
        len(copies),
        sum(1 for n in copies.values() if n > 1),
        sum(r.events_redelivered for r in reconciliations),
        len(reconciliations),
        len(stack.smtp.messages),
        driven - started,
        time.monotonic() - driven,
    )
