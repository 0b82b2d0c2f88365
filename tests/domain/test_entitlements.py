"""The entitlement answer for every billing state, and operator overrides on top."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

import pytest

from domain.catalog import default_catalog
from domain.entitlements import (
    Access,
    AccountEntitlements,
    Entitlements,
    Message,
    entitlements_for,
    free_entitlements,
)
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


def subscribed(plan: str, seats: int = 1) -> SubscriptionSnapshot:
    return replace(TEAM, plan=plan, interval="month", seats=seats)


# comp plan, the account's own subscription (None: no plan applies) -> (seats, members).
# A comp grants its plan's minimum seats, or more when the account already pays for more of
# that plan; the members limit never drops below what the account's own plan gives.
COMP_SEATS_AND_MEMBERS = [
    ("team", None, (2, 2)),  # Team's minimum, not the free plan's single seat
    ("team", subscribed("pro"), (2, 5)),  # Pro already allows 5 members
    ("team", subscribed("team", seats=3), (3, 3)),
    ("team", subscribed("team", seats=10), (10, 10)),
    ("pro", subscribed("team", seats=10), (1, 10)),  # Pro's 5 would lock out 5 members
    ("pro", None, (1, 5)),
    ("enterprise", None, (1, 10_000)),
    ("enterprise", subscribed("team", seats=12), (1, 10_000)),
]


@pytest.mark.parametrize(("comp_plan", "own", "expected"), COMP_SEATS_AND_MEMBERS)
def test_a_comp_grants_its_seats_and_never_fewer_members_than_the_own_plan(
    comp_plan: str, own: SubscriptionSnapshot | None, expected: tuple[int, int]
) -> None:
    state = BillingState.FREE if own is None else BillingState.ACTIVE
    comp = replace(COMP, plan=comp_plan)
    ent = entitlements_for(Lifecycle(state, own, comp=comp), CATALOG)
    assert (ent.plan, (ent.seats, ent.limits["members"])) == (comp_plan, expected)
    other_limits = {k: v for k, v in ent.limits.items() if k != "members"}
    assert other_limits == {
        k: v for k, v in CATALOG.plan(comp_plan).limits.items() if k != "members"
    }
    assert ent.features == CATALOG.plan(comp_plan).features


def test_a_subscription_that_gives_no_plan_gives_a_comp_no_seats() -> None:
    """An unpaid first checkout for 10 Team seats is worth the free plan, under a comp too."""
    stuck = replace(subscribed("team", seats=10), status="incomplete")
    comp = replace(COMP, plan="team")
    ent = entitlements_for(Lifecycle(BillingState.INCOMPLETE, stuck, comp=comp), CATALOG)
    assert (ent.seats, ent.limits["members"]) == (2, 2)


def test_a_read_only_plan_still_counts_its_members_under_a_comp() -> None:
    restricted = replace(subscribed("team", seats=10), status="past_due")
    comp = replace(COMP, plan="pro")
    ent = entitlements_for(Lifecycle(BillingState.RESTRICTED, restricted, comp=comp), CATALOG)
    assert (ent.access, ent.limits["members"]) == (Access.FULL, 10)


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


def test_an_accounts_entitlements_lead_with_the_account_and_version() -> None:
    """The one field list the stored record and the API answer share; its order is the order
    of the answer's JSON keys."""
    names = [field.name for field in fields(AccountEntitlements)]

    assert names == ["account_id", "version", *(field.name for field in fields(Entitlements))]
