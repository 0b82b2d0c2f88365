"""Offline Stripe simulator for Dataface Billing.

Speaks Stripe's wire format (form-encoded requests, JSON objects, list objects, errors,
idempotency, signed webhooks) so that code written against Stripe's test mode runs unchanged
against it. Start it in-process with :class:`stripe_sim.server.SimulatorServer`, or standalone
with ``python -m stripe_sim``.
"""

from stripe_sim.settings import FaultSettings, SimulatorSettings

__all__ = ["FaultSettings", "SimulatorSettings"]
