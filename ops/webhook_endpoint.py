"""The Stripe webhook endpoint that sends the gateway its events: found by URL, or created.

Stripe reveals an endpoint's signing secret only in the answer that creates it, so the secret
can be handed over once; an endpoint that already exists keeps its secret, which the operator
finds in the Dashboard (or rolls there). The events it subscribes are exactly the ones the
gateway handles, and its API version is the one this library pins, so payloads come in the
shape the code reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from domain.stripe_events import HANDLED_EVENT_TYPES


class AmbiguousWebhookEndpoint(Exception):
    """Several endpoints deliver to the URL: each signs with its own secret, and the gateway
    accepts one, so the others' deliveries fail until Stripe disables them."""


@dataclass(frozen=True)
class EnsuredEndpoint:
    endpoint_id: str
    # Only when created: Stripe never shows it again.
    secret: str | None
    # What was set right on an existing endpoint, and what could not be.
    changes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def ensure_webhook_endpoint(client: stripe.StripeClient, url: str) -> EnsuredEndpoint:
    """The endpoint for `url`, subscribed to the gateway's event types and enabled; created
    when there is none. Safe to run again: a second run finds what the first made."""
    events = sorted(HANDLED_EVENT_TYPES)
    found = [
        endpoint
        for endpoint in client.v1.webhook_endpoints.list(params={"limit": 100}).auto_paging_iter()
        if endpoint.url == url
    ]
    if len(found) > 1:
        ids = ", ".join(endpoint.id for endpoint in found)
        raise AmbiguousWebhookEndpoint(
            f"{len(found)} webhook endpoints deliver to {url} ({ids}); delete all but the one "
            "whose signing secret is STRIPE_WEBHOOK_SECRET, then run this again"
        )
    if not found:
        created = client.v1.webhook_endpoints.create(
            params={
                "url": url,
                "enabled_events": events,  # type: ignore[typeddict-item]
                "api_version": stripe.api_version,  # type: ignore[typeddict-item]
                "description": "Dataface Billing gateway",
            }
        )
        return EnsuredEndpoint(created.id, created.secret)
    return _bring_up_to_date(client, found[0], events)


def _bring_up_to_date(
    client: stripe.StripeClient, endpoint: Any, events: list[str]
) -> EnsuredEndpoint:
    update: dict[str, Any] = {}
    changes = []
    if sorted(endpoint.enabled_events) != events:
        update["enabled_events"] = events
        changes.append(f"subscribed to the {len(events)} event types the gateway handles")
    if endpoint.status != "enabled":
        update["disabled"] = False
        changes.append("enabled again")
    warnings = []
    if endpoint.api_version != stripe.api_version:
        # Stripe cannot change an endpoint's version: only a new endpoint gets another one.
        version = endpoint.api_version or "the account's default"
        warnings.append(
            f"it renders events as API version {version}, the code reads "
            f"{stripe.api_version}: delete it and run this again for a new endpoint (and "
            "a new secret)"
        )
    if update:
        client.v1.webhook_endpoints.update(endpoint.id, params=update)  # type: ignore[arg-type]
    return EnsuredEndpoint(endpoint.id, None, tuple(changes), tuple(warnings))
