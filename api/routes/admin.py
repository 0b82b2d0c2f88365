"""The operators' API: read an account's whole story, act on it, repair routing (the work
itself is `api.operations`, shared with the console).

Every route needs the admin token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, status

from api import operations
from api.deps import (
    AccountIdPath,
    AccountWorkflowsDep,
    CatalogDep,
    SessionDep,
    SessionFactoryDep,
    require_admin_token,
)
from api.schemas import (
    LISTABLE_STATES,
    AccountDetailAnswer,
    AccountPageAnswer,
    LinkAnswer,
    LinkRequest,
    OperatorActionAnswer,
    OperatorActionRequest,
    UnroutableEventAnswer,
    UnroutableEventListAnswer,
)
from db import admin_queries
from domain.operator_actions import ACTIONS, InvalidOperatorRequest
from domain.stripe_events import ACCOUNT_ID_PATTERN, STRIPE_ID_PATTERN

# On the router, not per route: an admin route added later cannot forget the token.
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin_token)])


# --- reads -------------------------------------------------------------------------------


@router.get("/accounts/{account_id}", response_model=AccountDetailAnswer)
async def read_account(
    account_id: AccountIdPath,
    sessions: SessionFactoryDep,
    catalog: CatalogDep,
    workflows: AccountWorkflowsDep,
) -> AccountDetailAnswer:
    """Everything the database knows about one account, and the workflow's view if it answers."""
    detail = await operations.read_account(sessions, catalog, workflows, account_id)
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown account {account_id}")
    return detail


@router.get("/accounts", response_model=AccountPageAnswer)
def list_accounts(
    session: SessionDep,
    catalog: CatalogDep,
    state: Annotated[
        str | None,
        Query(description=f"a billing state or comped/locked: {', '.join(LISTABLE_STATES)}"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[str | None, Query(pattern=ACCOUNT_ID_PATTERN)] = None,
) -> AccountPageAnswer:
    if state is not None and state not in LISTABLE_STATES:
        raise _unprocessable(f"unknown state {state!r}; one of: {', '.join(LISTABLE_STATES)}")
    # One more than asked for tells whether another page follows.
    rows = admin_queries.accounts(session, state=state, limit=limit + 1, after=after)
    page = [operations.account_summary(row, catalog) for row in rows[:limit]]
    next_after = page[-1].account_id if len(rows) > limit else None
    return AccountPageAnswer(accounts=page, next_after=next_after)


@router.get("/unroutable-events", response_model=UnroutableEventListAnswer)
def list_unroutable_events(
    session: SessionDep,
    resolved: bool | None = None,
    customer_id: Annotated[str | None, Query(pattern=STRIPE_ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> UnroutableEventListAnswer:
    rows = admin_queries.unroutable_events(
        session, resolved=resolved, customer_id=customer_id, limit=limit
    )
    return UnroutableEventListAnswer(
        events=[
            UnroutableEventAnswer(
                event_id=row.event_id,
                event_type=row.event_type,
                customer_id=row.customer_id,
                received_at=row.received_at,
                resolved=row.resolved_at is not None,
                resolved_at=row.resolved_at,
                resolved_account_id=row.resolved_account_id,
            )
            for row in rows
        ]
    )


# --- actions -----------------------------------------------------------------------------


@router.post("/accounts/{account_id}/actions/{action}", response_model=OperatorActionAnswer)
async def run_action(
    account_id: AccountIdPath,
    action: Annotated[str, Path(description=f"one of {', '.join(sorted(ACTIONS))}")],
    body: OperatorActionRequest,
    sessions: SessionFactoryDep,
    catalog: CatalogDep,
    workflows: AccountWorkflowsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> OperatorActionAnswer:
    """Apply an operator action through the account workflow (started if no run exists).

    Send an `Idempotency-Key` to make a retry after a timeout safe: the same key gets the
    first answer instead of applying the action twice."""
    try:
        return await operations.run_action(
            sessions, catalog, workflows, account_id, action, body, idempotency_key=idempotency_key
        )
    except InvalidOperatorRequest as err:
        raise _unprocessable(str(err)) from err


@router.post("/unroutable-events/link", response_model=LinkAnswer)
async def link_customer_and_replay(
    body: LinkRequest,
    sessions: SessionFactoryDep,
    workflows: AccountWorkflowsDep,
) -> LinkAnswer:
    """Link a Stripe customer to an account, then replay its stored unroutable events.

    Safe to repeat: a second call finds the link in place and nothing left to replay; a call
    cut short by Temporal leaves the events unresolved for the next one (the workflow drops
    event ids it has already seen).
    """
    try:
        return await operations.link_and_replay(sessions, workflows, body)
    except operations.LinkRefused as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from err


# --- helpers -----------------------------------------------------------------------------


def _unprocessable(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=reason)
