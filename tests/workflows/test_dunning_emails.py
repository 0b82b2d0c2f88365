"""The dunning conversation: each email at its time, exactly once, over a real SMTP server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from activities.notifications import SendEmailInput
from db import outbox
from domain.operator_actions import OperatorRequest
from tests.conftest import wait_for
from workflows.account import AccountState, UnsentEmail
from workflows.starter import run_operator_action

from .harness import Harness, subscription


async def failing_account(h: Harness) -> tuple[str, str]:
    """An active Pro account (monthly: 7 days of grace, reminders on day 3 and day 6) whose
    renewal just failed."""
    account, customer = h.new_account()
    h.stripe.subscriptions[customer] = subscription(customer, "active")
    await h.send(account, customer)
    await h.wait_for_entitlements(account, state="active")
    h.stripe.subscriptions[customer] = subscription(customer, "past_due")
    await h.send(account, customer, "invoice.payment_failed")
    await h.wait_for_entitlements(account, state="past_due")
    return account, customer


async def emails(h: Harness, account: str, expected: list[str]) -> list[str]:
    async def arrived() -> list[str] | None:
        kinds = h.email_kinds(account)
        return kinds if kinds == expected else None

    return await wait_for(arrived, what=f"emails {expected}")


async def test_the_ladder_runs_on_time_then_restriction_then_recovery(harness: Harness) -> None:
    account, customer = await failing_account(harness)
    started = ["subscription_started", "payment_failed"]
    await emails(harness, account, started)

    await harness.skip(timedelta(days=2, hours=23))
    marker = await harness.send(account, customer, "invoice.updated")
    await harness.wait_until_handled(account, marker)
    assert harness.email_kinds(account) == started  # day 3 not reached yet

    await harness.skip(timedelta(hours=2))
    await emails(harness, account, [*started, "payment_reminder"])
    await harness.skip(timedelta(days=3))
    await emails(harness, account, [*started, "payment_reminder", "final_reminder"])
    await harness.skip(timedelta(days=1))
    ladder = [*started, "payment_reminder", "final_reminder", "access_restricted"]
    await emails(harness, account, ladder)

    harness.stripe.subscriptions[customer] = subscription(customer, "active")
    await harness.send(account, customer, "invoice.paid")
    await emails(harness, account, [*ladder, "payment_recovered"])

    await harness.skip(timedelta(days=30))
    marker = await harness.send(account, customer, "invoice.updated")
    await harness.wait_until_handled(account, marker)
    assert harness.email_kinds(account) == [*ladder, "payment_recovered"]
    assert len(harness.emails_to(customer)) == len(ladder) + 1


async def test_recovery_stops_the_ladder(harness: Harness) -> None:
    account, customer = await failing_account(harness)
    await harness.skip(timedelta(days=4))
    sent = ["subscription_started", "payment_failed", "payment_reminder"]
    await emails(harness, account, sent)

    harness.stripe.subscriptions[customer] = subscription(customer, "active")
    await harness.send(account, customer, "invoice.paid")
    await emails(harness, account, [*sent, "payment_recovered"])

    await harness.skip(timedelta(days=10))
    marker = await harness.send(account, customer, "invoice.updated")
    await harness.wait_until_handled(account, marker)
    assert harness.email_kinds(account) == [*sent, "payment_recovered"]


async def test_a_duplicated_failure_event_sends_one_ladder(harness: Harness) -> None:
    account, customer = await failing_account(harness)
    for _ in range(2):
        await harness.send(account, customer, "invoice.payment_failed")
    await harness.skip(timedelta(days=4))
    await emails(harness, account, ["subscription_started", "payment_failed", "payment_reminder"])
    assert len(harness.emails_to(customer)) == 3


async def test_smtp_down_for_hours_then_up_sends_each_email_once(harness: Harness) -> None:
    account, customer = harness.new_account()
    harness.stripe.subscriptions[customer] = subscription(customer, "active")
    harness.smtp.stop()
    await harness.send(account, customer)
    await harness.wait_for_entitlements(account, state="active")

    await harness.skip(timedelta(hours=3))
    assert harness.emails_to(customer) == []
    harness.smtp.start()
    await harness.skip(timedelta(minutes=15))

    await emails(harness, account, ["subscription_started"])
    assert len(harness.emails_to(customer)) == 1


async def test_extending_grace_moves_the_final_reminder(harness: Harness) -> None:
    account, _ = await failing_account(harness)
    now = await harness.env.get_current_time()
    harness.accounts.add(account)
    await run_operator_action(
        harness.client,
        harness.task_queue,
        account,
        OperatorRequest("extend_grace", "ops", "customer asked", until=now + timedelta(days=14)),
    )
    await harness.skip(timedelta(days=7))
    # The final reminder belongs to the day before the new end, not the old one.
    await emails(harness, account, ["subscription_started", "payment_failed", "payment_reminder"])
    await harness.skip(timedelta(days=6, hours=1))
    await emails(
        harness,
        account,
        ["subscription_started", "payment_failed", "payment_reminder", "final_reminder"],
    )


async def test_a_dunning_email_held_up_by_smtp_is_dropped_once_the_customer_paid(
    harness: Harness,
) -> None:
    account, customer = harness.new_account()
    harness.stripe.subscriptions[customer] = subscription(customer, "active")
    await harness.send(account, customer)
    await emails(harness, account, ["subscription_started"])

    harness.smtp.stop()
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due")
    await harness.send(account, customer, "invoice.payment_failed")
    await harness.wait_for_entitlements(account, state="past_due")
    await harness.skip(timedelta(hours=1))
    harness.stripe.subscriptions[customer] = subscription(customer, "active")
    await harness.send(account, customer, "invoice.paid")
    await harness.wait_for_entitlements(account, state="active")
    harness.smtp.start()
    await harness.skip(timedelta(minutes=30))

    await emails(harness, account, ["subscription_started", "payment_recovered"])

    def payment_failed_status() -> str | None:
        # Its retry comes on the sender's own (real-time) backoff.
        with harness.sessions() as session:
            deliveries = outbox.deliveries_for_account(session, account)
        status = next(d.status for d in deliveries if d.kind == "payment_failed")
        return None if status == "pending" else status

    assert await wait_for(payment_failed_status, what="the held-up email's outcome") == "obsolete"
    assert harness.email_kinds(account) == ["subscription_started", "payment_recovered"]


async def test_trial_ending_is_emailed_once_per_trial(harness: Harness) -> None:
    account, customer = harness.new_account()
    harness.stripe.subscriptions[customer] = subscription(customer, "trialing")
    await harness.send(account, customer, "customer.subscription.created")
    await harness.wait_for_entitlements(account, state="trialing")

    # Stripe's event, and a second delivery of it under another id (as a replayed backfill
    # would produce): one email for the trial.
    await harness.send(account, customer, "customer.subscription.trial_will_end")
    await harness.send(account, customer, "customer.subscription.trial_will_end")

    await emails(harness, account, ["subscription_started", "trial_ending"])
    marker = await harness.send(account, customer, "invoice.updated")
    await harness.wait_until_handled(account, marker)
    assert len(harness.emails_to(customer)) == 2


async def test_payment_action_required_sends_the_invoice_link(harness: Harness) -> None:
    account, customer = harness.new_account()
    harness.stripe.subscriptions[customer] = replace(
        subscription(customer, "incomplete"), open_invoice_url="https://pay.example/in_42"
    )
    await harness.send(account, customer, "invoice.payment_action_required")

    # Both go out at once, in either order.
    await wait_for(
        lambda: (
            sorted(harness.email_kinds(account))
            == ["payment_action_required", "payment_incomplete"]
        ),
        what="the incomplete-payment emails",
    )
    assert all("https://pay.example/in_42" in m.text for m in harness.smtp.messages)


async def test_emails_an_earlier_run_was_retrying_are_handed_to_the_outbox(
    harness: Harness,
) -> None:
    """A run recorded before the outbox retried its failed emails itself, from its state;
    the run it continues as carries them, and hands them to the sender."""
    account, customer = harness.new_account()
    request = SendEmailInput(
        key=f"{account}:subscription_started:v1",
        account_id=account,
        customer_id=customer,
        kind="subscription_started",
        context={"plan": "pro", "interval": "month", "seats": "1"},
    )
    retrying = UnsentEmail(request, give_up_at=datetime.now(UTC) + timedelta(days=3), attempts=2)
    await harness.start(
        account, state=AccountState(customer_id=customer, emails_to_retry=[retrying])
    )

    await emails(harness, account, ["subscription_started"])
    state = await harness.state(account)
    assert (state.emails_to_retry, state.emails_to_queue) == ([], [])
    assert len(harness.emails_to(customer)) == 1
    assert "send_email" not in await harness.scheduled_activities(account)
