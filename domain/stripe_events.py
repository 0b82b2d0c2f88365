"""Which Stripe events the service takes, whether one is shaped like Stripe's, and which
account it is about: a mapping, no decisions, no I/O.

What the event means for the account is decided by the account workflow from the re-fetched
subscription; the gateway, the events reconciliation (which replays what Stripe lists) and the
backfill only need to know where to send it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Account ids are ours (the Dataface app's); this keeps them safe in URLs, ETags and
# Temporal workflow ids.
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
# Stripe's ids are ASCII and never longer than 255 characters (its documented promise), which
# is also what the database columns holding them take.
STRIPE_ID_PATTERN = r"^[A-Za-z0-9_]{1,255}$"

HANDLED_EVENT_TYPES = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.expired",
        # Routed by the customer's link: the account's resync then finds the customer deleted
        # and reports it (`CustomerMissing`) instead of reading it as a cancellation.
        "customer.deleted",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "customer.subscription.trial_will_end",
        "customer.subscription.pending_update_applied",
        "customer.subscription.pending_update_expired",
        "invoice.paid",
        "invoice.payment_failed",
        "invoice.payment_action_required",
        "invoice.payment_succeeded",
        "invoice.finalized",
        "invoice.voided",
        "invoice.marked_uncollectible",
    }
)


STRIPE_ID = re.compile(STRIPE_ID_PATTERN)
EVENT_TYPE = re.compile(r"[a-z0-9_.]{1,128}")
# Stripe's objects nest a handful of levels; far deeper is not an event, and every reader of
# the stored copy (JSON columns, the admin API) would recurse through it.
MAX_NESTING = 64
# Unix seconds up to the year 9999: a timestamp every reader can turn into a date.
MAX_CREATED = 253_402_300_799
# NUL (which PostgreSQL's JSONB refuses) and lone surrogates (which are not UTF-8) cannot be
# stored; Stripe sends neither.
UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")


class MalformedEvent(ValueError):
    """Validly signed, but not shaped like a Stripe event."""


@dataclass
class StripeEventSignal:
    """What an account's workflow is told of a Stripe event: enough to dedupe it and to know
    the customer; the event's content is never applied (the workflow re-fetches)."""

    event_id: str
    event_type: str
    created: int
    customer_id: str | None = None


@dataclass(frozen=True)
class EventRoute:
    # Named by the event itself (metadata our checkout set); None: look up the customer.
    account_id: str | None
    customer_id: str | None


def is_handled(event_type: str) -> bool:
    return event_type in HANDLED_EVENT_TYPES


def check_event_shape(event: Any) -> dict[str, Any]:
    """The fields the gateway relies on, checked once so routing can read them plainly."""
    if not isinstance(event, dict):
        raise MalformedEvent("the payload is not a JSON object")
    for name, kind in (("id", str), ("type", str), ("created", int)):
        if not isinstance(event.get(name), kind):
            raise MalformedEvent(f"`{name}` is missing or not a {kind.__name__}")
    # Stripe's ids and types are plain ASCII; anything else is not from Stripe, and would
    # reach workflow ids, logs and the database.
    if not STRIPE_ID.fullmatch(event["id"]):
        raise MalformedEvent("`id` is not a Stripe id (ASCII letters, digits, _; 1-255)")
    if not EVENT_TYPE.fullmatch(event["type"]):
        raise MalformedEvent("`type` is not a Stripe event type")
    if not 0 <= event["created"] <= MAX_CREATED:
        raise MalformedEvent(f"`created` is not a time between 1970 and 9999: {event['created']}")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise MalformedEvent("`data.object` is missing or not an object")
    customer = _customer_id(data["object"])
    if customer is not None and not STRIPE_ID.fullmatch(customer):
        raise MalformedEvent("`data.object.customer` is not a Stripe id (ASCII; 1-255)")
    _check_storable(event)
    return event


def _check_storable(event: dict[str, Any]) -> None:
    """The whole event can be stored as it is (unroutable events are kept for operators)."""
    # Iterative: a recursive walk would be the very thing deep nesting breaks.
    pending: list[tuple[Any, int]] = [(event, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_NESTING:
            raise MalformedEvent(f"nested deeper than {MAX_NESTING} levels")
        if isinstance(value, dict):
            pending.extend((key, depth) for key in value)
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and UNSTORABLE_CHARACTER.search(value):
            raise MalformedEvent("a string holds NUL or a lone surrogate, which cannot be stored")


def route_event(event: dict[str, Any]) -> EventRoute:
    """Where a (shape-checked) event goes, most explicit source first:

    1. `metadata.account_id` on the object (subscriptions and sessions our checkout created);
    2. a checkout session's `client_reference_id`;
    3. an invoice's `parent.subscription_details.metadata.account_id`;
    4. otherwise only the customer is known, and the caller looks up its account.
    An account id that is not a valid id is ignored, so the event falls back to the customer.
    """
    obj: dict[str, Any] = event["data"]["object"]
    candidates = [metadata_account_id(obj)]
    if event["type"].startswith("checkout.session."):
        candidates.append(obj.get("client_reference_id"))
    if event["type"].startswith("invoice."):
        candidates.append(_path(obj, "parent", "subscription_details", "metadata", "account_id"))
    account_id = next((c for c in candidates if _is_account_id(c)), None)
    return EventRoute(account_id=account_id, customer_id=_customer_id(obj))


def metadata_account_id(obj: dict[str, Any]) -> str | None:
    """The account our checkout wrote into a Stripe object's metadata, if it is a valid id."""
    account_id = _path(obj, "metadata", "account_id")
    return account_id if _is_account_id(account_id) else None


def signal_for(event: dict[str, Any], route: EventRoute) -> StripeEventSignal:
    return StripeEventSignal(
        event_id=event["id"],
        event_type=event["type"],
        created=event["created"],
        customer_id=route.customer_id,
    )


def _customer_id(obj: dict[str, Any]) -> str | None:
    if obj.get("object") == "customer":
        customer = obj.get("id")
    else:
        customer = obj.get("customer")
        # An expanded customer arrives as an object.
        if isinstance(customer, dict):
            customer = customer.get("id")
    return customer if isinstance(customer, str) and customer else None


def _path(obj: Any, *keys: str) -> Any:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _is_account_id(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(ACCOUNT_ID_PATTERN, value) is not None
