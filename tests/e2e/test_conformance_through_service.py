"""The simulator's conformance scenarios, run through the whole service.

Each scenario drives Stripe (the simulator) the way test-mode code does — a test clock per
scenario, subscriptions created and changed with stripe-python — and checks what the Dataface
app would see: the entitlement API, after every step.

Two clocks run side by side. Stripe's time is the scenario's test clock (`advance_clock`); the
workflow's time is Temporal's (`skip`), which only moves when a scenario skips it. Where both
matter (grace vs. Stripe's retries) the scenario moves them in the order the real world does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
import stripe

from domain.catalog import default_catalog
from domain.stripe_events import is_handled
from tests.conftest import wait_for
from tests.e2e.stack import Stack
from workflows.account import AccountBillingWorkflow, workflow_id_for

JAN_1_2027 = 1_798_761_600
HOUR = 3_600
DAY = 86_400
FEB_1_2027 = JAN_1_2027 + 31 * DAY
MAR_1_2027 = FEB_1_2027 + 28 * DAY

CATALOG = default_catalog()


def account() -> str:
    return f"acct_{uuid4().hex[:10]}"


def at(timestamp: int) -> str:
    """A Stripe timestamp as the entitlement API writes datetimes (ISO 8601, UTC)."""
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat().replace("+00:00", "Z")


def when(answer: dict[str, Any], key: str) -> int | None:
    value = answer[key]
    return None if value is None else int(datetime.fromisoformat(value).timestamp())


def subscribe(stack: Stack, acct: str, customer: str, lookup_key: str, **extra: Any) -> Any:
    """A subscription as test-mode code creates one, routed to the account by metadata."""
    params: dict[str, Any] = {
        "customer": customer,
        "items": [{"price": stack.price_id(lookup_key)}],
        "metadata": {"account_id": acct},
        **extra,
    }
    return stack.stripe.v1.subscriptions.create(params=params)  # type: ignore[arg-type]


def invoices_of(stack: Stack, subscription_id: str) -> list[Any]:
    """The subscription's invoices, oldest first."""
    page = stack.stripe.v1.invoices.list(params={"subscription": subscription_id, "limit": 100})
    return sorted(page.data, key=lambda inv: (inv.created, inv.number or ""))


def plan_limits(plan: str, seats: int | None = None) -> dict[str, int]:
    spec = CATALOG.plan(plan)
    limits = dict(spec.limits)
    if spec.seat_limit is not None and seats is not None:
        limits[spec.seat_limit] = seats
    return limits


async def signed_up(
    stack: Stack, lookup_key: str = "pro_monthly", **extra: Any
) -> tuple[str, str, str, Any]:
    """account, clock, customer and subscription of an account that just paid for a plan."""
    acct = account()
    clock = stack.new_clock(JAN_1_2027)
    customer = stack.new_customer(acct, clock=clock)
    stack.attach_card(customer)
    sub = subscribe(stack, acct, customer, lookup_key, **extra)
    await stack.deliveries_done()
    return acct, clock, customer, sub


def about(event: Any, customer: str) -> bool:
    """Whether a Stripe event is about the customer (or is the customer)."""
    obj = event.data.object.to_dict()
    return customer in (obj.get("customer"), obj.get("id"))


async def settled(stack: Stack, acct: str, customer: str) -> dict[str, Any]:
    """The entitlements once the account's workflow has applied every event Stripe sent about
    the customer so far — so "nothing changed" is checked after the change had its chance."""
    await stack.deliveries_done()
    sent = {
        event.id
        for event in stack.stripe.v1.events.list(params={"limit": 100}).auto_paging_iter()
        if is_handled(event.type) and about(event, customer)
    }
    handle = stack.env.client.get_workflow_handle(workflow_id_for(acct))

    async def applied() -> bool:
        state = await handle.query(AccountBillingWorkflow.state)
        return sent <= set(state.seen_event_ids)

    # (tests.conftest.wait_for's `Awaitable[T] | T` makes mypy infer Never for an async probe.)
    await wait_for(applied, within=20, what=f"{acct} applied {len(sent)} events")  # type: ignore[arg-type]
    return await stack.entitlements(acct)


# --- subscribe and renew ------------------------------------------------------------------


async def test_subscribe_then_renewal_paid_moves_the_period(stack: Stack) -> None:
    acct, clock, _, sub = await signed_up(stack)
    assert sub.status == "active"
    active = await stack.wait_for_entitlements(acct, billing_state="active", plan="pro")
    assert (active["access"], active["message"], active["interval"]) == ("full", None, "month")
    assert active["limits"] == plan_limits("pro")
    assert when(active, "period_ends_at") == FEB_1_2027

    # The renewal is drafted at the boundary and charged an hour later.
    await stack.advance_clock(clock, FEB_1_2027 + 2 * HOUR)
    renewed = await stack.wait_for_entitlements(acct, period_ends_at=at(MAR_1_2027))
    assert (renewed["billing_state"], renewed["plan"], renewed["access"]) == (
        "active",
        "pro",
        "full",
    )
    assert renewed["version"] > active["version"]
    first, renewal = invoices_of(stack, sub.id)
    assert (first.billing_reason, first.status) == ("subscription_create", "paid")
    assert (renewal.billing_reason, renewal.status) == ("subscription_cycle", "paid")
    assert renewal.amount_paid == CATALOG.price_by_lookup_key("pro_monthly").unit_amount  # type: ignore[union-attr]


# --- failed renewal, grace, Stripe's retries ------------------------------------------------


async def test_failed_renewal_grace_then_retries_exhausted_cancel_to_free(stack: Stack) -> None:
    """Real-world order: grace (7 days, the workflow's timer) runs out before Stripe's Smart
    Retries (8 tries in 2 weeks) give up, so the account is restricted first and free last."""
    acct, clock, customer, sub = await signed_up(stack)
    await stack.wait_for_entitlements(acct, billing_state="active")

    stack.attach_card(customer, "pm_card_chargeCustomerFail")
    await stack.advance_clock(clock, FEB_1_2027 + 2 * HOUR)
    past_due = await stack.wait_for_entitlements(acct, billing_state="past_due")
    assert (past_due["access"], past_due["plan"], past_due["message"]) == (
        "full",
        "pro",
        "payment_failed",
    )
    assert past_due["grace_ends_at"] is not None
    renewal = invoices_of(stack, sub.id)[-1]
    assert (renewal.billing_reason, renewal.status) == ("subscription_cycle", "open")
    assert past_due["open_invoice_url"] == renewal.hosted_invoice_url
    assert stack.stripe.v1.subscriptions.retrieve(sub.id).status == "past_due"

    # Stripe retries on day 1, 3 and 5 — still unpaid, grace keeps running from day 0.
    await stack.advance_clock(clock, FEB_1_2027 + 6 * DAY)
    still = await settled(stack, acct, customer)
    assert (still["billing_state"], still["grace_ends_at"]) == (
        "past_due",
        past_due["grace_ends_at"],
    )

    # The grace period (the workflow's durable timer) ends on day 7.
    await stack.skip(timedelta(days=7, minutes=1))
    restricted = await stack.wait_for_entitlements(acct, billing_state="restricted")
    assert (restricted["access"], restricted["message"], restricted["plan"]) == (
        "read_only",
        "restricted",
        "pro",
    )

    # Retries on day 7, 9, 11 fail: still restricted, not back to a fresh grace.
    await stack.advance_clock(clock, FEB_1_2027 + 12 * DAY)
    assert (await settled(stack, acct, customer))["billing_state"] == "restricted"

    # The last retry (day 14) fails: Stripe cancels the subscription → the account is free.
    await stack.advance_clock(clock, FEB_1_2027 + 15 * DAY)
    canceled = stack.stripe.v1.subscriptions.retrieve(sub.id)
    assert canceled.status == "canceled"
    assert canceled.cancellation_details.reason == "payment_failed"  # type: ignore[union-attr]
    free = await stack.wait_for_entitlements(acct, billing_state="free")
    assert (free["plan"], free["access"], free["message"]) == ("free", "full", "upgrade_prompt")
    assert (free["grace_ends_at"], free["period_ends_at"], free["open_invoice_url"]) == (
        None,
        None,
        None,
    )
    assert free["limits"] == plan_limits("free")


# --- plan changes -----------------------------------------------------------------------------


async def test_upgrade_pro_to_team_always_invoice_is_immediate(stack: Stack) -> None:
    acct, clock, customer, sub = await signed_up(stack)
    await stack.wait_for_entitlements(acct, billing_state="active", plan="pro")
    await stack.advance_clock(clock, JAN_1_2027 + 15 * DAY)

    item = sub["items"].data[0]
    stack.stripe.v1.subscriptions.update(
        sub.id,
        params={
            "items": [
                {"id": item.id, "price": stack.price_id("team_monthly_per_seat"), "quantity": 3}
            ],
            "proration_behavior": "always_invoice",
        },
    )
    await stack.deliveries_done()
    team = await stack.wait_for_entitlements(acct, plan="team", seats=3)
    assert (team["billing_state"], team["access"], team["interval"]) == ("active", "full", "month")
    assert team["limits"] == plan_limits("team", seats=3)
    assert team["features"] == dict(CATALOG.plan("team").features)
    # The period does not move on an upgrade within the same interval.
    assert when(team, "period_ends_at") == FEB_1_2027

    # The proration invoice was issued and paid at once: 16 of 31 days at 3 × $15 minus the
    # unused 16 days of Pro.
    proration = invoices_of(stack, sub.id)[-1]
    assert (proration.billing_reason, proration.status) == ("subscription_update", "paid")
    fraction = 16 / 31
    assert proration.amount_paid == round(3 * 1500 * fraction) - round(2900 * fraction)
    assert stack.stripe.v1.customers.retrieve(customer).balance == 0


async def test_downgrade_team_to_pro_always_invoice_credits_the_customer(stack: Stack) -> None:
    acct, clock, customer, sub = await _team_signup(stack)
    await stack.wait_for_entitlements(acct, billing_state="active", plan="team", seats=3)
    await stack.advance_clock(clock, JAN_1_2027 + 15 * DAY)

    item = sub["items"].data[0]
    stack.stripe.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "price": stack.price_id("pro_monthly"), "quantity": 1}],
            "proration_behavior": "always_invoice",
        },
    )
    await stack.deliveries_done()
    pro = await stack.wait_for_entitlements(acct, plan="pro")
    assert (pro["billing_state"], pro["access"], pro["seats"]) == ("active", "full", 1)
    assert pro["limits"] == plan_limits("pro")
    assert pro["features"]["sso"] is False

    # A negative proration invoice: nothing to pay, the unused Team time becomes credit.
    fraction = 16 / 31
    expected = round(2900 * fraction) - round(3 * 1500 * fraction)
    proration = invoices_of(stack, sub.id)[-1]
    assert (proration.billing_reason, proration.status) == ("subscription_update", "paid")
    assert (proration.total, proration.amount_paid) == (expected, 0)
    assert stack.stripe.v1.customers.retrieve(customer).balance == expected < 0

    # The credit pays (part of) the next renewal.
    await stack.advance_clock(clock, FEB_1_2027 + 2 * HOUR)
    renewal = invoices_of(stack, sub.id)[-1]
    assert renewal.billing_reason == "subscription_cycle"
    assert renewal.amount_paid == 2900 + expected
    await stack.wait_for_entitlements(acct, billing_state="active", period_ends_at=at(MAR_1_2027))


async def _team_signup(stack: Stack) -> tuple[str, str, str, Any]:
    acct = account()
    clock = stack.new_clock(JAN_1_2027)
    customer = stack.new_customer(acct, clock=clock)
    stack.attach_card(customer)
    sub = stack.stripe.v1.subscriptions.create(
        params={
            "customer": customer,
            "items": [{"price": stack.price_id("team_monthly_per_seat"), "quantity": 3}],
            "metadata": {"account_id": acct},
        }
    )
    await stack.deliveries_done()
    return acct, clock, customer, sub


# --- cancellation -----------------------------------------------------------------------------


async def test_cancel_at_period_end_is_canceling_then_free(stack: Stack) -> None:
    acct, clock, customer, sub = await signed_up(stack)
    await stack.wait_for_entitlements(acct, billing_state="active")

    stack.stripe.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    await stack.deliveries_done()
    canceling = await stack.wait_for_entitlements(acct, billing_state="canceling")
    assert (canceling["plan"], canceling["access"], canceling["message"]) == (
        "pro",
        "full",
        "ends_on",
    )
    assert when(canceling, "cancel_at") == FEB_1_2027

    # Just before the boundary nothing has changed.
    await stack.advance_clock(clock, FEB_1_2027 - HOUR)
    assert (await settled(stack, acct, customer))["billing_state"] == "canceling"

    await stack.advance_clock(clock, FEB_1_2027 + HOUR)
    assert stack.stripe.v1.subscriptions.retrieve(sub.id).status == "canceled"
    free = await stack.wait_for_entitlements(acct, billing_state="free")
    assert (free["plan"], free["message"], free["cancel_at"]) == ("free", "upgrade_prompt", None)
    # No renewal was invoiced.
    assert [inv.billing_reason for inv in invoices_of(stack, sub.id)] == ["subscription_create"]


# --- first payment not done ---------------------------------------------------------------------


@pytest.mark.parametrize("payment_behavior", ["default_incomplete", "allow_incomplete"])
async def test_authentication_required_at_signup_is_incomplete_then_expires(
    stack: Stack, payment_behavior: str
) -> None:
    """default_incomplete: Stripe does not try the card; allow_incomplete: it tries off-session
    and the 3DS card ends in requires_action. Either way the subscription is incomplete."""
    acct = account()
    clock = stack.new_clock(JAN_1_2027)
    customer = stack.new_customer(acct, clock=clock)
    stack.attach_card(customer, "pm_card_authenticationRequired")
    sub = subscribe(stack, acct, customer, "pro_monthly", payment_behavior=payment_behavior)
    assert sub.status == "incomplete"
    await stack.deliveries_done()

    incomplete = await stack.wait_for_entitlements(acct, billing_state="incomplete")
    assert (incomplete["plan"], incomplete["access"], incomplete["message"]) == (
        "free",
        "full",
        "finish_payment",
    )
    assert incomplete["limits"] == plan_limits("free")
    first = invoices_of(stack, sub.id)[0]
    assert first.status == "open"
    assert incomplete["open_invoice_url"] == first.hosted_invoice_url

    # Stripe gives the first payment 23 hours.
    await stack.advance_clock(clock, JAN_1_2027 + 22 * HOUR)
    assert (await settled(stack, acct, customer))["billing_state"] == "incomplete"
    await stack.advance_clock(clock, JAN_1_2027 + 24 * HOUR)
    assert stack.stripe.v1.subscriptions.retrieve(sub.id).status == "incomplete_expired"
    assert stack.stripe.v1.invoices.retrieve(first.id).status == "void"
    free = await stack.wait_for_entitlements(acct, billing_state="free")
    assert (free["plan"], free["message"], free["open_invoice_url"]) == (
        "free",
        "upgrade_prompt",
        None,
    )


async def test_declined_card_is_refused_at_attach_and_nothing_changes(stack: Stack) -> None:
    acct = account()
    clock = stack.new_clock(JAN_1_2027)
    customer = stack.new_customer(acct, clock=clock)
    before = await stack.entitlements(acct)

    with pytest.raises(stripe.CardError) as refused:
        stack.attach_card(customer, "pm_card_chargeDeclined")
    assert refused.value.code == "card_declined"
    # Without a card there is nothing to subscribe with.
    with pytest.raises(stripe.InvalidRequestError):
        subscribe(stack, acct, customer, "pro_monthly")
    await stack.deliveries_done()

    assert stack.stripe.v1.payment_methods.list(params={"customer": customer}).data == []
    subscriptions = stack.stripe.v1.subscriptions.list(
        params={"customer": customer, "status": "all"}
    )
    assert subscriptions.data == []
    # Stripe told the service nothing it acts on, and the account is as it was.
    sent = [
        event.type
        for event in stack.stripe.v1.events.list(params={"limit": 100}).auto_paging_iter()
        if about(event, customer)
    ]
    assert sent and not any(is_handled(t) for t in sent)
    after = await stack.entitlements(acct)
    assert after == before
    assert (after["billing_state"], after["plan"], after["version"]) == ("free", "free", 0)


# --- trials --------------------------------------------------------------------------------------


async def test_trial_with_card_is_trialing_then_active_at_trial_end(stack: Stack) -> None:
    acct, clock, customer, sub = await signed_up(stack, trial_period_days=14)
    trial_end = JAN_1_2027 + 14 * DAY
    assert sub.status == "trialing"
    trialing = await stack.wait_for_entitlements(acct, billing_state="trialing")
    assert (trialing["plan"], trialing["access"], trialing["message"]) == (
        "pro",
        "full",
        "trial_ends",
    )
    assert when(trialing, "trial_ends_at") == trial_end

    # trial_will_end (3 days before) changes nothing; the trial end bills the card.
    await stack.advance_clock(clock, trial_end - 2 * DAY)
    assert (await settled(stack, acct, customer))["billing_state"] == "trialing"
    await stack.advance_clock(clock, trial_end + 2 * HOUR)
    active = await stack.wait_for_entitlements(acct, billing_state="active")
    assert (active["plan"], active["message"], active["trial_ends_at"]) == ("pro", None, None)
    assert when(active, "period_ends_at") == trial_end + 31 * DAY  # Jan 15 → Feb 15
    assert invoices_of(stack, sub.id)[-1].status == "paid"


async def test_trial_without_payment_method_pauses_read_only(stack: Stack) -> None:
    acct = account()
    clock = stack.new_clock(JAN_1_2027)
    customer = stack.new_customer(acct, clock=clock)
    sub = subscribe(
        stack,
        acct,
        customer,
        "pro_monthly",
        trial_period_days=14,
        trial_settings={"end_behavior": {"missing_payment_method": "pause"}},
    )
    await stack.deliveries_done()
    await stack.wait_for_entitlements(acct, billing_state="trialing", plan="pro")

    await stack.advance_clock(clock, JAN_1_2027 + 14 * DAY + HOUR)
    assert stack.stripe.v1.subscriptions.retrieve(sub.id).status == "paused"
    paused = await stack.wait_for_entitlements(acct, billing_state="paused")
    assert (paused["access"], paused["message"], paused["plan"]) == (
        "read_only",
        "add_payment_method",
        "pro",
    )
