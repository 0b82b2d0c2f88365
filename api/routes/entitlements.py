"""The entitlement API the Dataface app reads on every request.

Answered from the database only, so the app keeps working while Temporal or Stripe is down.
"""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Header, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from api.deps import AccountIdPath, AppTokenDep, SessionFactoryDep
from api.schemas import EntitlementsAnswer
from db import repository

router = APIRouter(prefix="/v1/accounts", tags=["entitlements"])

# Clients may cache, but must revalidate every time (cheap: a 304 has no body).
CACHE_CONTROL = "no-cache"


@router.get("/{account_id}/entitlements", response_model=EntitlementsAnswer)
async def read_entitlements(
    account_id: AccountIdPath,
    sessions: SessionFactoryDep,
    _: AppTokenDep,
    response: Response,
    if_none_match: str | None = Header(default=None),
) -> EntitlementsAnswer | Response:
    # The hot path of the app: all blocking work (connection checkout, query, return) in one
    # trip to the threadpool, rather than one each for the session dependency and the route.
    record = await run_in_threadpool(stored_entitlements, sessions, account_id)
    answer = (
        EntitlementsAnswer.from_record(record)
        if record is not None
        else EntitlementsAnswer.free_plan(account_id)
    )
    etag = etag_for(answer.account_id, answer.version)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if if_none_match is not None and etag_matches(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    response.headers.update(headers)
    return answer


def stored_entitlements(
    sessions: sessionmaker[Session], account_id: str
) -> repository.EntitlementRecord | None:
    with sessions() as session:
        # One SELECT needs no transaction around it: autocommit saves the BEGIN and ROLLBACK
        # round trips a session would otherwise make.
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        return repository.read_entitlements(session, account_id)


def etag_for(account_id: str, version: int) -> str:
    """Strong: one (account, version) pair is always the same answer."""
    digest = hashlib.sha256(f"{account_id}\n{version}".encode()).hexdigest()[:32]
    return f'"{digest}"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    # If-None-Match compares weakly (RFC 9110 §13.1.2): a W/ prefix still matches.
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates
