"""Routing is the pure part of the gateway: which account an event is about."""

from __future__ import annotations

from typing import Any

import pytest

from domain.stripe_events import (
    HANDLED_EVENT_TYPES,
    EventRoute,
    MalformedEvent,
    check_event_shape,
    is_handled,
    route_event,
)


def event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": "evt_1", "type": event_type, "created": 1, "data": {"object": obj}}


@pytest.mark.parametrize(
    ("event_type", "obj", "expected"),
    [
        (
            "customer.subscription.updated",
            {"object": "subscription", "customer": "cus_1", "metadata": {"account_id": "a1"}},
            EventRoute(account_id="a1", customer_id="cus_1"),
        ),
        (
            "customer.subscription.deleted",
            {"object": "subscription", "id": "sub_1", "customer": "cus_1", "metadata": {}},
            EventRoute(account_id=None, customer_id="cus_1"),
        ),
        (
            "checkout.session.completed",
            {"object": "checkout.session", "client_reference_id": "a2", "customer": "cus_2"},
            EventRoute(account_id="a2", customer_id="cus_2"),
        ),
        (
            "checkout.session.completed",
            {
                "object": "checkout.session",
                "client_reference_id": "a2",
                "metadata": {"account_id": "from-metadata"},
                "customer": None,
            },
            EventRoute(account_id="from-metadata", customer_id=None),
        ),
        (
            "invoice.payment_failed",
            {
                "object": "invoice",
                "customer": "cus_3",
                "metadata": {},
                "parent": {"subscription_details": {"metadata": {"account_id": "a3"}}},
            },
            EventRoute(account_id="a3", customer_id="cus_3"),
        ),
        (
            "invoice.paid",
            {"object": "invoice", "customer": "cus_4", "parent": None},
            EventRoute(account_id=None, customer_id="cus_4"),
        ),
        (
            "invoice.paid",
            {"object": "invoice", "customer": {"id": "cus_5", "object": "customer"}},
            EventRoute(account_id=None, customer_id="cus_5"),
        ),
        (
            "customer.updated",
            {"object": "customer", "id": "cus_6", "metadata": {}},
            EventRoute(account_id=None, customer_id="cus_6"),
        ),
        (
            "customer.deleted",
            {"object": "customer", "id": "cus_9", "deleted": True, "metadata": {}},
            EventRoute(account_id=None, customer_id="cus_9"),
        ),
        (
            # client_reference_id only counts for checkout sessions.
            "invoice.paid",
            {"object": "invoice", "client_reference_id": "a7", "customer": "cus_7"},
            EventRoute(account_id=None, customer_id="cus_7"),
        ),
        (
            # An id we would never have issued falls back to the customer.
            "customer.subscription.updated",
            {"customer": "cus_8", "metadata": {"account_id": "no spaces allowed"}},
            EventRoute(account_id=None, customer_id="cus_8"),
        ),
        (
            "customer.subscription.updated",
            {"customer": "", "metadata": "not-a-dict"},
            EventRoute(account_id=None, customer_id=None),
        ),
    ],
)
def test_route_event(event_type: str, obj: dict[str, Any], expected: EventRoute) -> None:
    assert route_event(event(event_type, obj)) == expected


def test_handled_event_types() -> None:
    assert is_handled("invoice.payment_action_required")
    assert is_handled("customer.subscription.pending_update_expired")
    assert not is_handled("charge.succeeded")
    assert is_handled("customer.deleted")
    assert not is_handled("customer.updated")
    assert len(HANDLED_EVENT_TYPES) == 18


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"type": "invoice.paid", "created": 1, "data": {"object": {}}},
        {"id": "evt_1", "type": "invoice.paid", "created": "yesterday", "data": {"object": {}}},
        {"id": "evt_1", "type": "invoice.paid", "created": 1, "data": {}},
        {"id": "evt_1", "type": "invoice.paid", "created": 1, "data": {"object": "x"}},
    ],
)
def test_malformed_events_are_refused(payload: Any) -> None:
    with pytest.raises(MalformedEvent):
        check_event_shape(payload)


def test_well_formed_event_passes() -> None:
    well_formed = event("invoice.paid", {"customer": "cus_1"})
    assert check_event_shape(well_formed) is well_formed
