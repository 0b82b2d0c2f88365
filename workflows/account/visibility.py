"""What operators see of an account in the Temporal Web UI: search attributes to filter
by, and a one-line summary. Ids and states only: both are stored unencrypted."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributeUpdate

from workflows.account.messages import AccountState

BILLING_STATE = SearchAttributeKey.for_keyword("BillingState")
BILLING_PLAN = SearchAttributeKey.for_keyword("BillingPlan")
STRIPE_CUSTOMER_ID = SearchAttributeKey.for_keyword("StripeCustomerId")
ACCOUNT_ID = SearchAttributeKey.for_keyword("AccountId")
GRACE_ENDS_AT = SearchAttributeKey.for_datetime("GraceEndsAt")
# The class of the account's sync error (`CustomerMissing`, `CatalogError`, ...): the Web UI's
# list of accounts that need an operator is `BillingSyncError IS NOT NULL`.
BILLING_SYNC_ERROR = SearchAttributeKey.for_keyword("BillingSyncError")
SEARCH_ATTRIBUTES: Sequence[SearchAttributeKey] = (
    BILLING_STATE,
    BILLING_PLAN,
    STRIPE_CUSTOMER_ID,
    ACCOUNT_ID,
    GRACE_ENDS_AT,
    BILLING_SYNC_ERROR,
)


def publish_for_operators(account_id: str, state: AccountState, every_time: bool) -> None:
    """Set the summary and the search attributes that changed (`every_time`: all of them, as
    runs recorded before that change did)."""
    workflow.set_current_details(operator_summary(state))
    lifecycle = state.lifecycle
    sub = lifecycle.subscription
    current = workflow.info().typed_search_attributes
    wanted: list[SearchAttributeUpdate] = [
        BILLING_STATE.value_set(str(lifecycle.state)),
        BILLING_PLAN.value_set(sub.plan if sub else "free"),
        ACCOUNT_ID.value_set(account_id),
    ]
    if state.customer_id:
        wanted.append(STRIPE_CUSTOMER_ID.value_set(state.customer_id))
    if lifecycle.grace_ends_at is not None:
        wanted.append(GRACE_ENDS_AT.value_set(lifecycle.grace_ends_at))
    elif current.get(GRACE_ENDS_AT) is not None:
        # Unsetting one never set stores a value the SDK cannot decode on describe().
        wanted.append(GRACE_ENDS_AT.value_unset())
    if state.sync_error_kind is not None:
        wanted.append(BILLING_SYNC_ERROR.value_set(state.sync_error_kind))
    elif current.get(BILLING_SYNC_ERROR) is not None:
        wanted.append(BILLING_SYNC_ERROR.value_unset())
    if every_time:
        workflow.upsert_search_attributes(wanted)
        return
    # Each upsert is a history event and a visibility write: only what changed.
    changed = [u for u in wanted if current.get(u.key) != u.value]
    if changed:
        workflow.upsert_search_attributes(changed)


def operator_summary(state: AccountState) -> str:
    """Ids and states only: like search attributes, details are stored unencrypted."""
    lifecycle = state.lifecycle
    sub = lifecycle.subscription
    parts = [f"**{lifecycle.state}**"]
    if sub is not None:
        parts.append(
            f"{sub.plan} ({sub.interval}, {sub.seats} seat{'s' if sub.seats != 1 else ''})"
        )
    if lifecycle.grace_ends_at is not None:
        parts.append(f"grace ends {lifecycle.grace_ends_at:%Y-%m-%d %H:%M} UTC")
    if lifecycle.pending_change is not None:
        change = lifecycle.pending_change
        parts.append(f"to {change.purchase.plan} on {change.effective_at:%Y-%m-%d}")
    if lifecycle.comp is not None:
        parts.append(f"comped {lifecycle.comp.plan} until {lifecycle.comp.until:%Y-%m-%d}")
    if lifecycle.lock is not None:
        parts.append("locked")
    if state.customer_id:
        parts.append(f"customer {state.customer_id}")
    if state.sync_error:
        parts.append("sync error: see the state query")
    return " · ".join(parts)
