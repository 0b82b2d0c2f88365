"""The entitlement API the Dataface app reads on every request.

Answered from the database only, so the app keeps working while Temporal or Stripe is down.
"""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Header, Response, status

from api.deps import AccountIdPath, AppTokenDep, SessionDep
from api.schemas import EntitlementsAnswer
from db import repository

router = APIRouter(prefix="/v1/accounts", tags=["entitlements"])

# Clients may cache, but must revalidate every time (cheap: a 304 has no body).
CACHE_CONTROL = "no-cache"


@router.get("/{account_id}/entitlements", response_model=EntitlementsAnswer)
def read_entitlements(
    account_id: AccountIdPath,
    session: SessionDep,
    _: AppTokenDep,
    response: Response,
    if_none_match: str | None = Header(default=None),
) -> EntitlementsAnswer | Response:
    # Plain `def`: FastAPI runs it in the threadpool, so the sync query never blocks the loop.
    record = repository.read_entitlements(session, account_id)
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


def etag_for(account_id: str, version: int) -> str:
    """Strong: one (account, version) pair is always the same answer."""
    digest = hashlib.sha256(f"{account_id}\n{version}".encode()).hexdigest()[:32]
    return f'"{digest}"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    # If-None-Match compares weakly (RFC 9110 §13.1.2): a W/ prefix still matches.
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates
