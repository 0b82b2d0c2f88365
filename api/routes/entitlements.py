"""The entitlement API the Dataface app reads on every request.

Answered from the database only (through the process's answer cache, `api.answer_cache`), so
the app keeps working while Temporal or Stripe is down.
"""

from __future__ import annotations

from fastapi import APIRouter, Header, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.answer_cache import AnswerCache, CachedAnswer
from api.deps import AccountIdPath, AnswerCacheDep, AppTokenDep, CatalogDep, EngineDep
from api.schemas import EntitlementsAnswer
from db import entitlement_answers, repository
from domain.catalog import Catalog

router = APIRouter(prefix="/v1/accounts", tags=["entitlements"])

# Clients may cache, but must revalidate every time (cheap: a 304 has no body).
CACHE_CONTROL = "no-cache"


# `response_model` documents the answer; the route returns its stored bytes itself.
@router.get("/{account_id}/entitlements", response_model=EntitlementsAnswer)
async def read_entitlements(
    account_id: AccountIdPath,
    cache: AnswerCacheDep,
    engine: EngineDep,
    catalog: CatalogDep,
    _: AppTokenDep,
    if_none_match: str | None = Header(default=None),
) -> Response:
    answer = cache.get(account_id) or await _answer_from_database(
        cache, engine, catalog, account_id
    )
    headers = {"ETag": answer.etag, "Cache-Control": CACHE_CONTROL}
    if if_none_match is not None and etag_matches(if_none_match, answer.etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(answer.body, media_type="application/json", headers=headers)


async def _answer_from_database(
    cache: AnswerCache, engine: Engine, catalog: Catalog, account_id: str
) -> CachedAnswer:
    ticket = cache.fill_ticket()
    # All blocking work (connection checkout, query, return) in one trip to the threadpool.
    stored = await run_in_threadpool(entitlement_answers.stored_answer, engine, account_id)
    answer = (
        CachedAnswer.from_fields(stored)
        if stored is not None
        else CachedAnswer.of(EntitlementsAnswer.free_plan(account_id, catalog))
    )
    cache.fill(account_id, answer, ticket)
    return answer


def etag_matches(if_none_match: str, etag: str) -> bool:
    # If-None-Match compares weakly (RFC 9110 §13.1.2): a W/ prefix still matches.
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def current_answer(
    sessions: sessionmaker[Session], catalog: Catalog, account_id: str
) -> EntitlementsAnswer:
    """The account's entitlements as the database holds them now (no cache): what the billing
    and admin routes answer after a change they just made."""
    with sessions() as session:
        record = repository.read_entitlements(session, account_id)
    return EntitlementsAnswer.stored_or_free(account_id, record, catalog)
