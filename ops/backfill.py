"""`dataface-billing backfill`: bring every existing Stripe customer under an account workflow.

For a service put in front of a Stripe account that already has customers. Each customer
naming an account (`metadata.account_id`, or a link already in the database) is linked to it
and its account is asked to resync, which starts the workflow when there is none and builds
the entitlements from the current subscription. Customers are walked newest first, a page at a
time; the cursor row is moved after each page, so an interrupted run resumes where it stopped
(customers created meanwhile arrive through webhooks anyway).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, TextIO

import stripe
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from db import reconciliation, repository
from db.reconciliation import Cursor
from domain.operator_actions import OperatorRequest
from domain.stripe_events import metadata_account_id
from workflows.starter import run_operator_action

logger = logging.getLogger(__name__)

BACKFILL_CURSOR = "backfill-customers"
PAGE_SIZE = 100
# Resyncs in flight at once: each waits for its account to read Stripe and write.
CONCURRENCY = 8


@dataclass
class BackfillSummary:
    customers: int = 0
    accounts_started: int = 0
    skipped_without_account: int = 0
    errors: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{self.customers} customers: {self.accounts_started} accounts started, "
            f"{self.skipped_without_account} skipped without an account id, "
            f"{len(self.errors)} errors"
        )


async def run_backfill(
    stripe_client: stripe.StripeClient,
    sessions: sessionmaker[Session],
    temporal: Client,
    task_queue: str,
    *,
    restart: bool = False,
    progress: TextIO | None = None,
) -> BackfillSummary:
    """Walk the customers after the stored cursor (all of them with `restart`). Temporal or
    Stripe failing stops the run with the cursor at the last finished page; a customer that
    cannot be linked (already linked elsewhere) is counted as an error and skipped."""
    if restart:
        await asyncio.to_thread(_delete_cursor, sessions)
    summary = BackfillSummary()
    limit = asyncio.Semaphore(CONCURRENCY)

    async def start(customer: dict[str, Any]) -> None:
        account_id = await asyncio.to_thread(_linked_account, sessions, customer)
        if account_id is None:
            summary.skipped_without_account += 1
            return
        async with limit:
            await run_operator_action(
                temporal,
                task_queue,
                account_id,
                OperatorRequest(action="resync", actor="backfill", reason="backfill from Stripe"),
                update_id=f"backfill/{customer['id']}",
            )
        summary.accounts_started += 1

    while True:
        cursor = await asyncio.to_thread(_read_cursor, sessions)
        customers, has_more = await asyncio.to_thread(_customers_after, stripe_client, cursor)
        if not customers:
            break
        for failure in await asyncio.gather(*(start(c) for c in customers), return_exceptions=True):
            if isinstance(failure, repository.CustomerConflict):
                summary.errors.append(str(failure))
                logger.error("backfill: %s", failure)
            elif isinstance(failure, BaseException):
                raise failure
        summary.customers += len(customers)
        last = customers[-1]
        await asyncio.to_thread(
            _save_cursor, sessions, Cursor(created=last["created"], last_id=last["id"])
        )
        if progress is not None:
            print(f"backfill: {summary.describe()}", file=progress, flush=True)
        if not has_more:
            break
    return summary


def _customers_after(
    client: stripe.StripeClient, cursor: Cursor | None
) -> tuple[list[dict[str, Any]], bool]:
    params: dict[str, Any] = {"limit": PAGE_SIZE}
    if cursor is not None:
        params["starting_after"] = cursor.last_id
    try:
        page = client.v1.customers.list(params=params)  # type: ignore[arg-type]
    except stripe.InvalidRequestError:
        if cursor is None:
            raise
        # The cursor's customer was deleted: resume by time; a few are started again,
        # which a resync makes harmless.
        page = client.v1.customers.list(
            params={"limit": PAGE_SIZE, "created": {"lte": cursor.created}}
        )
    return [c.to_dict(for_json=True) for c in page.data], bool(page.has_more)


def _linked_account(sessions: sessionmaker[Session], customer: dict[str, Any]) -> str | None:
    """The customer's account, linked in the database; None when nothing names one."""
    with sessions.begin() as session:
        linked = repository.account_for_customer(session, customer["id"])
        account_id = linked or metadata_account_id(customer)
        if account_id is not None and linked is None:
            repository.link_customer(session, account_id, customer["id"])
    return account_id


def _read_cursor(sessions: sessionmaker[Session]) -> Cursor | None:
    with sessions() as session:
        return reconciliation.read_cursor(session, BACKFILL_CURSOR)


def _save_cursor(sessions: sessionmaker[Session], cursor: Cursor) -> None:
    with sessions.begin() as session:
        reconciliation.save_cursor(session, BACKFILL_CURSOR, cursor)


def _delete_cursor(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        reconciliation.delete_cursor(session, BACKFILL_CURSOR)
