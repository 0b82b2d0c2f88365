"""Every lifecycle state × every Stripe subscription status, as one table."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from domain.lifecycle import (
    BillingState,
    Comp,
    ExtendGrace,
    GrantComp,
    InvalidTransition,
    Lifecycle,
    Lock,
    LockAccount,
    Notice,
    RevokeComp,
    SubscriptionObserved,
    SubscriptionSnapshot,
    TimePassed,
    UnlockAccount,
    next_deadline,
    state_for_subscription,
    transition,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
GRACE_DAYS = 7
PERIOD_END = NOW + timedelta(days=20)


def snapshot(status: str, *, cancel: bool = False, plan: str = "pro") -> SubscriptionSnapshot:
    return SubscriptionSnapshot(
        subscription_id="sub_1",
        customer_id="cus_1",
        status=status,
        plan=plan,
        interval="month",
        current_period_end=PERIOD_END,
        cancel_at=PERIOD_END if cancel else None,
    )


OBSERVED: dict[str, SubscriptionSnapshot | None] = {
    "none": None,
    "incomplete": snapshot("incomplete"),
    "incomplete_expired": snapshot("incomplete_expired"),
    "trialing": snapshot("trialing"),
    "active": snapshot("active"),
    "active+cancel": snapshot("active", cancel=True),
    "past_due": snapshot("past_due"),
    "unpaid": snapshot("unpaid"),
    "canceled": snapshot("canceled"),
    "paused": snapshot("paused"),
}

GRACE_RUNNING = NOW + timedelta(days=3)
CURRENT: dict[str, Lifecycle] = {
    "free": Lifecycle(),
    "incomplete": Lifecycle(BillingState.INCOMPLETE, snapshot("incomplete")),
    "trialing": Lifecycle(BillingState.TRIALING, snapshot("trialing")),
    "active": Lifecycle(BillingState.ACTIVE, snapshot("active")),
    "canceling": Lifecycle(BillingState.CANCELING, snapshot("active", cancel=True)),
    "past_due": Lifecycle(BillingState.PAST_DUE, snapshot("past_due"), GRACE_RUNNING),
    "restricted": Lifecycle(BillingState.RESTRICTED, snapshot("past_due"), NOW - timedelta(1)),
    "paused": Lifecycle(BillingState.PAUSED, snapshot("paused")),
}

# Rows: current state. Columns: the subscription Stripe reports now (in OBSERVED order).
# Cell: new state / notice ("-" for none).
TABLE = """
            none               incomplete                    incomplete_expired   trialing                        active                          active+cancel                      past_due                  unpaid                    canceled             paused
free        free/-             incomplete/payment_incomplete free/-               trialing/subscription_started   active/subscription_started     canceling/cancellation_scheduled   past_due/payment_failed   past_due/payment_failed   free/-               paused/subscription_paused
incomplete  free/-             incomplete/-                  free/-               trialing/subscription_started   active/subscription_started     canceling/cancellation_scheduled   past_due/payment_failed   past_due/payment_failed   free/-               paused/subscription_paused
trialing    free/subscription_ended incomplete/payment_incomplete free/subscription_ended trialing/-     active/-                        canceling/cancellation_scheduled   past_due/payment_failed   past_due/payment_failed   free/subscription_ended paused/subscription_paused
active      free/subscription_ended incomplete/payment_incomplete free/subscription_ended trialing/-     active/-                        canceling/cancellation_scheduled   past_due/payment_failed   past_due/payment_failed   free/subscription_ended paused/subscription_paused
canceling   free/subscription_ended incomplete/payment_incomplete free/subscription_ended trialing/cancellation_revoked active/cancellation_revoked canceling/-        past_due/payment_failed   past_due/payment_failed   free/subscription_ended paused/subscription_paused
past_due    free/subscription_ended incomplete/payment_incomplete free/subscription_ended trialing/payment_recovered active/payment_recovered canceling/cancellation_scheduled past_due/- past_due/-               free/subscription_ended paused/subscription_paused
restricted  free/subscription_ended incomplete/payment_incomplete free/subscription_ended trialing/payment_recovered active/payment_recovered canceling/cancellation_scheduled restricted/- restricted/-           free/subscription_ended paused/subscription_paused
paused      free/subscription_ended incomplete/payment_incomplete free/subscription_ended trialing/-     active/-                        canceling/cancellation_scheduled   past_due/payment_failed   past_due/payment_failed   free/subscription_ended paused/-
"""


def _cases() -> list[tuple[str, str, str, str]]:
    lines = [line.split() for line in TABLE.strip().splitlines()]
    columns, rows = lines[0], lines[1:]
    assert columns == list(OBSERVED)
    assert [row[0] for row in rows] == list(CURRENT)
    cases = []
    for row in rows:
        for column, cell in zip(columns, row[1:], strict=True):
            state, notice = cell.split("/")
            cases.append((row[0], column, state, notice))
    return cases


@pytest.mark.parametrize(("current", "observed", "expected_state", "expected_notice"), _cases())
def test_every_state_by_every_subscription_status(
    current: str, observed: str, expected_state: str, expected_notice: str
) -> None:
    result = transition(CURRENT[current], SubscriptionObserved(OBSERVED[observed], GRACE_DAYS), NOW)

    assert result.after.state == BillingState(expected_state)
    assert result.notices == (() if expected_notice == "-" else (Notice(expected_notice),))
    if result.after.state is BillingState.FREE:
        assert result.after.subscription is None
    else:
        assert result.after.subscription == OBSERVED[observed]


@pytest.mark.parametrize("current", ["free", "active", "trialing", "paused", "canceling"])
def test_first_failure_starts_grace_from_now(current: str) -> None:
    result = transition(CURRENT[current], SubscriptionObserved(snapshot("past_due"), 7), NOW)
    assert result.after.grace_ends_at == NOW + timedelta(days=7)


def test_later_failures_keep_the_running_grace_period() -> None:
    later = NOW + timedelta(days=2)
    result = transition(CURRENT["past_due"], SubscriptionObserved(snapshot("past_due"), 7), later)
    assert result.after.grace_ends_at == GRACE_RUNNING
    assert not result.changed


def test_failure_seen_after_grace_end_restricts_even_before_the_timer() -> None:
    after_end = GRACE_RUNNING + timedelta(seconds=1)
    result = transition(
        CURRENT["past_due"], SubscriptionObserved(snapshot("past_due"), 7), after_end
    )
    assert result.after.state is BillingState.RESTRICTED
    assert result.notices == (Notice.ACCESS_RESTRICTED,)


@pytest.mark.parametrize("recovered", ["active", "trialing", "active+cancel", "none"])
def test_leaving_unpaid_states_clears_grace(recovered: str) -> None:
    result = transition(CURRENT["restricted"], SubscriptionObserved(OBSERVED[recovered], 7), NOW)
    assert result.after.grace_ends_at is None


def test_plan_change_within_a_paid_state_is_noticed() -> None:
    upgraded = snapshot("active", plan="team")
    result = transition(CURRENT["active"], SubscriptionObserved(upgraded, 7), NOW)
    assert result.after.state is BillingState.ACTIVE
    assert result.notices == (Notice.PLAN_CHANGED,)


@pytest.mark.parametrize("current", list(CURRENT))
def test_time_passing_restricts_only_an_expired_grace(current: str) -> None:
    lifecycle = CURRENT[current]
    before_end = transition(lifecycle, TimePassed(), GRACE_RUNNING - timedelta(seconds=1))
    at_end = transition(lifecycle, TimePassed(), GRACE_RUNNING)

    assert not before_end.changed
    if current == "past_due":
        assert at_end.after.state is BillingState.RESTRICTED
        assert at_end.notices == (Notice.ACCESS_RESTRICTED,)
    else:
        assert at_end.after == lifecycle
        assert at_end.notices == ()


COMP = Comp(plan="enterprise", until=NOW + timedelta(days=30), reason="design partner", actor="ops")
LOCK = Lock(reason="chargeback fraud", actor="ops")


@pytest.mark.parametrize("current", list(CURRENT))
def test_operator_overrides_are_kept_beside_every_state(current: str) -> None:
    lifecycle = CURRENT[current]
    comped = transition(lifecycle, GrantComp(COMP), NOW).after
    locked = transition(comped, LockAccount(LOCK), NOW).after
    assert (locked.state, locked.comp, locked.lock) == (lifecycle.state, COMP, LOCK)

    # A Stripe change underneath keeps both overrides.
    observed = transition(locked, SubscriptionObserved(snapshot("active"), 7), NOW).after
    assert (observed.comp, observed.lock) == (COMP, LOCK)

    cleared = transition(transition(observed, RevokeComp(), NOW).after, UnlockAccount(), NOW).after
    assert (cleared.comp, cleared.lock) == (None, None)


def test_comp_expires_when_time_passes() -> None:
    comped = replace(CURRENT["active"], comp=COMP)
    assert next_deadline(comped) == COMP.until
    assert transition(comped, TimePassed(), COMP.until).after.comp is None


@pytest.mark.parametrize(
    ("lifecycle", "operator_input", "message"),
    [
        (CURRENT["active"], GrantComp(replace(COMP, until=NOW)), "future"),
        (CURRENT["active"], RevokeComp(), "no comp"),
        (CURRENT["active"], UnlockAccount(), "not locked"),
        (CURRENT["active"], ExtendGrace(NOW + timedelta(days=3)), "no grace"),
        (CURRENT["past_due"], ExtendGrace(NOW), "future"),
    ],
)
def test_operator_actions_that_make_no_sense_are_refused(
    lifecycle, operator_input, message
) -> None:
    with pytest.raises(InvalidTransition, match=message):
        transition(lifecycle, operator_input, NOW)


@pytest.mark.parametrize("current", ["past_due", "restricted"])
def test_extending_grace_moves_the_deadline_and_restores_access(current: str) -> None:
    until = NOW + timedelta(days=5)
    after = transition(CURRENT[current], ExtendGrace(until), NOW).after
    assert (after.state, after.grace_ends_at) == (BillingState.PAST_DUE, until)
    assert next_deadline(after) == until


def test_unknown_stripe_status_is_refused() -> None:
    with pytest.raises(InvalidTransition, match="unknown Stripe subscription status"):
        state_for_subscription(snapshot("exotic"))


def test_no_deadline_outside_grace_and_comp() -> None:
    for name, lifecycle in CURRENT.items():
        expected = GRACE_RUNNING if name == "past_due" else None
        assert next_deadline(lifecycle) == expected
