"""What can be bought, and which changes are upgrades (now) or downgrades (at period end)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.catalog import default_catalog
from domain.lifecycle import (
    BillingState,
    CancelPlanChange,
    InvalidTransition,
    Lifecycle,
    Notice,
    PendingChange,
    Purchase,
    SchedulePlanChange,
    SubscriptionObserved,
    SubscriptionSnapshot,
    due_plan_change,
    next_deadline,
    transition,
)
from domain.plan_changes import ChangeKind, PlanChangeError, classify_change, purchase_for

CATALOG = default_catalog()
NOW = datetime(2026, 11, 24, tzinfo=UTC)
PERIOD_END = NOW + timedelta(days=20)


def current(plan: str, interval: str = "month", seats: int = 1) -> SubscriptionSnapshot:
    return SubscriptionSnapshot(
        "sub_1", "cus_1", "active", plan, interval, seats, current_period_end=PERIOD_END
    )


@pytest.mark.parametrize(
    ("plan", "interval", "seats", "problem"),
    [
        ("platinum", "month", 1, "unknown plan"),
        ("free", "month", 1, "self-serve"),
        ("enterprise", "year", 1, "self-serve"),
        ("pro", "week", 1, "no 'week' price"),
        ("pro", "month", 2, "exactly 1 seat"),
        ("team", "month", 1, "2 to 500 seats"),
        ("team", "year", 501, "2 to 500 seats"),
    ],
)
def test_purchases_outside_the_catalog_are_refused(
    plan: str, interval: str, seats: int, problem: str
) -> None:
    with pytest.raises(PlanChangeError, match=problem):
        purchase_for(CATALOG, plan, interval, seats)


def test_a_valid_purchase_names_its_price() -> None:
    assert purchase_for(CATALOG, "team", "year", 10) == Purchase(
        "team", "year", 10, "team_annual_per_seat"
    )


# (current plan, interval, seats) -> (wanted plan, interval, seats) -> kind
CHANGES = [
    (("pro", "month", 1), ("team", "month", 2), ChangeKind.UPGRADE),
    (("team", "month", 2), ("pro", "month", 1), ChangeKind.DOWNGRADE),
    (("team", "month", 2), ("team", "month", 3), ChangeKind.UPGRADE),
    (("team", "month", 5), ("team", "month", 3), ChangeKind.DOWNGRADE),
    (("pro", "month", 1), ("pro", "year", 1), ChangeKind.DOWNGRADE),  # 290/yr < 348/yr
    (("pro", "year", 1), ("pro", "month", 1), ChangeKind.UPGRADE),
    (("team", "year", 2), ("pro", "month", 1), ChangeKind.DOWNGRADE),
    (("pro", "year", 1), ("team", "year", 2), ChangeKind.UPGRADE),
]


@pytest.mark.parametrize(("now", "wanted", "kind"), CHANGES)
def test_changes_are_classified_by_what_the_account_pays_per_year(
    now: tuple[str, str, int], wanted: tuple[str, str, int], kind: ChangeKind
) -> None:
    change = classify_change(CATALOG, current(*now), purchase_for(CATALOG, *wanted))
    assert change.kind is kind


def test_the_same_plan_is_no_change() -> None:
    with pytest.raises(PlanChangeError, match="already on that plan"):
        classify_change(CATALOG, current("pro"), purchase_for(CATALOG, "pro", "month", 1))


PRO = Purchase("pro", "month", 1, "pro_monthly")
PENDING = PendingChange(PRO, PERIOD_END - timedelta(minutes=5))


@pytest.mark.parametrize("state", list(BillingState))
def test_a_downgrade_can_be_scheduled_only_in_good_standing(state: BillingState) -> None:
    lifecycle = Lifecycle(state, current("team", seats=2))
    if state in (BillingState.ACTIVE, BillingState.TRIALING):
        result = transition(lifecycle, SchedulePlanChange(PENDING), NOW)
        assert result.after.pending_change == PENDING
        assert result.notices == (Notice.DOWNGRADE_SCHEDULED,)
        assert next_deadline(result.after) == PENDING.effective_at
    else:
        with pytest.raises(InvalidTransition):
            transition(lifecycle, SchedulePlanChange(PENDING), NOW)


def test_a_scheduled_change_falls_due_at_its_time_and_can_be_called_off() -> None:
    lifecycle = Lifecycle(BillingState.ACTIVE, current("team", seats=2), pending_change=PENDING)
    assert due_plan_change(lifecycle, PENDING.effective_at - timedelta(seconds=1)) is None
    assert due_plan_change(lifecycle, PENDING.effective_at) == PENDING
    assert transition(lifecycle, CancelPlanChange(), NOW).after.pending_change is None
    with pytest.raises(InvalidTransition, match="no plan change"):
        transition(Lifecycle(BillingState.ACTIVE), CancelPlanChange(), NOW)


def test_a_change_in_the_past_is_refused() -> None:
    lifecycle = Lifecycle(BillingState.ACTIVE, current("team", seats=2))
    with pytest.raises(InvalidTransition, match="future"):
        transition(lifecycle, SchedulePlanChange(PendingChange(PRO, NOW)), NOW)


@pytest.mark.parametrize(
    ("stripe_now", "still_pending"),
    [
        (current("team", seats=2), True),  # not applied yet
        (current("pro"), False),  # Stripe shows the new plan: done
        (None, False),  # the subscription ended
        (
            SubscriptionSnapshot("sub_1", "cus_1", "past_due", "team", "month", 2),
            False,  # unpaid: no longer in good standing
        ),
    ],
)
def test_a_pending_change_lapses_once_applied_or_moot(
    stripe_now: SubscriptionSnapshot | None, still_pending: bool
) -> None:
    lifecycle = Lifecycle(BillingState.ACTIVE, current("team", seats=2), pending_change=PENDING)
    after = transition(lifecycle, SubscriptionObserved(stripe_now, 7), NOW).after
    assert (after.pending_change is not None) is still_pending
