"""What the account workflow takes and gives: its input, state, signal and update messages.

Plain dataclasses, carried as the payload converter's JSON: renaming a field changes what
running workflows and their callers exchange.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.notifications import SendEmailInput
    from domain.catalog import DunningPolicy
    from domain.lifecycle import Lifecycle
    from domain.stripe_events import StripeEventSignal


@dataclass
class UnsentEmail:
    """An email not sent yet: what to send, and where its attempts stand."""

    request: SendEmailInput
    give_up_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None


@dataclass
class AccountState:
    """Everything that must survive continue-as-new."""

    customer_id: str | None = None
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    entitlement_version: int = 0
    seen_event_ids: list[str] = field(default_factory=list)
    # Set when the newest Stripe truth could not be applied; cleared by the next sync that
    # succeeds. `sync_error_kind` is its class (an ApplicationError type), shown as a search
    # attribute; `retry_at` is when the account tries again on its own.
    sync_error: str | None = None
    # The ladder of the account's plan (from the catalog, via the last Stripe fetch) and the
    # steps of the current unpaid period already sent.
    dunning_policy: DunningPolicy = field(default_factory=DunningPolicy)
    ladder_sent: list[str] = field(default_factory=list)
    sync_error_kind: str | None = None
    retry_at: datetime | None = None
    failed_attempts: int = 0
    # Emails whose last attempt failed, waiting for their next one (runs without the outbox).
    emails_to_retry: list[UnsentEmail] = field(default_factory=list)
    # Emails decided but not in the outbox yet (its write failed, or is still to come).
    emails_to_queue: list[SendEmailInput] = field(default_factory=list)

    def summary(self) -> UpdatedAccount:
        return UpdatedAccount(
            customer_id=self.customer_id,
            lifecycle=self.lifecycle,
            entitlement_version=self.entitlement_version,
            sync_error=self.sync_error,
        )


@dataclass
class UpdatedAccount:
    """The account as an update left it, for the caller. Small on purpose: every update's
    answer is written into the history, and the whole state carries up to 1,000 event ids."""

    customer_id: str | None
    lifecycle: Lifecycle
    entitlement_version: int
    sync_error: str | None = None


@dataclass
class PlanChangeResult:
    kind: str
    # False when an upgrade's payment failed: the account stays on its plan, and
    # `open_invoice_url` is where the customer can pay (or fix the card).
    applied: bool
    account: UpdatedAccount
    open_invoice_url: str | None = None


# Every update takes one dataclass, so that a field can be added later without changing its
# signature (runs started before keep working). The two below carry nothing yet; updates
# recorded before they existed arrive without one.


@dataclass
class KeepPlanRequest:
    """Call off the scheduled plan change."""


@dataclass
class ResumeRequest:
    """Undo a cancellation at period end, or resume a paused subscription."""


@dataclass
class CancelRequest:
    at_period_end: bool = True


@dataclass
class OperatorResult:
    action: str
    account: UpdatedAccount


@dataclass
class AccountWorkflowInput:
    account_id: str
    state: AccountState | None = None
    pending_events: list[StripeEventSignal] = field(default_factory=list)
    # Test-only knob: continue-as-new after this many events so that path is exercised.
    continue_as_new_after_events: int | None = None
    # Test-only knob: continue-as-new past this many history events (default
    # HISTORY_EVENTS_PER_RUN), so a test reaches the bound without a thousand events.
    continue_as_new_past_history_length: int | None = None
