"""Which emails go out, when, under which once-only key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.catalog import DunningPolicy, default_catalog
from domain.lifecycle import BillingState, Lifecycle, Notice, SubscriptionSnapshot
from domain.notices import (
    due_ladder_steps,
    dunning_ladder,
    email_context,
    event_email,
    next_ladder_step_at,
    notice_email,
)

START = datetime(2026, 11, 24, 12, tzinfo=UTC)
SUB = SubscriptionSnapshot(
    "sub_1", "cus_1", "past_due", "pro", "month", current_period_end=START + timedelta(days=30)
)
UNPAID = Lifecycle(
    BillingState.PAST_DUE, SUB, grace_ends_at=START + timedelta(days=7), grace_started_at=START
)
MONTHLY = default_catalog().dunning_for("month")
ANNUAL = default_catalog().dunning_for("year")


def test_the_monthly_ladder_is_day_3_and_the_day_before_restriction() -> None:
    assert [(s.step, s.due_at - START) for s in dunning_ladder(UNPAID, MONTHLY)] == [
        ("payment_reminder_d3", timedelta(days=3)),
        ("final_reminder", timedelta(days=6)),
    ]


def test_the_annual_ladder_comes_from_the_catalog() -> None:
    annual = Lifecycle(
        BillingState.PAST_DUE, SUB, START + timedelta(days=14), grace_started_at=START
    )
    assert [s.step for s in dunning_ladder(annual, ANNUAL)] == [
        "payment_reminder_d3",
        "payment_reminder_d7",
        "final_reminder",
    ]


def test_reminders_that_would_come_after_the_final_one_are_dropped() -> None:
    short = Lifecycle(BillingState.PAST_DUE, SUB, START + timedelta(days=3), grace_started_at=START)
    assert [s.step for s in dunning_ladder(short, DunningPolicy((3, 5), 1))] == ["final_reminder"]


@pytest.mark.parametrize("state", [s for s in BillingState if s is not BillingState.PAST_DUE])
def test_no_ladder_outside_past_due(state: BillingState) -> None:
    lifecycle = Lifecycle(state, SUB, UNPAID.grace_ends_at, grace_started_at=START)
    assert dunning_ladder(lifecycle, MONTHLY) == []


def test_due_steps_are_those_reached_and_not_yet_sent() -> None:
    day4 = START + timedelta(days=4)
    assert [s.step for s in due_ladder_steps(UNPAID, MONTHLY, set(), day4)] == [
        "payment_reminder_d3"
    ]
    assert due_ladder_steps(UNPAID, MONTHLY, {"payment_reminder_d3"}, day4) == []
    assert next_ladder_step_at(UNPAID, MONTHLY, {"payment_reminder_d3"}) == START + timedelta(6)


def test_dunning_emails_of_one_unpaid_period_share_its_cycle_key() -> None:
    active = Lifecycle(BillingState.ACTIVE, SUB)
    failed = notice_email("acct_1", Notice.PAYMENT_FAILED, active, UNPAID, version=2)
    again = notice_email("acct_1", Notice.PAYMENT_FAILED, active, UNPAID, version=5)
    recovered = notice_email("acct_1", Notice.PAYMENT_RECOVERED, UNPAID, active, version=3)
    assert failed.key == again.key == "acct_1:payment_failed:20261124T120000"
    assert recovered.key == "acct_1:payment_recovered:20261124T120000"


def test_other_notices_are_keyed_by_the_entitlement_version() -> None:
    email = notice_email(
        "acct_1", Notice.PLAN_CHANGED, Lifecycle(), Lifecycle(BillingState.ACTIVE, SUB), 4
    )
    assert email.key == "acct_1:plan_changed:v4"


def test_context_is_strings_and_names_the_plan_the_email_is_about() -> None:
    context = email_context(UNPAID)
    assert context["plan"] == "pro"
    assert context["grace_ends_at"] == (START + timedelta(days=7)).isoformat()
    ended = email_context(Lifecycle(), previous=UNPAID)
    assert ended["plan"] == "pro"  # the subscription that ended


def test_trial_ending_email_once_per_trial_while_trialing() -> None:
    trial_end = START + timedelta(days=3)
    trialing = Lifecycle(
        BillingState.TRIALING,
        SubscriptionSnapshot("sub_1", "cus_1", "trialing", "pro", "month", trial_end=trial_end),
    )
    email = event_email("acct_1", "customer.subscription.trial_will_end", "evt_1", trialing)
    assert email is not None
    assert (email.kind, email.key) == ("trial_ending", "acct_1:trial_ending:20261127")
    active = Lifecycle(BillingState.ACTIVE, SUB)
    assert event_email("acct_1", "customer.subscription.trial_will_end", "evt_1", active) is None


def test_payment_action_required_only_while_an_invoice_is_open() -> None:
    open_sub = SubscriptionSnapshot(
        "sub_1", "cus_1", "incomplete", "pro", "month", open_invoice_url="https://pay/in_1"
    )
    waiting = Lifecycle(BillingState.INCOMPLETE, open_sub)
    email = event_email("acct_1", "invoice.payment_action_required", "evt_9", waiting)
    assert email is not None and email.context["open_invoice_url"] == "https://pay/in_1"
    paid = Lifecycle(BillingState.ACTIVE, SUB)
    assert event_email("acct_1", "invoice.payment_action_required", "evt_9", paid) is None
    assert event_email("acct_1", "invoice.paid", "evt_9", waiting) is None
