"""Accounts driven through their lifecycles in Stripe while the faults of issue 24 are
injected one after another; after each, the time until every check passes again.

Each fault injects, lets Stripe move accounts while it holds, waits for evidence that it
bit (a 503, a failed email attempt, an unreachable API...), and heals. Convergence is timed
from the heal: entitlements equal the simulator's truth, no event lost, every email once
(`tests.faults.checks`). The times are reported, never asserted: they depend on the machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import count

import httpx
import stripe
from sqlalchemy import select

from db.models import EmailDelivery
from db.outbox import DeliveryStatus
from tests.conftest import wait_for
from tests.production_shape.stack import ProductionStack

# Every third new account pays with a card whose charges fail: it starts `incomplete`.
FAILING_CARD_EVERY = 3
# Accounts that open during each fault (new customers: welcome emails, fresh workflows).
NEW_ACCOUNTS_PER_FAULT = 2


@dataclass
class Account:
    account_id: str
    customer_id: str
    subscription_id: str | None
    moves: int = 0


@dataclass
class Lifecycles:
    """The accounts and the next move of each: subscribe, change plan and seats, cancel at
    period end, resume, cancel now, subscribe again..."""

    stripe: stripe.StripeClient
    run_id: str
    accounts: list[Account] = field(default_factory=list)
    _numbers: count[int] = field(default_factory=count)
    _price_ids: dict[str, str] = field(default_factory=dict)

    def customers(self) -> dict[str, str]:
        """Each account's Stripe customer."""
        return {a.account_id: a.customer_id for a in self.accounts}

    def open_account(self) -> Account:
        number = next(self._numbers)
        account_id = f"acct_{self.run_id}_{number:04d}"
        customer = self.stripe.v1.customers.create(
            params={"email": f"{account_id}@example.com", "metadata": {"account_id": account_id}}
        )
        card = "pm_card_chargeCustomerFail" if number % FAILING_CARD_EVERY == 2 else "pm_card_visa"
        account = Account(account_id, str(customer.id), None)
        self._set_card(account, card)
        self._subscribe(account, "pro_monthly", 1)
        self.accounts.append(account)
        return account

    def move(self, account: Account) -> None:
        account.moves += 1
        if account.subscription_id is None:
            self._set_card(account, "pm_card_visa")
            self._subscribe(account, "team_monthly_per_seat", 2)
            return
        subscription = self.stripe.v1.subscriptions.retrieve(account.subscription_id)
        if subscription.status not in ("active", "trialing"):
            self._cancel_now(account)
            return
        step = account.moves % 4
        if step == 1:
            [item] = subscription["items"]["data"]
            lookup_key, seats = (
                ("team_monthly_per_seat", 3 + account.moves % 5)
                if item["price"]["lookup_key"] == "pro_monthly"
                else ("pro_monthly", 1)
            )
            self.stripe.v1.subscriptions.update(
                account.subscription_id,
                params={
                    "items": [
                        {
                            "id": item["id"],
                            "price": self._price_id(lookup_key),
                            "quantity": seats,
                        }
                    ],
                    "proration_behavior": "always_invoice",
                },
            )
        elif step == 2:
            self.stripe.v1.subscriptions.update(
                account.subscription_id, params={"cancel_at_period_end": True}
            )
        elif step == 3:
            self.stripe.v1.subscriptions.update(
                account.subscription_id, params={"cancel_at_period_end": False}
            )
        else:
            self._cancel_now(account)

    def _set_card(self, account: Account, card: str) -> None:
        method = self.stripe.v1.payment_methods.attach(
            card, params={"customer": account.customer_id}
        )
        self.stripe.v1.customers.update(
            account.customer_id,
            params={"invoice_settings": {"default_payment_method": method.id}},
        )

    def _subscribe(self, account: Account, lookup_key: str, seats: int) -> None:
        subscription = self.stripe.v1.subscriptions.create(
            params={
                "customer": account.customer_id,
                "items": [{"price": self._price_id(lookup_key), "quantity": seats}],
                # allow_incomplete (the default): a failing card leaves it incomplete.
                "metadata": {"account_id": account.account_id},
            }
        )
        account.subscription_id = str(subscription.id)

    def _price_id(self, lookup_key: str) -> str:
        if not self._price_ids:
            listing = self.stripe.v1.prices.list(params={"limit": 100})
            self._price_ids = {
                str(p.lookup_key): str(p.id) for p in listing.auto_paging_iter() if p.lookup_key
            }
        return self._price_ids[lookup_key]

    def _cancel_now(self, account: Account) -> None:
        assert account.subscription_id is not None
        self.stripe.v1.subscriptions.cancel(account.subscription_id)
        account.subscription_id = None


@dataclass(frozen=True)
class FaultOutcome:
    fault: str
    # Until every event is taken in and every entitlement equals Stripe's truth.
    seconds_to_match_stripe: float
    # Until, besides, every email is settled (sent once, none pending).
    seconds_to_converge: float


@dataclass(frozen=True)
class Turn:
    """What a fault works with: the stack, the accounts' moves to make while it holds, and
    a few accounts whose entitlements are read from every API meanwhile."""

    stack: ProductionStack
    moves: Callable[[], Awaitable[None]]
    read_while_down: list[str]


async def worker_killed(turn: Turn) -> None:
    """kill -9 of a worker while the moves' events are being worked on; then restarted."""
    stack = turn.stack
    await turn.moves()
    stack.workers[0].kill()
    await asyncio.to_thread(stack.note_emails_cut_short)
    await stack.workers[0].start()


async def temporal_killed(turn: Turn) -> None:
    """kill -9 of the Temporal server while Stripe delivers; restarted on its database file.
    Meanwhile the gateway answers 503 and Stripe retries."""
    stack = turn.stack
    stack.temporal.kill()
    seen = len(stack.answers)
    await turn.moves()
    # Down until Stripe has been refused more than once: the gateway holds each delivery up
    # to its signal timeout (10 s) before answering 503.
    await wait_for(
        lambda: sum(a.status == 503 for a in stack.answers.since(seen)) >= 2,
        within=90,
        what="webhooks answered 503 while Temporal is down",
    )
    await stack.read_entitlements(turn.read_while_down)
    await stack.temporal.start()


async def smtp_down(turn: Turn) -> None:
    """The mail server gone until an email delivery has failed; then back on its port."""
    stack = turn.stack
    stack.smtp.stop()
    await turn.moves()

    def email_failed() -> bool:
        with stack.sessions() as session:
            return (
                session.scalar(
                    select(EmailDelivery.key).where(
                        EmailDelivery.status == DeliveryStatus.PENDING.value,
                        EmailDelivery.last_error.is_not(None),
                    )
                )
                is not None
            )

    await wait_for(lambda: asyncio.to_thread(email_failed), within=60, what="an email to fail")
    stack.smtp.start()


async def database_refusing(turn: Turn) -> None:
    """The billing database refuses connections (Temporal's database keeps working) until
    every API says it is not ready and Stripe has delivered everything; then back."""
    stack = turn.stack
    stack.database.cut()
    await turn.moves()

    async def apis_not_ready() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            statuses = [(await client.get(f"{api.url}/readyz")).status_code for api in stack.apis]
        return all(status == 503 for status in statuses)

    await wait_for(apis_not_ready, within=30, what="every API to see the database gone")
    await stack.deliveries_done()
    await stack.read_entitlements(turn.read_while_down)
    await asyncio.to_thread(stack.note_emails_cut_short)
    stack.database.restore()


async def deliveries_duplicated_and_shuffled(turn: Turn) -> None:
    """Stripe duplicates half its deliveries and shuffles them in windows; the balancer sends
    each one to both APIs in random order."""
    stack = turn.stack
    faults = stack.sim.settings.faults
    faults.duplicate_rate, faults.reorder_window = 0.5, 6
    stack.balancer.fan_out = True
    try:
        await turn.moves()
        await stack.deliveries_done()
    finally:
        faults.duplicate_rate, faults.reorder_window = 0.0, 0
        stack.balancer.fan_out = False


async def api_down(turn: Turn) -> None:
    """kill -9 of one API while Stripe delivers: the deliveries that reach it fail and Stripe
    retries them; then it is started again."""
    stack = turn.stack
    down = stack.apis[1]
    down.kill()
    seen = len(stack.answers)
    await turn.moves()
    await wait_for(
        lambda: any(a.api == 1 and a.failure == "ConnectError" for a in stack.answers.since(seen)),
        within=30,
        what="a delivery to find the API down",
    )
    await stack.read_entitlements(turn.read_while_down)
    await down.start()


FAULTS: tuple[Callable[[Turn], Awaitable[None]], ...] = (
    worker_killed,
    temporal_killed,
    smtp_down,
    database_refusing,
    deliveries_duplicated_and_shuffled,
    api_down,
)

# Accounts read from every API while a fault holds.
READ_WHILE_DOWN = 4


async def run_scenario(
    stack: ProductionStack,
    accounts: int,
    run_id: str,
    report: Callable[[FaultOutcome], None] = lambda outcome: None,
    within: float = 180,
) -> list[FaultOutcome]:
    """Open `accounts` accounts, then inject every fault in turn; after each, wait until the
    stack has converged and report how long that took."""
    lifecycles = Lifecycles(stack.stripe, run_id)
    outcomes = []

    async def converge(fault: str, since: float) -> None:
        await stack.accounts_match_stripe(lifecycles.customers(), within=within)
        matched = time.monotonic() - since
        await stack.assert_converged(lifecycles.customers(), within=within)
        outcome = FaultOutcome(fault, matched, time.monotonic() - since)
        outcomes.append(outcome)
        report(outcome)

    started = time.monotonic()
    stack.answers.phase = "accounts opening"
    for _ in range(accounts):
        await asyncio.to_thread(lifecycles.open_account)
    await converge("accounts opening", started)

    for round_number, fault in enumerate(FAULTS):
        # Half of the accounts move during each fault, the other half during the next.
        moving = lifecycles.accounts[round_number % 2 :: 2]

        async def moves(moving: list[Account] = moving) -> None:
            def move_all() -> None:
                for account in moving:
                    lifecycles.move(account)
                for _ in range(NEW_ACCOUNTS_PER_FAULT):
                    lifecycles.open_account()

            await asyncio.to_thread(move_all)

        sample = [a.account_id for a in lifecycles.accounts[:READ_WHILE_DOWN]]
        name = fault.__name__.replace("_", " ")
        stack.answers.phase = name
        await fault(Turn(stack, moves, sample))
        stack.answers.phase = f"converging after {name}"
        await converge(name, time.monotonic())
    return outcomes
