"""What operators do to accounts, whoever asks: the admin API (`api.routes.admin`) and the
support console (`api.routes.console`) read and act through these, so both answer alike.

Reads come from the database only (the live workflow view is a bonus that may be missing), so
operators can still look while Temporal is down. Actions are checked here first, then run as
the account workflow's validated Update, which applies them and writes the audit row itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from api.account_workflows import AccountWorkflows
from api.routes.entitlements import current_answer
from api.schemas import (
    AccountDetailAnswer,
    AccountSummaryAnswer,
    AuditEntryAnswer,
    CompAnswer,
    EmailAnswer,
    EntitlementChangeAnswer,
    EntitlementsAnswer,
    LinkAnswer,
    LinkRequest,
    LockAnswer,
    OperatorActionAnswer,
    OperatorActionRequest,
    OverridesAnswer,
    StripeEventAnswer,
    WorkflowViewAnswer,
)
from db import admin_queries, repository
from db.models import OperatorAction
from domain.catalog import Catalog
from domain.operator_actions import ACTIONS, InvalidOperatorRequest
from workflows.account import StripeEventSignal

HISTORY_LIMIT = 50
LINK_ACTION = "link_customer"


class LinkRefused(Exception):
    """The customer is linked to another account; the message says which."""


async def read_account(
    sessions: sessionmaker[Session],
    catalog: Catalog,
    workflows: AccountWorkflows,
    account_id: str,
) -> AccountDetailAnswer | None:
    """Everything the database knows about one account, and the workflow's view if it
    answers; None for an account the database does not know."""
    detail = await run_in_threadpool(account_detail, sessions, catalog, account_id)
    if detail is None:
        return None
    detail.workflow = WorkflowViewAnswer.of(await workflows.live_view(account_id))
    detail.warnings = warnings_for(detail)
    return detail


async def run_action(
    sessions: sessionmaker[Session],
    catalog: Catalog,
    workflows: AccountWorkflows,
    account_id: str,
    action: str,
    body: OperatorActionRequest,
    *,
    idempotency_key: str | None,
) -> OperatorActionAnswer:
    """Apply an operator action through the account workflow (started if no run exists).

    Raises `InvalidOperatorRequest` for an action refused before the workflow is asked; the
    workflow's own refusal comes as its update failure."""
    if action not in ACTIONS:
        raise InvalidOperatorRequest(
            f"unknown action {action!r}; one of: {', '.join(sorted(ACTIONS))}"
        )
    request = body.to_request(action, datetime.now(UTC), catalog)
    applied = await workflows.operator_action(account_id, request, idempotency_key=idempotency_key)
    # The update returns only once its entitlement write is done: the database is current.
    entitlements = await run_in_threadpool(current_answer, sessions, catalog, account_id)
    return OperatorActionAnswer(
        account_id=account_id,
        action=applied.action,
        entitlements=entitlements,
        workflow=WorkflowViewAnswer.of(applied.workflow),
    )


async def link_and_replay(
    sessions: sessionmaker[Session], workflows: AccountWorkflows, body: LinkRequest
) -> LinkAnswer:
    """Link a Stripe customer to an account, then replay its stored unroutable events.

    Safe to repeat: a second call finds the link in place and nothing left to replay; a call
    cut short by Temporal leaves the events unresolved for the next one (the workflow drops
    event ids it has already seen). Raises `LinkRefused` for a customer of another account.
    """
    try:
        linking = await run_in_threadpool(_link, sessions, body)
    except repository.CustomerConflict as err:
        raise LinkRefused(str(err)) from err
    not_replayed = (
        f"{body.customer_id} is linked to {body.account_id}, but Temporal did not confirm the "
        "replay of its events: repeat the call"
    )
    for event in linking.events:
        await workflows.send_stripe_event(
            body.account_id, event, if_unconfirmed=not_replayed, if_not_sent=not_replayed
        )
    event_ids = [event.event_id for event in linking.events]
    if linking.newly_linked or event_ids:
        await run_in_threadpool(_finish_link, sessions, body, linking.previous_customer, event_ids)
    return LinkAnswer(
        account_id=body.account_id,
        customer_id=body.customer_id,
        newly_linked=linking.newly_linked,
        replayed=len(event_ids),
        replayed_event_ids=event_ids,
    )


def account_detail(
    sessions: sessionmaker[Session], catalog: Catalog, account_id: str
) -> AccountDetailAnswer | None:
    with sessions() as session:
        account = admin_queries.account(session, account_id)
        if account is None:
            return None
        row = admin_queries.entitlement_row(session, account_id)
        record = repository.read_entitlements(session, account_id)
        return AccountDetailAnswer(
            account_id=account_id,
            stripe_customer_id=account.stripe_customer_id,
            created_at=account.created_at,
            entitlements=EntitlementsAnswer.stored_or_free(account_id, record, catalog),
            overrides=overrides_from(row.lifecycle if row is not None else None),
            entitlement_changes=[
                EntitlementChangeAnswer.model_validate(change)
                for change in admin_queries.recent_entitlement_changes(
                    session, account_id, HISTORY_LIMIT
                )
            ],
            stripe_events=[
                StripeEventAnswer.model_validate(event)
                for event in admin_queries.recent_stripe_events(session, account_id, HISTORY_LIMIT)
            ],
            emails=[
                EmailAnswer.model_validate(email)
                for email in admin_queries.email_deliveries(session, account_id, HISTORY_LIMIT)
            ],
            operator_actions=[
                _audit_entry(audit)
                for audit in admin_queries.operator_actions(session, account_id, HISTORY_LIMIT)
            ],
            workflow=WorkflowViewAnswer(status="unknown"),
        )


def warnings_for(detail: AccountDetailAnswer) -> list[str]:
    """What operators should act on: the admin API's `warnings`."""
    live = detail.workflow
    warnings = link_warnings(detail)
    if live.status == "running" and live.sync_error:
        warnings.append(f"the last Stripe sync failed: {live.sync_error}")
    return warnings


def link_warnings(detail: AccountDetailAnswer) -> list[str]:
    """The warnings other than the sync error, which the console shows in a block of its
    own."""
    live = detail.workflow
    if live.status != "running" or live.customer_id == detail.stripe_customer_id:
        return []
    # The workflow learns a customer from events only; a resync asks Stripe about the one it
    # knows.
    return [
        f"the workflow knows customer {live.customer_id or 'none'}, the database links "
        f"{detail.stripe_customer_id or 'none'}: resync the account"
    ]


def overrides_from(lifecycle: dict[str, Any] | None) -> OverridesAnswer:
    """The comp and lock in force, from the lifecycle stored beside the entitlements."""
    lifecycle = lifecycle or {}
    comp, lock = lifecycle.get("comp"), lifecycle.get("lock")
    return OverridesAnswer(
        comp=CompAnswer.model_validate(comp) if comp else None,
        lock=LockAnswer.model_validate(lock) if lock else None,
    )


def lifecycle_summary(document: dict[str, Any]) -> dict[str, Any]:
    """The part of a stored lifecycle an operator reads in the audit trail; anything that is
    not a lifecycle (a customer link) is shown as it is."""
    if "state" not in document:
        return document
    subscription = document.get("subscription") or {}
    comp = document.get("comp")
    pending = document.get("pending_change")
    return {
        "state": document["state"],
        "plan": subscription.get("plan", "free"),
        "grace_ends_at": document.get("grace_ends_at"),
        "comp": {"plan": comp["plan"], "until": comp["until"]} if comp else None,
        "locked": document.get("lock") is not None,
        "pending_change": (
            {"plan": pending["purchase"]["plan"], "effective_at": pending["effective_at"]}
            if pending
            else None
        ),
    }


def _audit_entry(row: OperatorAction) -> AuditEntryAnswer:
    return AuditEntryAnswer(
        action=row.action,
        actor=row.actor,
        reason=row.reason,
        request=row.request,
        before=lifecycle_summary(row.before),
        after=lifecycle_summary(row.after),
        created_at=row.created_at,
    )


def account_summary(
    listing: admin_queries.AccountListing, catalog: Catalog
) -> AccountSummaryAnswer:
    account, row = listing.account, listing.entitlements
    if row is None:
        free = EntitlementsAnswer.free_plan(account.account_id, catalog)
        return AccountSummaryAnswer(
            account_id=account.account_id,
            stripe_customer_id=account.stripe_customer_id,
            version=0,
            billing_state=free.billing_state,
            effective_state=free.effective_state,
            plan=free.plan,
            grace_ends_at=None,
            trial_ends_at=None,
            cancel_at=None,
            period_ends_at=None,
            updated_at=account.updated_at,
        )
    return AccountSummaryAnswer(
        account_id=account.account_id,
        stripe_customer_id=account.stripe_customer_id,
        version=row.version,
        billing_state=row.billing_state,
        effective_state=row.effective_state,
        plan=row.plan,
        grace_ends_at=row.grace_ends_at,
        trial_ends_at=row.trial_ends_at,
        cancel_at=row.cancel_at,
        period_ends_at=row.period_ends_at,
        updated_at=row.updated_at,
    )


@dataclass(frozen=True)
class _Linking:
    previous_customer: str | None
    newly_linked: bool
    events: list[StripeEventSignal]


def _link(sessions: sessionmaker[Session], body: LinkRequest) -> _Linking:
    # Committed before the replay: from here on, new deliveries for the customer route to the
    # account directly, so nothing can fall between the stored events and the live stream.
    with sessions.begin() as session:
        previous = repository.customer_for_account(session, body.account_id)
        repository.link_customer(session, body.account_id, body.customer_id)
        stored = admin_queries.unresolved_events_for_customer(session, body.customer_id)
        events = [
            StripeEventSignal(
                event_id=row.event_id,
                event_type=row.event_type,
                created=int(row.payload.get("created", 0)),
                customer_id=body.customer_id,
            )
            for row in stored
        ]
    return _Linking(
        previous_customer=previous, newly_linked=previous != body.customer_id, events=events
    )


def _finish_link(
    sessions: sessionmaker[Session],
    body: LinkRequest,
    previous_customer: str | None,
    event_ids: list[str],
) -> None:
    with sessions.begin() as session:
        admin_queries.mark_unroutable_resolved(
            session, event_ids, body.account_id, datetime.now(UTC)
        )
        # Not a workflow update, so the audit row is written here; its id only has to be
        # unique (each call that changed something is one entry).
        repository.record_operator_action(
            session,
            update_id=f"{LINK_ACTION}-{uuid4()}",
            account_id=body.account_id,
            action=LINK_ACTION,
            actor=body.actor,
            reason=body.reason,
            request={"customer_id": body.customer_id, "account_id": body.account_id},
            before={"stripe_customer_id": previous_customer},
            after={"stripe_customer_id": body.customer_id, "replayed_event_ids": event_ids},
        )
