"""The HTTP service: Stripe webhook gateway, entitlement API, health."""
