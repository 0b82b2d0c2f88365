"""The entitlement API's read: one account's stored answer, by primary key.

The Dataface app reads entitlements on every request, so this read skips what the rest of the
database layer uses: it runs Core on a connection of its own rather than the ORM on a session
(no identity map or object to build per read), in autocommit, and on an engine that does not
pre-ping.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sqlalchemy import Engine, bindparam, select
from sqlalchemy.exc import DBAPIError

from db.models import EntitlementRow
from domain.entitlements import AccountEntitlements

# The answer's columns only (not the workflow's `lifecycle` document), in the answer's order.
_COLUMNS = EntitlementRow.__table__.c
_STORED_ANSWER = select(*(_COLUMNS[field.name] for field in fields(AccountEntitlements))).where(
    _COLUMNS.account_id == bindparam("account_id")
)


def stored_answer(engine: Engine, account_id: str) -> dict[str, Any] | None:
    """The account's stored answer, field by field (`AccountEntitlements`'s names, values as
    the database holds them); None when no entitlements were ever written for it."""
    try:
        return _select_answer(engine, account_id)
    except DBAPIError as err:
        # The API's engine does not pre-ping: a pooled connection the server dropped (restart)
        # fails on first use, which invalidates the pool; the retry gets a fresh connection.
        if not err.connection_invalidated:
            raise
        return _select_answer(engine, account_id)


def _select_answer(engine: Engine, account_id: str) -> dict[str, Any] | None:
    # One SELECT needs no transaction around it: autocommit saves the BEGIN and ROLLBACK
    # round trips.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        row = connection.execute(_STORED_ANSWER, {"account_id": account_id}).one_or_none()
    return None if row is None else row._asdict()
