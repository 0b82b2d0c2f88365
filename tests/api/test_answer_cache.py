"""The entitlement API's answer cache: kept current from the change log, never older than it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api import answer_cache
from api.answer_cache import AnswerCache, CachedAnswer, LogRead
from core.config import Settings
from db import entitlement_answers, feed, repository
from domain.catalog import default_catalog
from domain.entitlements import Access, Entitlements, Message, ScheduledPlan, free_entitlements
from tests.api.conftest import ClientFactory
from tests.api.routes.test_entitlements import AUTH, new_account, store, url
from tests.conftest import wait_for


def answer(version: int) -> CachedAnswer:
    return CachedAnswer(version, f'"{version}"', f'{{"version": {version}}}'.encode())


def following(cache: AnswerCache, *answers: tuple[str, CachedAnswer]) -> AnswerCache:
    cache.caught_up(LogRead(cursor=len(answers), answers=list(answers)))
    return cache


def test_nothing_is_served_or_kept_before_the_log_is_followed() -> None:
    cache = AnswerCache(max_entries=10)
    ticket = cache.fill_ticket()
    cache.fill("acct_a", answer(1), ticket)

    following(cache)

    assert cache.get("acct_a") is None


def test_a_fill_older_than_what_the_log_delivered_is_ignored() -> None:
    cache = following(AnswerCache(max_entries=10))
    ticket = cache.fill_ticket()
    # The log delivers version 3 while the fill's database read still saw version 2.
    cache.caught_up(LogRead(cursor=7, answers=[("acct_a", answer(3))]))
    cache.fill("acct_a", answer(2), ticket)

    held = cache.get("acct_a")
    assert held is not None and held.version == 3


def test_the_log_replaces_a_filled_answer_with_a_newer_one_only() -> None:
    cache = following(AnswerCache(max_entries=10))
    cache.fill("acct_a", answer(2), cache.fill_ticket())

    cache.caught_up(LogRead(cursor=8, answers=[("acct_a", answer(1))]))
    after_older = cache.get("acct_a")
    cache.caught_up(LogRead(cursor=9, answers=[("acct_a", answer(3))]))
    after_newer = cache.get("acct_a")

    assert after_older is not None and after_older.version == 2
    assert after_newer is not None and after_newer.version == 3


def test_a_full_cache_starts_over_and_refuses_fills_begun_before() -> None:
    cache = following(AnswerCache(max_entries=2))
    ticket = cache.fill_ticket()

    three = [(account_id, answer(1)) for account_id in ("acct_a", "acct_b", "acct_c")]
    cache.caught_up(LogRead(cursor=3, answers=three))
    cache.fill("acct_d", answer(1), ticket)

    assert [cache.get(a) is not None for a in ("acct_a", "acct_b", "acct_c", "acct_d")] == [
        False,
        False,
        True,
        False,
    ]


def test_answers_are_not_served_once_the_log_has_not_been_read_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = 1000.0
    monkeypatch.setattr(answer_cache.time, "monotonic", lambda: now)
    cache = following(AnswerCache(max_entries=10), ("acct_a", answer(1)))
    served_fresh = cache.get("acct_a")

    now += answer_cache.MAX_STALENESS_SECONDS

    assert served_fresh is not None
    assert cache.get("acct_a") is None


def test_a_rewound_log_clears_the_cache_and_refuses_fills_begun_before() -> None:
    cache = following(AnswerCache(max_entries=10), ("acct_a", answer(9)))
    ticket = cache.fill_ticket()

    cache.caught_up(LogRead(cursor=0, answers=[], rewound=True))
    cache.fill("acct_b", answer(9), ticket)

    assert (cache.get("acct_a"), cache.get("acct_b"), cache.cursor) == (None, None, 0)


@pytest.mark.db
def test_reading_past_the_end_of_the_log_says_it_was_rewound(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        newest = feed.newest_cursor(session)

    read = answer_cache.read_log(session_factory, after=newest + 1000)

    assert (read.rewound, read.cursor, read.answers) == (True, newest, [])


def rich() -> Entitlements:
    """Every optional field set, so both sources are compared on all of them."""
    at = datetime(2027, 1, 31, 12, 30, tzinfo=UTC)
    return replace(
        free_entitlements(default_catalog()),
        billing_state="past_due",
        effective_state="past_due",
        plan="team",
        interval="month",
        access=Access.FULL,
        seats=3,
        message=Message.PAYMENT_FAILED,
        period_ends_at=at,
        grace_ends_at=at,
        trial_ends_at=at,
        cancel_at=at,
        open_invoice_url="https://invoice.example/in_1",
        pending_change=ScheduledPlan("pro", "month", 1, at),
    )


@pytest.mark.db
def test_the_stored_row_and_the_change_log_give_the_same_answer(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    account_id = new_account()
    with session_factory.begin() as session:
        cursor = feed.newest_cursor(session)
        repository.write_entitlements(session, account_id, 4, rich(), {}, "test", [])

    stored = entitlement_answers.stored_answer(engine, account_id)
    with session_factory() as session:
        changes = feed.changes_after(session, cursor, 100)
    (change,) = [c for c in changes if c.account_id == account_id]

    assert stored is not None
    assert CachedAnswer.from_fields(stored) == CachedAnswer.from_fields(change.entitlements)


async def version_served(client: httpx.AsyncClient, account_id: str) -> int:
    response = await client.get(url(account_id), headers=AUTH)
    assert response.status_code == 200
    version: int = response.json()["version"]
    return version


@pytest.mark.db
async def test_a_change_reaches_an_answer_already_served(
    client: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account_id = new_account()
    # Unknown: the free plan, version 0, is what the API holds for it now.
    before = await version_served(client, account_id)

    store(session_factory, account_id, 1)

    assert before == 0
    await wait_for(lambda: _serves(client, account_id, 1), within=5, what="version 1 to be served")


async def _serves(client: httpx.AsyncClient, account_id: str, version: int) -> bool:
    return await version_served(client, account_id) == version


@pytest.mark.db
async def test_without_a_cache_every_read_asks_the_database(
    make_client: ClientFactory, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    account_id = new_account()
    store(session_factory, account_id, 1)
    uncached = settings.model_copy(update={"entitlement_cache_size": 0})

    async with make_client(settings=uncached) as client:
        first = await version_served(client, account_id)
        store(session_factory, account_id, 2)
        second = await version_served(client, account_id)

    assert (first, second) == (1, 2)
