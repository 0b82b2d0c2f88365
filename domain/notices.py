"""Which emails the customer gets, when, and under which once-only key.

Lifecycle notices are emailed when they happen; while an account is unpaid the dunning
ladder adds reminders on a schedule relative to the failure; a few Stripe events (trial
ending, payment needing authentication) are emailed as they arrive. Every email has a key
unique per (account, billing cycle, step), so it is sent at most once whatever is replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.catalog import DunningPolicy
from domain.lifecycle import BillingState, Lifecycle, Notice

PAYMENT_REMINDER = "payment_reminder"
FINAL_REMINDER = "final_reminder"
TRIAL_ENDING = "trial_ending"
PAYMENT_ACTION_REQUIRED = "payment_action_required"

# Stripe events that are themselves a reason to write to the customer.
EVENT_EMAILS = {
    "customer.subscription.trial_will_end": TRIAL_ENDING,
    "invoice.payment_action_required": PAYMENT_ACTION_REQUIRED,
}
# Notices of one unpaid period share its cycle: one failure email, one restriction email.
DUNNING_NOTICES = frozenset(
    {Notice.PAYMENT_FAILED, Notice.ACCESS_RESTRICTED, Notice.PAYMENT_RECOVERED}
)


@dataclass(frozen=True)
class LadderStep:
    step: str  # e.g. "payment_reminder_d3", "final_reminder"
    kind: str  # the email kind
    due_at: datetime


@dataclass(frozen=True)
class Email:
    key: str
    kind: str
    context: dict[str, str]


def dunning_ladder(lifecycle: Lifecycle, policy: DunningPolicy) -> list[LadderStep]:
    """The reminders of the current unpaid period, in time order; none outside it."""
    start, end = lifecycle.grace_started_at, lifecycle.grace_ends_at
    if lifecycle.state is not BillingState.PAST_DUE or start is None or end is None:
        return []
    final_at = end - timedelta(days=policy.final_reminder_days_before)
    steps = [
        LadderStep(f"{PAYMENT_REMINDER}_d{days}", PAYMENT_REMINDER, start + timedelta(days=days))
        for days in sorted(policy.reminders_after_days)
        if start + timedelta(days=days) < final_at
    ]
    if final_at > start:
        steps.append(LadderStep(FINAL_REMINDER, FINAL_REMINDER, final_at))
    return steps


def due_ladder_steps(
    lifecycle: Lifecycle, policy: DunningPolicy, sent: set[str], now: datetime
) -> list[LadderStep]:
    return [s for s in dunning_ladder(lifecycle, policy) if s.due_at <= now and s.step not in sent]


def next_ladder_step_at(
    lifecycle: Lifecycle, policy: DunningPolicy, sent: set[str]
) -> datetime | None:
    upcoming = [s.due_at for s in dunning_ladder(lifecycle, policy) if s.step not in sent]
    return min(upcoming, default=None)


def _cycle(lifecycle: Lifecycle) -> str:
    assert lifecycle.grace_started_at is not None
    return lifecycle.grace_started_at.strftime("%Y%m%dT%H%M%S")


def email_context(lifecycle: Lifecycle, previous: Lifecycle | None = None) -> dict[str, str]:
    """What the templates are told, as strings; the plan is the one the email is about."""
    sub = lifecycle.subscription or (previous.subscription if previous else None)
    context: dict[str, str] = {}
    if sub is not None:
        context.update(plan=sub.plan, interval=sub.interval, seats=str(sub.seats))
        for name, value in (
            ("period_ends_at", sub.current_period_end),
            ("trial_ends_at", sub.trial_end),
            ("cancel_at", sub.cancel_at),
        ):
            if value is not None:
                context[name] = value.isoformat()
        if sub.open_invoice_url:
            context["open_invoice_url"] = sub.open_invoice_url
    else:
        context["plan"] = "free"
    previous_sub = previous.subscription if previous is not None else None
    if previous_sub is not None and sub is not None and previous_sub.plan != sub.plan:
        context["previous_plan"] = previous_sub.plan
    if lifecycle.grace_ends_at is not None:
        context["grace_ends_at"] = lifecycle.grace_ends_at.isoformat()
    if lifecycle.pending_change is not None:
        context["period_ends_at"] = lifecycle.pending_change.effective_at.isoformat()
    return context


def notice_email(
    account_id: str, notice: Notice, before: Lifecycle, after: Lifecycle, version: int
) -> Email:
    if notice in DUNNING_NOTICES:
        cycle = _cycle(after if after.grace_started_at else before)
    else:
        cycle = f"v{version}"
    return Email(
        key=f"{account_id}:{notice}:{cycle}",
        kind=str(notice),
        context=email_context(after, before),
    )


def ladder_email(account_id: str, step: LadderStep, lifecycle: Lifecycle) -> Email:
    return Email(
        key=f"{account_id}:{step.step}:{_cycle(lifecycle)}",
        kind=step.kind,
        context=email_context(lifecycle),
    )


def event_email(
    account_id: str, event_type: str, event_id: str, lifecycle: Lifecycle
) -> Email | None:
    """The email a Stripe event asks for, if any (and if it still makes sense)."""
    kind = EVENT_EMAILS.get(event_type)
    sub = lifecycle.subscription
    if kind is None or sub is None:
        return None
    if kind == TRIAL_ENDING:
        if lifecycle.state is not BillingState.TRIALING or sub.trial_end is None:
            return None
        cycle = sub.trial_end.strftime("%Y%m%d")
    else:
        if sub.open_invoice_url is None:
            return None  # paid meanwhile: nothing to act on
        cycle = event_id
    return Email(key=f"{account_id}:{kind}:{cycle}", kind=kind, context=email_context(lifecycle))
