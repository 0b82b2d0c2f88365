"""Payloads through pydantic: the same JSON the SDK's default converter reads and writes, so
histories recorded before (and any client still on the default) keep working."""

from __future__ import annotations

from datetime import UTC, datetime

import temporalio.converter

from core.payloads import DATA_CONVERTER, PayloadConverter
from domain.catalog import DunningPolicy
from domain.lifecycle import (
    BillingState,
    Comp,
    Lifecycle,
    Lock,
    PendingChange,
    Purchase,
    SubscriptionSnapshot,
)
from workflows.account import AccountState, AccountWorkflowInput, StripeEventSignal

AT = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)
EVERY_FIELD_SET = AccountWorkflowInput(
    account_id="acct_1",
    state=AccountState(
        customer_id="cus_1",
        lifecycle=Lifecycle(
            state=BillingState.PAST_DUE,
            subscription=SubscriptionSnapshot(
                subscription_id="sub_1",
                customer_id="cus_1",
                status="past_due",
                plan="team",
                interval="month",
                seats=4,
                current_period_end=AT,
                trial_end=None,
                cancel_at=AT,
                open_invoice_url="https://invoice.example/in_1",
            ),
            grace_ends_at=AT,
            grace_started_at=AT,
            comp=Comp(plan="pro", until=AT, reason="support", actor="ops@example.com"),
            lock=Lock(reason="fraud review", actor="ops@example.com"),
            pending_change=PendingChange(Purchase("team", "month", 2, "team_monthly"), AT),
        ),
        entitlement_version=7,
        seen_event_ids=["evt_1", "evt_2"],
        sync_error="boom",
        dunning_policy=DunningPolicy(reminders_after_days=(2, 5), final_reminder_days_before=2),
        ladder_sent=["day-2"],
    ),
    pending_events=[StripeEventSignal("evt_3", "invoice.payment_failed", 1_790_000_000, "cus_1")],
    continue_as_new_after_events=3,
)
SDK_DEFAULT = temporalio.converter.default().payload_converter


def test_values_written_by_the_sdk_default_read_back_the_same() -> None:
    payloads = SDK_DEFAULT.to_payloads([EVERY_FIELD_SET])
    assert DATA_CONVERTER.payload_converter.from_payloads(payloads, [AccountWorkflowInput]) == [
        EVERY_FIELD_SET
    ]


def test_values_written_here_read_back_the_same_here_and_with_the_sdk_default() -> None:
    payloads = DATA_CONVERTER.payload_converter.to_payloads([EVERY_FIELD_SET])
    assert DATA_CONVERTER.payload_converter.from_payloads(payloads, [AccountWorkflowInput]) == [
        EVERY_FIELD_SET
    ]
    assert SDK_DEFAULT.from_payloads(payloads, [AccountWorkflowInput]) == [EVERY_FIELD_SET]


def test_a_new_converter_instance_reads_values_too() -> None:
    # The SDK makes a new instance for every workflow run.
    payloads = PayloadConverter().to_payloads([EVERY_FIELD_SET, None, b"raw"])
    assert PayloadConverter().from_payloads(payloads, [AccountWorkflowInput, None, bytes]) == [
        EVERY_FIELD_SET,
        None,
        b"raw",
    ]
