"""Where a routed Stripe event goes when it does not name its account: the customer's link,
or the unroutable store operators work from."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db import repository
from domain.stripe_events import EventRoute

logger = logging.getLogger(__name__)


def account_or_store_unroutable(
    sessions: sessionmaker[Session], event: dict[str, Any], route: EventRoute
) -> str | None:
    """The account the event belongs to (named by the event, else the customer's link); None
    once it is stored for operators instead. Blocking: it reads the database."""
    if route.account_id is not None:
        return route.account_id
    with sessions.begin() as session:
        if route.customer_id is not None:
            account_id = repository.account_for_customer(session, route.customer_id)
            if account_id is not None:
                return account_id
        repository.store_unroutable_event(
            session, event["id"], event["type"], route.customer_id, event
        )
    logger.warning("stored unroutable event %s (%s)", event["id"], event["type"])
    return None
