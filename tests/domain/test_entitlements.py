"""The entitlement answer for every billing state, and operator overrides on top."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from domain.catalog import default_catalog
from domain.entitlements import Access, Message, entitlements_for, free_entitlements
from domain.lifecycle import BillingState, Comp, Lifecycle, Lock, SubscriptionSnapshot

NOW = datetime(2026, 11, 24, tzinfo=UTC)
CATALOG = default_catalog()
TEAM = SubscriptionSnapshot(
    subscription_id="sub_1",
    customer_id="cus_1",
    status="active",
    plan="team",
    interval="year",
    seats=12,
    current_period_end=NOW + timedelta(days=300),
    trial_end=NOW + timedelta(days=10),
)

# state -> (access, plan, message)
EXPECTED = {
    BillingState.FREE: (Access.FULL, "free", Message.UPGRADE_PROMPT),
    BillingState.INCOMPLETE: (Access.FULL, "free", Message.FINISH_PAYMENT),
    BillingState.TRIALING: (Access.FULL, "team", Message.TRIAL_ENDS),
    BillingState.ACTIVE: (Access.FULL, "team", None),
    BillingState.CANCELING: (Access.FULL, "team", Message.ENDS_ON),
    BillingState.PAST_DUE: (Access.FULL, "team", Message.PAYMENT_FAILED),
    BillingState.RESTRICTED: (Access.READ_ONLY, "team", Message.RESTRICTED),
    BillingState.PAUSED: (Access.READ_ONLY, "team", Message.ADD_PAYMENT_METHOD),
}


def test_every_state_has_an_answer() -> None:
    assert set(EXPECTED) == set(BillingState)


@pytest.mark.parametrize("state", list(BillingState))
def test_access_plan_and_message_per_state(state: BillingState) -> None:
    subscription = None if state is BillingState.FREE else TEAM
    ent = entitlements_for(Lifecycle(state, subscription), CATALOG)
    access, plan, message = EXPECTED[state]
    assert (ent.access, ent.plan, ent.message) == (access, plan, message)
    assert ent.features == CATALOG.plan(plan).features
    assert ent.effective_state == state.value


def test_team_members_limit_is_the_seat_count() -> None:
    ent = entitlements_for(Lifecycle(BillingState.ACTIVE, TEAM), CATALOG)
    assert ent.seats == 12
    assert ent.limits["members"] == 12
    assert ent.interval == "year"
    assert ent.period_ends_at == TEAM.current_period_end


def test_trial_end_is_reported_only_while_trialing() -> None:
    trialing = entitlements_for(Lifecycle(BillingState.TRIALING, TEAM), CATALOG)
    active = entitlements_for(Lifecycle(BillingState.ACTIVE, TEAM), CATALOG)
    assert (trialing.trial_ends_at, active.trial_ends_at) == (TEAM.trial_end, None)


def test_grace_end_and_open_invoice_are_passed_through() -> None:
    grace = NOW + timedelta(days=7)
    sub = replace(TEAM, status="past_due", open_invoice_url="https://pay.example/in_1")
    ent = entitlements_for(Lifecycle(BillingState.PAST_DUE, sub, grace), CATALOG)
    assert (ent.grace_ends_at, ent.open_invoice_url) == (grace, "https://pay.example/in_1")


COMP = Comp(plan="enterprise", until=NOW + timedelta(days=30), reason="partner", actor="ops")


@pytest.mark.parametrize("state", list(BillingState))
def test_comp_grants_its_plan_in_full_whatever_the_state(state: BillingState) -> None:
    ent = entitlements_for(Lifecycle(state, TEAM, comp=COMP), CATALOG)
    assert (ent.access, ent.plan, ent.effective_state, ent.message) == (
        Access.FULL,
        "enterprise",
        "comped",
        None,
    )
    assert ent.billing_state == state.value


@pytest.mark.parametrize("state", list(BillingState))
def test_lock_removes_all_access_even_over_a_comp(state: BillingState) -> None:
    lock = Lock(reason="fraud", actor="ops")
    ent = entitlements_for(Lifecycle(state, TEAM, comp=COMP, lock=lock), CATALOG)
    assert (ent.access, ent.effective_state, ent.message) == (
        Access.NONE,
        "locked",
        Message.CONTACT_SUPPORT,
    )
    assert not any(ent.features.values())


def test_unknown_account_gets_the_free_plan() -> None:
    ent = free_entitlements(CATALOG)
    assert (ent.plan, ent.access, ent.billing_state) == ("free", Access.FULL, "free")
    assert ent.limits == CATALOG.plan("free").limits
