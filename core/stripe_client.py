"""The one way this service reaches Stripe: real Stripe with a key, else the local simulator."""

from __future__ import annotations

import stripe

from core.config import Settings

SIMULATOR_API_KEY = "sk_test_simulator"


def make_stripe_client(settings: Settings) -> stripe.StripeClient:
    if settings.stripe_secret_key:
        return stripe.StripeClient(settings.stripe_secret_key, max_network_retries=2)
    return stripe.StripeClient(
        SIMULATOR_API_KEY,
        base_addresses={"api": settings.stripe_simulator_url},
        max_network_retries=2,
    )
