"""The one way this service reaches Stripe: real Stripe with a key, else the local simulator."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import stripe

from core.config import Settings

SIMULATOR_API_KEY = "sk_test_simulator"


def make_stripe_client(
    settings: Settings, async_http: stripe.AIOHTTPClient | None = None
) -> stripe.StripeClient:
    """Blocking calls go through `requests`; the `*_async` ones (the worker's reads on every
    event) through aiohttp, at a fraction of the CPU of httpx, which the library would pick.
    Whoever passes `async_http` closes it (`close_async`) when done."""
    http_client = stripe.RequestsClient(async_fallback_client=async_http or stripe.AIOHTTPClient())
    if settings.stripe_secret_key:
        return stripe.StripeClient(
            settings.stripe_secret_key, max_network_retries=2, http_client=http_client
        )
    return stripe.StripeClient(
        SIMULATOR_API_KEY,
        base_addresses={"api": settings.stripe_simulator_url},
        max_network_retries=2,
        http_client=http_client,
    )


async def retrieve_customer(client: stripe.StripeClient, customer_id: str) -> dict[str, Any]:
    """The customer as plain JSON, read raw and asynchronously (the worker's reads on its event
    loop); a deleted one comes back with `deleted` and no other fields. Stripe's errors are
    raised as the library's usual exceptions."""
    response = await client.raw_request_async("get", f"/v1/customers/{quote(customer_id, safe='')}")
    data: dict[str, Any] = response.data
    return data
