"""Entitlement changes written as the account workflow's activity writes them, for the tests of
the change feed (`tests/api/routes/test_feed.py`, `tests/db/test_feed.py`) and of its client."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

from sqlalchemy.orm import Session, sessionmaker

from db import feed, repository
from domain.catalog import default_catalog
from domain.entitlements import Entitlements, free_entitlements

APP_TOKEN = "feed-app-token"
AUTH = {"Authorization": f"Bearer {APP_TOKEN}"}


def new_account() -> str:
    return f"acct_{uuid4().hex[:12]}"


def paid(plan: str = "pro", seats: int = 1) -> Entitlements:
    return replace(
        free_entitlements(default_catalog()),
        billing_state="active",
        effective_state="active",
        plan=plan,
        interval="month",
        seats=seats,
        message=None,
        period_ends_at=datetime(2027, 1, 31, tzinfo=UTC),
    )


def write_change(
    sessions: sessionmaker[Session], account_id: str, version: int, plan: str = "pro"
) -> None:
    """One applied entitlement write, as the account workflow's activity makes it."""
    with sessions.begin() as session:
        assert repository.write_entitlements(
            session, account_id, version, paid(plan, seats=version), {}, "test", []
        )


def newest_cursor(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return feed.newest_cursor(session)
